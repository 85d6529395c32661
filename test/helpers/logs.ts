import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../lib/logger.js';

/** A logger whose JSON lines are kept for the assertions. */
export function capturingLogger(): { logger: Logger; lines: () => Array<{ level: number; msg: string; [k: string]: unknown }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as { level: number; msg: string });
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines: () => lines };
}

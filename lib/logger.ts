/**
 * pino logger factory. Components get a child logger (`{ component }`) passed in,
 * never a global; the bus routes its Kafka client's logs into the same logger.
 *
 * Written synchronously: logmeter logs events (attach, retry, stop steps), never a line per
 * log line, and asynchronous writes came out of order at exit (pino's exit flush wrote what
 * was buffered before a write still under way: "stopped" before the step it waited for).
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent = 'info', destination: number | string = 1): Logger {
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: destination, sync: true }),
  );
}

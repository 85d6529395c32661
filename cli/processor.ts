/**
 * `logmeter processor <name...>`: one processor alone, or several in one process (with
 * the embedded ClickHouse, the processors that use the store must share one process).
 */
import type { Command } from 'commander';
import type { Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError } from '../lib/errors.js';
import { startProcess } from '../app/runtime.js';
import { PROCESSORS, needsClickHouse, processorServices, startProcessors, stopAll, type ProcessorName, type Running } from '../app/pipeline.js';
import { runUntilSignal } from './signals.js';

export function processorCommand(program: Command, config: () => Config): void {
  program
    .command('processor')
    .description(`run one or more processors in one process: ${PROCESSORS.join(', ')}`)
    .argument('<names...>', 'processor names')
    .action(async (given: string[]) => {
      const unknown = given.filter((n) => !(PROCESSORS as readonly string[]).includes(n));
      if (unknown.length > 0) throw new LogmeterError('unknown_processor', `unknown processor ${unknown.map((n) => `"${n}"`).join(', ')}; one of: ${PROCESSORS.join(', ')}`);
      const cfg = config();
      const logger = createLogger(cfg.log.level);
      const names = [...new Set(given)] as ProcessorName[];
      const rt = await startProcess(cfg, { clickhouse: needsClickHouse(names), services: processorServices(names), logger });
      let running: Running[] = [];
      await runUntilSignal(
        logger,
        async () => {
          running = await startProcessors(rt, names);
          const addr = await rt.http.listen();
          logger.info({ processor: names.join(','), http: addr }, 'processor up');
        },
        async () => {
          await stopAll(running);
          await rt.close();
        },
      );
    });
}

/**
 * `logmeter processor <name>`: one processor alone.
 */
import type { Command } from 'commander';
import type { Config } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError } from '../lib/errors.js';
import { startRuntime } from '../lib/runtime.js';
import { PROCESSORS, needsClickHouse, startProcessors, stopAll, type ProcessorName, type Running } from '../lib/pipeline.js';
import { runUntilSignal } from './signals.js';

export function processorCommand(program: Command, config: () => Config): void {
  program
    .command('processor')
    .description(`run one processor: ${PROCESSORS.join(', ')}`)
    .argument('<name>', 'processor name')
    .action(async (name: string) => {
      if (!(PROCESSORS as readonly string[]).includes(name)) throw new LogmeterError('unknown_processor', `unknown processor "${name}"; one of: ${PROCESSORS.join(', ')}`);
      const cfg = config();
      const logger = createLogger(cfg.log.level);
      const names = [name as ProcessorName];
      const rt = await startRuntime(cfg, { clickhouse: needsClickHouse(names), logger });
      let running: Running[] = [];
      await runUntilSignal(
        logger,
        async () => {
          running = await startProcessors(rt, names);
          const addr = await rt.http.listen();
          logger.info({ processor: name, http: addr }, 'processor up');
        },
        async () => {
          await stopAll(running);
          await rt.close();
        },
      );
    });
}

/**
 * `logmeter up [--demo]`: the whole pipeline in one process, until SIGINT/SIGTERM.
 */
import type { Command } from 'commander';
import type { Config } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { startRuntime } from '../lib/runtime.js';
import { dockerClient } from '../lib/docker.js';
import { startDemo, stopDemo } from '../lib/demo.js';
import { errorMessage } from '../lib/errors.js';

export function upCommand(program: Command, config: () => Config): void {
  program
    .command('up')
    .description('run the pipeline in one process (Ctrl-C / SIGTERM stops it cleanly)')
    .option('--demo', 'also start a small demo workload of tenant containers')
    .action(async (opts: { demo?: boolean }) => {
      const cfg = config();
      const logger = createLogger(cfg.log.level);
      const log = logger.child({ component: 'up' });
      const rt = await startRuntime(cfg, { clickhouse: true, logger });
      const docker = dockerClient(cfg.docker.host);
      let stopping: Promise<void> | undefined;
      const stop = (signal: string) => {
        stopping ??= (async () => {
          log.info({ signal }, 'stopping');
          if (opts.demo) await stopDemo(docker, log).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'demo cleanup failed'));
          await rt.close();
          log.info('stopped');
          logger.flush();
        })();
        return stopping;
      };
      process.once('SIGINT', () => void stop('SIGINT').then(() => process.exit(0)));
      process.once('SIGTERM', () => void stop('SIGTERM').then(() => process.exit(0)));
      try {
        if (opts.demo) await startDemo(docker, log, 'logmeter.');
        const addr = await rt.http.listen();
        log.info({ http: addr, clickhouse: rt.clickhouse?.mode, topics: cfg.kafka.topicPrefix, demo: !!opts.demo }, 'logmeter up');
      } catch (err) {
        await stop('startup failure');
        throw err;
      }
      await new Promise<void>(() => undefined);
    });
}

/**
 * `logmeter stack up | down | status`: the local services the pipeline and its tests
 * need. Idempotent; `down` stops only what `up` started.
 */
import type { Command } from 'commander';
import type { Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { stateDir, type StackContext } from '../lib/stack/common.js';
import { formatStatus, stackServices } from '../lib/stack/index.js';

export function stackCommand(program: Command, config: () => Config): void {
  const stack = program.command('stack').description('local services: Kafka (KRaft), Redis, Docker, HAProxy');
  const context = (install = true): StackContext => ({
    stateDir: stateDir(),
    logger: createLogger(process.env.LOGMETER_LOG_LEVEL === 'debug' ? 'debug' : 'info', 2).child({ component: 'stack' }),
    install,
  });
  stack
    .command('up')
    .description('install what is missing and start what is not running')
    .option('--no-install', 'fail instead of installing missing packages')
    .action(async (opts: { install: boolean }) => {
      const cfg = config();
      const ctx = context(opts.install);
      const rows = [];
      for (const s of stackServices(cfg)) rows.push(await s.up(ctx));
      process.stdout.write(formatStatus(rows));
    });
  stack
    .command('down')
    .description('stop the services that `stack up` started')
    .action(async () => {
      const cfg = config();
      const ctx = context(false);
      for (const s of stackServices(cfg).reverse()) process.stdout.write(`${await s.down(ctx)}\n`);
    });
  stack
    .command('status')
    .description('what runs, where, and since when')
    .action(async () => {
      const cfg = config();
      const ctx = context(false);
      const rows = [];
      for (const s of stackServices(cfg)) rows.push(await s.status(ctx));
      process.stdout.write(formatStatus(rows));
    });
}

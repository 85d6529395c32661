/**
 * `logmeter api`: the log center API alone, over the configured ClickHouse (migrations
 * applied first), until SIGINT/SIGTERM. With embedded ClickHouse it must be the only
 * process holding the data directory; `logmeter up` serves the same API itself.
 */
import type { Command } from 'commander';
import { dataPath } from '../lib/config.js';
import { type Config } from '../app/config.js';
import { LogmeterError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { ensureAdminToken } from '../lib/admin-token.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouseMigrated } from '../lib/runtime.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { startApi, type ApiServer } from '../api/server.js';
import { runUntilSignal } from './signals.js';

export function apiCommand(program: Command, config: () => Config): void {
  program
    .command('api')
    .description('serve the log center API (/api/v1) over ClickHouse (Ctrl-C / SIGTERM stops it cleanly)')
    .action(async () => {
      const configured = config();
      const logger = createLogger(configured.log.level);
      const cfg = ensureAdminToken(configured, logger);
      const log = logger.child({ component: 'api' });
      let ch: ClickHouse | undefined;
      let server: ApiServer | undefined;
      await runUntilSignal(
        logger,
        async () => {
          try {
            ch = await openClickHouseMigrated(cfg, logger);
          } catch (err) {
            if ((err as { code?: string }).code === 'CHDB_CONNECTION') {
              throw new LogmeterError('clickhouse_locked', `cannot open the embedded ClickHouse in ${dataPath(cfg, 'clickhouse')}: another process holds it (logmeter up serves the API itself)`);
            }
            throw err;
          }
          server = await startApi({ config: cfg, ch, logger, registry: createRegistry() });
          log.info({ http: server.address, clickhouse: ch.mode, tenants: Object.keys(cfg.api.tokens).length }, 'logmeter api up');
        },
        async () => {
          // The server first: in-flight requests finish before their ClickHouse goes away.
          await server?.close();
          await ch?.close();
        },
      );
    });
}

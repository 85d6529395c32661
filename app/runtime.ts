/**
 * A logmeter process as the CLI starts it: the shared services of lib/runtime.ts for the
 * whole configuration, and — when the process holds ClickHouse — the log center API on
 * its HTTP server. The API is wired here and in `logmeter api` through the same
 * registration, so every process that serves `/api/v1` serves all of it.
 */
import { startRuntime, type Runtime, type RuntimeOptions } from '../lib/runtime.js';
import { createLogger } from '../lib/logger.js';
import { ensureAdminToken } from '../lib/admin-token.js';
import { dataPath } from '../lib/config.js';
import { unknownVariables, type Config } from './config.js';

export type AppRuntime = Runtime<Config>;

export async function startProcess(config: Config, opts: RuntimeOptions): Promise<AppRuntime> {
  const logger = opts.logger ?? createLogger(config.log.level);
  for (const v of unknownVariables(process.env)) {
    logger.warn({ variable: v.name, didYouMean: v.didYouMean }, `environment variable ${v.name} is not a logmeter setting; ignored${v.didYouMean ? ` (did you mean ${v.didYouMean}?)` : ''}`);
  }
  const rt = await startRuntime(config, { ...opts, logger });
  if (rt.clickhouse) {
    const ch = rt.clickhouse;
    try {
      // Every process serving the operator routes has an operator token (`up` resolved it already; `processor` here).
      const adminToken = ensureAdminToken(config, logger).api.adminToken;
      // Loaded here, not at the top: processes without a store (the collector) skip the API.
      const { registerApi } = await import('../api/index.js');
      registerApi(rt.http.app, { ch, tokens: config.api.tokens, adminToken, priceList: config.processors.priceList, reportsDir: dataPath(config, 'reports'), logger });
    } catch (err) {
      await rt.close();
      throw err;
    }
  }
  return rt;
}

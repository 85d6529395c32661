/**
 * The log center API under `/api/v1`, wired in one place for every process that serves
 * it (`logmeter api`, and `logmeter up` on its own server):
 *
 * - tenant routes (GET): logs (api/logs.ts), usage (api/usage.ts), billing reports
 *   (api/reports.ts), containers (api/containers.ts), an app's autoscale signals and
 *   route sets (api/apps.ts); each tenant reads only its own rows
 *   (api/scope.ts), the operator reads across tenants;
 * - operator routes (POST): `/admin/sql` for `logmeter sql` (api/admin-sql.ts) and
 *   `/admin/report` for `logmeter report` (api/admin-report.ts), so both commands work
 *   through whichever process holds the embedded ClickHouse;
 * - the live tail of a log search as Server-Sent Events (api/tail.ts) and a report's stored
 *   CSV and JSON files (api/report-files.ts), for the panel and anyone else;
 * - the tenant panel at `/` (api/panel.ts), signed in with a session cookie made from a
 *   token (api/session.ts) and reading only through the routes above.
 *
 * Every table read is a ReplacingMergeTree keyed by event id, so every read uses FINAL:
 * a redelivered event is one row.
 */
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { Logger } from '../lib/logger.js';
import { registerReportRoute } from './admin-report.js';
import { registerAppRoutes } from './apps.js';
import { registerSqlRoute } from './admin-sql.js';
import { createAuthenticator, type Authenticator } from './auth.js';
import { registerContainerRoutes } from './containers.js';
import { API_PREFIX, tenantRouter } from './handler.js';
import { registerLogRoutes } from './logs.js';
import { registerReportRoutes } from './reports.js';
import { registerUsageRoutes } from './usage.js';
import { registerPanel } from './panel.js';
import { registerReportFileRoutes } from './report-files.js';
import { createSessionStore, type SessionStore } from './session.js';
import { registerTailRoute } from './tail.js';

export interface TenantApiDeps {
  ch: ClickHouse;
  /** Tenant → bearer token. */
  tokens: Record<string, string>;
  /** Operator token; unset = operator requests only from loopback without a token. */
  adminToken?: string | undefined;
  logger: Logger;
  /** Panel sessions whose cookie authenticates reads; unset = bearer tokens only. */
  sessions?: SessionStore | undefined;
  /** Where billing writes report files; a report's answer says which exist. Unset = none known. */
  reportsDir?: string | undefined;
}

export interface ApiDeps extends TenantApiDeps {
  /** Price list (YAML) for `/admin/report`; unset = billing's default (config/prices.yaml). */
  priceList: string | undefined;
  /** Where `/admin/report` writes a report's CSV and JSON (`<dataDir>/reports`). */
  reportsDir: string;
}

/** Registers every `/api/v1` route: the tenant routes and the operator's SQL and report routes. */
export function registerApi(app: FastifyInstance, deps: ApiDeps): void {
  const sessions = deps.sessions ?? createSessionStore();
  const auth = registerTenantRoutes(app, { ...deps, sessions });
  const log = deps.logger.child({ component: 'api' });
  registerTailRoute(app, { ch: deps.ch, auth, logger: log });
  registerReportFileRoutes(app, { ch: deps.ch, auth, reportsDir: deps.reportsDir, logger: log });
  registerPanel(app, { auth, sessions, tenants: Object.keys(deps.tokens), logger: deps.logger.child({ component: 'panel' }) });
  registerSqlRoute(app, deps.ch, deps.adminToken);
  registerReportRoute(app, { ch: deps.ch, adminToken: deps.adminToken, priceList: deps.priceList, reportsDir: deps.reportsDir, logger: deps.logger });
}

/** The tenant routes alone (tests of the pipeline that read through them); returns their authenticator. */
export function registerTenantRoutes(app: FastifyInstance, deps: TenantApiDeps): Authenticator {
  const auth = createAuthenticator({ tokens: deps.tokens, adminToken: deps.adminToken, sessions: deps.sessions });
  const log = deps.logger.child({ component: 'api' });
  const router = tenantRouter(app, deps.ch, auth, log);
  registerLogRoutes(router);
  registerUsageRoutes(router);
  registerReportRoutes(router, deps.reportsDir);
  registerContainerRoutes(router);
  registerAppRoutes(router);
  log.debug({ prefix: API_PREFIX, tenants: Object.keys(deps.tokens).length, adminToken: Boolean(deps.adminToken) }, 'log center API registered');
  return auth;
}

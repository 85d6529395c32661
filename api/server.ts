/**
 * The log center API as a process of its own: an HTTP server (lib/http.ts) with
 * `/api/v1`, the operator's `POST /api/v1/admin/sql`, `/metrics` and a `/healthz` that
 * checks ClickHouse. `logmeter up` registers the same routes on its own server instead.
 */
import type { Registry } from 'prom-client';
import type { Config } from '../app/config.js';
import type { Logger } from '../lib/logger.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { createHttpServer, type HttpServer } from '../lib/http.js';
import { registerSqlRoute } from '../lib/sql-route.js';
import { registerApi } from './routes.js';

export interface ApiServer {
  http: HttpServer;
  /** Where it listens (`http://host:port`). */
  address: string;
  close(): Promise<void>;
}

/** Serves the API on `config.http.listen` until `close()`; ClickHouse stays the caller's to close. */
export async function startApi(opts: { config: Config; ch: ClickHouse; logger: Logger; registry: Registry }): Promise<ApiServer> {
  const { config, ch } = opts;
  const http = createHttpServer({ listen: config.http.listen, registry: opts.registry, logger: opts.logger.child({ component: 'http' }) });
  registerApi(http.app, { ch, tokens: config.api.tokens, adminToken: config.api.adminToken, logger: opts.logger });
  // `logmeter sql` goes through whichever process holds the embedded store, this one included.
  registerSqlRoute(http.app, ch, config.api.adminToken);
  http.addHealthCheck('clickhouse', async () => {
    const r = await ch.client.ping();
    if (!r.success) throw r.error;
  });
  const address = await http.listen();
  return { http, address, close: () => http.close() };
}

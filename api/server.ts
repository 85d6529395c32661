/**
 * The log center API as a process of its own: an HTTP server (lib/http.ts) with every
 * `/api/v1` route (api/index.ts), `/metrics` and a `/healthz` that checks ClickHouse.
 * `logmeter up` registers the same routes on its own server instead.
 */
import type { Registry } from 'prom-client';
import { dataPath } from '../lib/config.js';
import type { Config } from '../app/config.js';
import type { Logger } from '../lib/logger.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { createHttpServer, type HttpServer } from '../lib/http.js';
import { registerApi } from './index.js';

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
  registerApi(http.app, {
    ch,
    tokens: config.api.tokens,
    adminToken: config.api.adminToken,
    priceList: config.processors.priceList,
    reportsDir: dataPath(config, 'reports'),
    logger: opts.logger,
  });
  http.addHealthCheck('clickhouse', () => ch.ping());
  const address = await http.listen();
  return { http, address, close: () => http.close() };
}

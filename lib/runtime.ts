/**
 * Builds the shared services one logmeter process needs from its config: logger,
 * metrics registry, HTTP server, schema codec, event bus and (when asked) ClickHouse
 * with migrations applied. Components get these passed in; none builds its own.
 */
import type { Registry } from 'prom-client';
import type { Config } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { createRegistry } from './metrics.js';
import { createHttpServer, type HttpServer } from './http.js';
import { EventBus, busConfig } from './bus/kafka.js';
import { AvroCodec } from '../schemas/codec.js';
import { ConfluentRegistrySource, ManifestSource, type SchemaSource } from '../schemas/registry.js';
import { clickHouseOptions, openClickHouse, type ClickHouse } from './clickhouse/client.js';
import { migrate } from './clickhouse/migrate.js';
import { dataPath } from './config.js';
import { errorMessage } from './errors.js';

export interface Runtime {
  config: Config;
  logger: Logger;
  registry: Registry;
  http: HttpServer;
  codec: AvroCodec;
  bus: EventBus;
  clickhouse?: ClickHouse | undefined;
  /** Closes everything opened, in reverse order. */
  close(): Promise<void>;
}

export function schemaSource(config: Config): SchemaSource {
  return config.schemaRegistry.url ? new ConfluentRegistrySource(config.schemaRegistry.url, config.kafka.topicPrefix) : new ManifestSource();
}

export function busFor(config: Config, codec: AvroCodec, logger: Logger): EventBus {
  return new EventBus(busConfig(config), codec, logger);
}

export async function openClickHouseMigrated(config: Config, logger: Logger): Promise<ClickHouse> {
  const ch = openClickHouse(clickHouseOptions(config, logger.child({ component: 'clickhouse' })));
  try {
    await migrate(ch, logger.child({ component: 'migrate' }));
  } catch (err) {
    await ch.close().catch(() => undefined);
    throw err;
  }
  return ch;
}

export async function startRuntime(config: Config, opts: { clickhouse: boolean; logger?: Logger }): Promise<Runtime> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const registry = createRegistry();
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, 'error while closing');
      }
    }
  };
  try {
    const codec = await AvroCodec.create(schemaSource(config));
    const bus = busFor(config, codec, logger);
    closers.push(() => bus.close());
    await bus.ensureTopics();
    let clickhouse: ClickHouse | undefined;
    if (opts.clickhouse) {
      clickhouse = await openClickHouseMigrated(config, logger);
      closers.push(() => clickhouse!.close());
    }
    const http = createHttpServer({ listen: config.http.listen, registry, logger: logger.child({ component: 'http' }) });
    http.addHealthCheck('kafka', async () => {
      await bus.admin((a) => a.describeCluster());
    });
    if (clickhouse) {
      const ch = clickhouse;
      http.addHealthCheck('clickhouse', async () => {
        const r = await ch.client.ping();
        if (!r.success) throw r.error;
      });
      // Loaded here, not at the top: processes without a store (the collector) skip them.
      const [{ registerSqlRoute }, { registerApi }, { registerReportRoute }] = await Promise.all([
        import('./sql-route.js'),
        import('../api/routes.js'),
        import('./report-route.js'),
      ]);
      registerSqlRoute(http.app, ch, config.api.adminToken);
      registerApi(http.app, { ch, tokens: config.api.tokens, adminToken: config.api.adminToken, logger });
      registerReportRoute(http.app, { ch, adminToken: config.api.adminToken, priceList: config.processors.priceList, reportsDir: dataPath(config, 'reports'), logger });
    }
    closers.push(() => http.close());
    return { config, logger, registry, http, codec, bus, clickhouse, close };
  } catch (err) {
    await close();
    throw err;
  }
}

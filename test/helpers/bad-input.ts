/**
 * Shared by the test/bad-input-*.test.ts files: one test namespace with its topics, the
 * embedded ClickHouse (migrated) and, when asked, the real log sink; collectors on the
 * real dockerd; and figures printed next to the test output (the report in
 * docs/reliability/bad-input.md is filled from them).
 */
import path from 'node:path';
import type { Registry } from 'prom-client';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import { busFor, openClickHouseMigrated } from '../../lib/runtime.js';
import { createRegistry } from '../../lib/metrics.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import type { Config } from '../../app/config.js';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import { collectorConfigSchema, type CollectorConfig } from '../../ingest/config.js';
import { createCollector, type Collector, type StopReport } from '../../ingest/collector.js';
import { startLogSink } from '../../processors/log-sink/processor.js';
import { logSinkConfig } from '../../app/pipeline.js';
import { namespace, type TestNamespace } from './env.js';
import { docker, removeTestContainers } from './docker.js';

export function note(msg: string): void {
  process.stdout.write(`# ${msg.split('\n').join('\n# ')}\n`);
}

export interface Pipeline {
  ns: TestNamespace;
  /** The label prefix of this namespace's containers. */
  prefix: string;
  codec: AvroCodec;
  bus: EventBus;
  /** The namespace's config, sink batches of 100 ms. */
  config: Config;
  ch: ClickHouse;
  /** Subscriptions stopped by close() (the sink's, and any a test adds). */
  subs: Subscription[];
  /** A collector for this namespace's containers (state under the data directory); stopped by close(). */
  collector(state: string, overrides?: Partial<CollectorConfig>, registry?: Registry): Collector;
  q<T>(sql: string, params?: Record<string, unknown>): Promise<T[]>;
  close(): Promise<void>;
}

export async function pipeline(opts: { sink?: boolean } = {}): Promise<Pipeline> {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const codec = await AvroCodec.create(new ManifestSource());
  const bus = busFor(ns.config, codec, ns.logger);
  const config: Config = { ...ns.config, processors: { ...ns.config.processors, sinkBatchMs: 100 } };
  await bus.ensureTopics();
  const ch = await openClickHouseMigrated(config, ns.logger);
  const subs: Subscription[] = [];
  if (opts.sink) subs.push(await startLogSink({ config: logSinkConfig(config), bus, ch, logger: ns.logger, registry: createRegistry(false) }));
  const collectors: Collector[] = [];
  return {
    ns,
    prefix,
    codec,
    bus,
    config,
    ch,
    subs,
    collector(state, overrides = {}, registry = createRegistry(false)) {
      const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, ...overrides });
      const c = createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, state), docker, bus, codec, logger: ns.logger, registry });
      // Stopped by the test when it is done with it, or by close(): once either way.
      let stopped: Promise<StopReport> | undefined;
      const once: Collector = { ...c, stop: () => (stopped ??= c.stop()) };
      collectors.push(once);
      return once;
    },
    async q<T>(sql: string, params: Record<string, unknown> = {}) {
      const rs = await ch.client.query({ query: sql, query_params: params, format: 'JSONEachRow' });
      return rs.json<T>();
    },
    async close() {
      for (const c of collectors) await c.stop();
      for (const s of subs) await s.stop();
      await removeTestContainers(prefix);
      await bus.close();
      await ch.close();
      ns.cleanup();
    },
  };
}

/**
 * The fixture the collector tests share: a namespace, the bus over it (topics created
 * before the tests, closed after), and a collector factory on the test Docker with the
 * namespace's label prefix. Containers carrying that prefix are removed after the file.
 */
import { before, after } from 'node:test';
import path from 'node:path';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import { busFor } from '../../lib/runtime.js';
import { createRegistry } from '../../lib/metrics.js';
import type { EventBus } from '../../lib/bus/bus.js';
import { collectorConfigSchema } from '../../ingest/config.js';
import { createCollector, type Collector, type CollectorDeps } from '../../ingest/collector.js';
import { namespace, type TestNamespace } from './env.js';
import { docker, removeTestContainers } from './docker.js';

export interface CollectorFixture {
  ns: TestNamespace;
  /** The namespace's label prefix (`<id>.`). */
  prefix: string;
  codec: AvroCodec;
  bus: EventBus;
  /** A collector with the test defaults (no stats samples), its state under `stateName`; `deps` replaces any dependency. */
  startCollector: (overrides?: Record<string, unknown>, stateName?: string, deps?: Partial<CollectorDeps>) => Collector;
}

const UNLIMITED = { linesPerSecond: 1e9, bytesPerSecond: 1e12, node: { linesPerSecond: 1e9, bytesPerSecond: 1e12 } };

export async function collectorFixture(): Promise<CollectorFixture> {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const codec = await AvroCodec.create(new ManifestSource());
  const bus = busFor(ns.config, codec, ns.logger);
  before(async () => {
    await bus.ensureTopics();
  });
  after(async () => {
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });
  return {
    ns,
    prefix,
    codec,
    bus,
    startCollector: (overrides = {}, stateName = 'collector', deps = {}) => {
      // Quotas lifted unless a test sets its own: the defaults (3000 lines/s for the node,
      // from the measured capacity of `logmeter up`) would drop lines of the tests that read
      // 20,000 lines as fast as a shell prints them; the limit tests pass `rateLimit`.
      const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, rateLimit: UNLIMITED, ...overrides });
      return createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, stateName), docker, bus, codec, logger: ns.logger, registry: createRegistry(false), ...deps });
    },
  };
}

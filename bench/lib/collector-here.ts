/**
 * The collector in the benchmark's own process, next to the log sink, as the all-in-one
 * `logmeter up` runs it (one event loop for both): bench/end-to-end.ts `--collector same`
 * and bench/noisy-stages.ts. Default settings, the run's label prefix, a fresh state dir.
 */
import path from 'node:path';
import type Docker from 'dockerode';
import type { Registry } from 'prom-client';
import type { AvroCodec } from '../../schemas/codec.js';
import type { EventBus } from '../../lib/bus/bus.js';
import { collectorConfigSchema } from '../../ingest/config.js';
import { createCollector, type Collector } from '../../ingest/collector.js';
import type { BenchNamespace } from './common.js';
import { docker as benchDocker } from './containers.js';

export async function startCollectorHere(o: { ns: BenchNamespace; bus: EventBus; codec: AvroCodec; registry: Registry; docker?: Docker; stateDir?: string }): Promise<Collector> {
  const c = createCollector({
    cfg: collectorConfigSchema.parse({ ...o.ns.config.collector, labelPrefix: o.ns.labelPrefix }),
    node: 'bench',
    stateDir: o.stateDir ?? path.join(o.ns.dataDir, 'collector'),
    docker: o.docker ?? benchDocker,
    bus: o.bus,
    codec: o.codec,
    logger: o.ns.logger,
    registry: o.registry,
  });
  await c.start();
  return c;
}

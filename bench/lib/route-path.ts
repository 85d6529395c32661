/**
 * The routing path as `logmeter up` runs it in one process, for the latency benchmarks:
 * collector → route table processor → HAProxy (its own container, on a free port) →
 * route applier (taking the processor's sets in-process, `local`), each with the
 * product's default settings and the run's label prefix; with `accessLog`, also the
 * access-log parser (HAProxy's log → http events).
 */
import path from 'node:path';
import type Docker from 'dockerode';
import type { Registry } from 'prom-client';
import type { EventBus } from '../../lib/bus/bus.js';
import type { AvroCodec } from '../../schemas/codec.js';
import { collectorConfigSchema } from '../../ingest/config.js';
import { createCollector, type Collector } from '../../ingest/collector.js';
import { startAccessLogParser } from '../../processors/access-log/processor.js';
import { startRouteProcessor, type RouteProcessor } from '../../processors/routes/processor.js';
import { startLoadBalancer, type LoadBalancer } from '../../processors/routes/haproxy.js';
import { startRouteApplier, type RouteApplier } from '../../processors/routes/applier.js';
import { freePort, type BenchNamespace } from './common.js';
import { docker as benchDocker } from './containers.js';

export interface RoutePath {
  collector: Collector;
  processor: RouteProcessor;
  lb: LoadBalancer;
  lbPort: number;
  applier: RouteApplier;
}

export interface RoutePathOptions {
  ns: BenchNamespace;
  bus: EventBus;
  codec: AvroCodec;
  registry: Registry;
  /** The collector's Docker client (a tapped one, say). Default the benchmarks' client. */
  collectorDocker?: Docker;
  accessLog?: boolean;
}

/** Starts the path; `stops` gets each stop function as soon as its part runs (call them in reverse, also after a failed start). */
export async function startRoutePath(o: RoutePathOptions, stops: Array<() => Promise<unknown>>): Promise<RoutePath> {
  const { ns, bus, codec, registry } = o;
  const collector = createCollector({
    cfg: collectorConfigSchema.parse({ ...ns.config.collector, labelPrefix: ns.labelPrefix }),
    node: 'bench',
    stateDir: path.join(ns.dataDir, 'collector'),
    docker: o.collectorDocker ?? benchDocker,
    bus,
    codec,
    logger: ns.logger,
    registry,
  });
  await collector.start();
  stops.push(() => collector.stop());
  if (o.accessLog) {
    const parser = await startAccessLogParser({ bus, logger: ns.logger, registry });
    stops.push(() => parser.stop());
  }
  const processor = await startRouteProcessor({ bus, logger: ns.logger, registry, node: 'bench', stateDir: path.join(ns.dataDir, 'routes'), config: { ...ns.config.routes, labelPrefix: ns.labelPrefix } });
  stops.push(() => processor.stop());
  const lbPort = await freePort();
  const lb = await startLoadBalancer({ docker: benchDocker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: ns.labelPrefix, logger: ns.logger });
  stops.push(() => lb.close());
  const applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, mapFile: lb.mapFile, logger: ns.logger, registry, config: ns.config.routes.applier, local: processor });
  stops.push(() => applier.stop());
  await applier.ready;
  return { collector, processor, lb, lbPort, applier };
}

/** Runs `stops` last first, logging (not throwing) what fails. */
export async function stopAll(stops: Array<() => Promise<unknown>>, ns: BenchNamespace): Promise<void> {
  for (const stop of stops.splice(0).reverse()) {
    await stop().catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
  }
}

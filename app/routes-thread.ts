/**
 * The routes lane as a part on a thread of its own (app/thread-part.ts; the host side is
 * app/routes-lane.ts `startRoutesThread`): the route table processor, HAProxy and the
 * applier, on a bus, codec and Docker client of the thread's own. Its event loop serves
 * only the route path: Kafka fetches of lifecycle, the table, the publish, the runtime API.
 *
 * Sends the main thread: every batch of sets Kafka acknowledged (`published`, for the
 * ClickHouse copy), the table's current sets once started (`current`), and each version
 * the applier applied to HAProxy (`applied`, for benchmarks and tests; `appliedAt` epoch ms,
 * sub-millisecond, comparable across threads; `hinted` for each start hint brought in; `publishedTs` the set's own `ts`, `receivedTs` when the applier took it, `startedTs` when it began sending it to HAProxy, epoch ms).
 */
import { Degraded } from '../lib/http.js';
import { dataPath } from '../lib/config.js';
import { busFor, schemaSource } from '../lib/runtime.js';
import { dockerClient } from '../lib/docker.js';
import { AvroCodec } from '../schemas/codec.js';
import { startRouteProcessor } from '../processors/routes/processor.js';
import { startLoadBalancer } from '../processors/routes/haproxy.js';
import { startRouteApplier } from '../processors/routes/applier.js';
import { startStartHints } from '../processors/routes/start-hints.js';
import type { Config } from './config.js';
import type { RoutesEvent } from './routes-lane.js';
import type { StartPart } from './thread-part.js';

export const start: StartPart<Config> = async ({ config, logger, registry, emit }) => {
  const send = (e: RoutesEvent) => emit(e.event, e.payload);
  const codec = await AvroCodec.create(schemaSource(config));
  const bus = busFor(config, codec, logger, registry);
  const stops: Array<() => Promise<void>> = [() => bus.close()];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    const table = await startRouteProcessor({ bus, logger, registry, node: config.node, stateDir: dataPath(config, 'routes'), config: config.routes });
    stops.push(() => table.stop());
    table.onPublished((sets, forgotten) => send({ event: 'published', payload: { sets: [...sets], forgotten: [...(forgotten ?? [])] } }));
    send({ event: 'current', payload: table.table.current() });
    const lb = await startLoadBalancer({ docker: dockerClient(config.docker.host), dataDir: dataPath(config), bind: config.routes.lb.bind, labelPrefix: config.routes.labelPrefix, logger, image: config.routes.lb.image, backendSlots: config.routes.lb.backendSlots });
    stops.push(() => lb.close());
    const applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, mapFile: lb.mapFile, logger, registry, config: config.routes.applier, local: table });
    stops.push(() => applier.stop());
    if (config.routes.applier.hintConfirmMs > 0) {
      const hints = startStartHints({ docker: dockerClient(config.docker.host), labelPrefix: config.routes.labelPrefix, node: config.node, processor: table, applier, logger, registry });
      stops.push(() => hints.stop());
    }
    applier.onHinted((h, at) => send({ event: 'hinted', payload: { host: h.host, container: h.upstream.container_id, at, trace: h.trace } }));
    applier.onApplied((r) => send({ event: 'applied', payload: { host: r.host, version: r.version, containers: r.upstreams.map((u) => u.container_id), appliedAt: performance.timeOrigin + performance.now(), publishedTs: r.appliedAt - r.lagMs, receivedTs: r.receivedAt, startedTs: r.startedAt } }));
    return {
      stop,
      health: () => {
        const stalls = bus.consumerStalls();
        return stalls.length > 0 ? Promise.reject(new Degraded(stalls.map((s) => s.reason).join('; '))) : Promise.resolve();
      },
      summary: () => table.table.current(),
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
};

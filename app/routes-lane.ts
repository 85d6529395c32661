/**
 * The routes lane of `logmeter up` — the route table processor, the load balancer
 * (HAProxy) and its applier — started the same way in the process (`logmeter processor
 * routes`) or inside a thread of its own (app/routes-thread.ts, in `logmeter up`: its
 * hops never wait behind the collector's, the sink's or the parser's work, issue 15).
 *
 * Either way the route sets go to ClickHouse `route_sets` from the main thread (only the
 * main process may open the embedded ClickHouse): in the thread's case the sets come
 * over messages (`published` events) and the table's current sets after each (re)start
 * (`current`), for the store's `sync`.
 */
import { errorMessage } from '../lib/errors.js';
import { dataPath } from '../lib/config.js';
import type { RouteSet } from '../schemas/events.js';
import type { AppRuntime } from './runtime.js';
import type { Config } from './config.js';
import type { HostSet } from '../processors/routes/store.js';
import type { HintTrace } from '../processors/routes/hints.js';
import type { ThreadHost } from './thread-host.js';

/** What the thread's part sends the main thread (app/routes-thread.ts). */
export type RoutesEvent =
  | { event: 'published'; payload: { sets: RouteSet[]; forgotten: string[] } }
  | { event: 'current'; payload: HostSet[] }
  | { event: 'hinted'; payload: { host: string; container: string; at: number; trace?: HintTrace } }
  | { event: 'applied'; payload: { host: string; version: number; containers: string[]; appliedAt: number; publishedTs: number; receivedTs: number; startedTs: number } };

export interface RoutesLane {
  stop(): Promise<void>;
  /** The table's hosts, for the summary line. */
  current(): Promise<ReadonlyArray<HostSet>>;
  /** The thread, when the lane runs on one. */
  thread?: ThreadHost;
}

/** The route sets as ClickHouse rows, fed by `subscribe`; `sync` with the table's current sets. Undefined without ClickHouse. */
async function storeFor(rt: AppRuntime) {
  if (!rt.clickhouse) return undefined;
  const { RouteSetStore } = await import('../processors/routes/store.js');
  const store = new RouteSetStore(rt.clickhouse, rt.logger.child({ component: 'routes' }));
  const failed = (err: unknown) => rt.logger.warn({ err: errorMessage(err) }, 'route sets not stored in ClickHouse');
  return {
    published: (sets: readonly RouteSet[], forgotten?: readonly string[]) => void store.published(sets, forgotten).catch(failed),
    sync: (current: () => readonly HostSet[]) => store.sync(current).catch(failed),
    idle: () => store.idle(),
  };
}

/** The lane in this thread (`logmeter processor routes`, or `up` without a thread). */
export async function startRoutesHere(rt: AppRuntime): Promise<RoutesLane> {
  const { bus, logger, registry, config } = rt;
  const [{ startRouteProcessor }, { startLoadBalancer }, { startRouteApplier }, { startStartHints }, { dockerClient }] = await Promise.all([
    import('../processors/routes/processor.js'),
    import('../processors/routes/haproxy.js'),
    import('../processors/routes/applier.js'),
    import('../processors/routes/start-hints.js'),
    import('../lib/docker.js'),
  ]);
  // The route table, the load balancer (HAProxy in a container, logs through the collector) and its applier.
  const table = await startRouteProcessor({ bus, logger, registry, node: config.node, stateDir: dataPath(config, 'routes'), config: config.routes });
  // With ClickHouse, every host's current set is also kept in route_sets, for the API (GET /api/v1/apps/:app/routes).
  const store = await storeFor(rt);
  const off = store ? table.onPublished((sets, forgotten) => store.published(sets, forgotten)) : () => true;
  await store?.sync(() => table.table.current());
  const lb = await startLoadBalancer({ docker: dockerClient(config.docker.host), dataDir: dataPath(config), bind: config.routes.lb.bind, labelPrefix: config.routes.labelPrefix, logger, image: config.routes.lb.image, backendSlots: config.routes.lb.backendSlots });
  const applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, mapFile: lb.mapFile, logger, registry, config: config.routes.applier, local: table });
  // Starts seen in Docker's events go into HAProxy ahead of their sets (processors/routes/start-hints.ts).
  const hints = config.routes.applier.hintConfirmMs > 0 ? startStartHints({ docker: dockerClient(config.docker.host), labelPrefix: config.routes.labelPrefix, node: config.node, processor: table, applier, logger, registry }) : undefined;
  return {
    stop: async () => {
      await hints?.stop();
      await applier.stop();
      await lb.close();
      await table.stop();
      off();
      await store?.idle();
    },
    current: () => Promise.resolve(table.table.current()),
  };
}

/** The lane on a thread of its own (app/routes-thread.ts): restarted if it dies, its metrics and health served here. */
export async function startRoutesThread(rt: AppRuntime): Promise<RoutesLane> {
  const [{ startThread, serveThread }, { removeLoadBalancer }, { dockerClient }] = await Promise.all([import('./thread-host.js'), import('../processors/routes/haproxy.js'), import('../lib/docker.js')]);
  const store = await storeFor(rt);
  const log = rt.logger.child({ component: 'routes' });
  const onEvent = (e: RoutesEvent) => {
    if (!store) return;
    if (e.event === 'published') store.published(e.payload.sets, e.payload.forgotten);
    // After each (re)start: hosts forgotten while the thread was down leave route_sets too.
    else if (e.event === 'current') void store.sync(() => e.payload);
  };
  const thread = await startThread<Config>({
    name: 'routes',
    module: new URL('./routes-thread.ts', import.meta.url),
    config: rt.config,
    logger: rt.logger,
    registry: rt.registry,
    logLevel: rt.config.log.level,
    onEvent: (event, payload) => onEvent({ event, payload } as RoutesEvent),
  });
  serveThread(rt.http, thread);
  return {
    thread,
    stop: async () => {
      await thread.stop();
      // A thread that died and was not started again left its HAProxy running: removed here.
      await removeLoadBalancer(dockerClient(rt.config.docker.host), dataPath(rt.config)).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'HAProxy not removed'));
      await store?.idle();
    },
    current: async () => ((await thread.summary()) as HostSet[] | undefined) ?? [],
  };
}

/**
 * The route applier: keeps a running HAProxy's servers equal to the route sets on the
 * compacted routes topic, through the runtime API only (no reload, no restart).
 *
 * - Desired state: the latest set per host, read from the beginning of the topic at
 *   every start (a group of its own, see compacted.ts), then followed.
 * - Actual state: HAProxy itself. Nothing is cached across restarts; the whole set is
 *   reconciled when the topic has been read to its end, when HAProxy restarted (its
 *   pid / start time in `show info` changed, or a command failed), and after any error.
 * - A host gets a free `be_slot_N` backend (a `hosts.map` entry), its upstreams become
 *   servers named by the short container id: added and enabled first, then removed
 *   ones put in maintenance (no new requests: from here on the version counts as
 *   applied), their in-flight requests given `drainTimeoutMs`, their sessions shut
 *   down and the server deleted. A backend left empty goes back to the pool.
 *
 * One loop does every HAProxy call, so no two changes to a backend interleave.
 */
import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import { counter, gauge, histogram } from '../../lib/metrics.js';
import type { RouteSet, Upstream } from '../../schemas/events.js';
import { routesConfigSchema, type RoutesConfig } from './config.js';
import { readRoutes, type RoutesReader } from './compacted.js';
import { HaproxyRuntimeApi, inMaintenance, step, type ServerState, type Step } from './runtime-api.js';
import { serverName } from './table.js';

const SLOT_RE = /^be_slot_(\d+)$/;
/**
 * A map entry the applier writes after each whole reconcile. Its key can never match a
 * request (the lookup key is the Host header up to its first ':'), and a restarted
 * HAProxy has lost it: the surest sign of a restart, since pid and start time (1 s
 * resolution) can stay the same for a container restarted within a second.
 */
const EPOCH_KEY = 'logmeter:epoch';

export interface RouteApplierDeps {
  bus: EventBus;
  /** HAProxy's admin socket (`level admin`). */
  adminSocket: string;
  logger: Logger;
  registry: Registry;
  /** The host → backend map as HAProxy names it; default: the loaded map whose file is `…/hosts.map`. */
  mapFile?: string;
  config?: Partial<RoutesConfig['applier']>;
  /** Consumer group name stem (a random suffix is added). Default `route-applier`. */
  group?: string;
  /**
   * The route processor, when it runs in the same process (`logmeter up`): its sets are
   * taken as soon as Kafka acknowledged them, instead of after this applier's own fetch
   * from the topic (one Kafka round trip less from start to route live). The topic
   * brings the same sets again a moment later; their versions are not newer, so they
   * change nothing. The topic stays the source: a set is handed over only once it is on it.
   */
  local?: { onPublished(listener: (sets: readonly RouteSet[]) => void): () => void };
  clock?: () => number;
}

export interface AppliedRoute {
  host: string;
  version: number;
  upstreams: Upstream[];
  /** When HAProxy stopped sending new requests anywhere else than `upstreams` (clock ms). */
  appliedAt: number;
  /** From the set's publication (its `ts`) to applied, ms. */
  lagMs: number;
}

export interface RouteApplier {
  /** Resolves after the first whole reconcile (the topic read to its end). */
  ready: Promise<void>;
  /** The last applied set of each host. */
  applied(): ReadonlyMap<string, AppliedRoute>;
  /** Resolves with the first applied set of `host` for which `pred` holds (possibly the current one). */
  waitFor(host: string, pred: (r: AppliedRoute) => boolean, timeoutMs?: number): Promise<AppliedRoute>;
  /** Called at every applied version. Returns the unsubscribe function. */
  onApplied(listener: (r: AppliedRoute) => void): () => void;
  /** Reconciles every host now (as after a restart). */
  reconcileAll(): Promise<void>;
  stop(): Promise<void>;
}

/** Server name of an upstream: the short container id, or its address when there is no id. */
export function upstreamServerName(u: Upstream): string {
  const n = serverName(u.container_id);
  return /^[A-Za-z0-9_.-]+$/.test(n) ? n : `u-${u.address.replace(/[^A-Za-z0-9]/g, '_')}-${u.port}`;
}

export async function startRouteApplier(deps: RouteApplierDeps): Promise<RouteApplier> {
  const cfg = routesConfigSchema.shape.applier.parse({ ...routesConfigSchema.parse({}).applier, ...deps.config });
  const log = deps.logger.child({ component: 'route-applier' });
  const clock = deps.clock ?? Date.now;
  const api = new HaproxyRuntimeApi(deps.adminSocket, { timeoutMs: cfg.commandTimeoutMs });
  const m = {
    applied: counter(deps.registry, 'logmeter_routes_applied_total', 'Route set versions applied to HAProxy'),
    lag: histogram(deps.registry, 'logmeter_routes_apply_lag_seconds', 'From a route set being published to HAProxy serving it', [], [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5]),
    commands: counter(deps.registry, 'logmeter_routes_haproxy_changes_total', 'Changes made through the HAProxy runtime API', ['change']),
    errors: counter(deps.registry, 'logmeter_routes_haproxy_errors_total', 'Failed reconcile passes, by error code', ['code']),
    restarts: counter(deps.registry, 'logmeter_routes_haproxy_restarts_total', 'HAProxy restarts noticed (followed by a whole reconcile)'),
    noSlot: counter(deps.registry, 'logmeter_routes_no_backend_slot_total', 'Hosts that could not be routed: every backend slot in use'),
    freeSlots: gauge(deps.registry, 'logmeter_routes_backend_slots_free', 'Backend slots not assigned to a host'),
  };

  const desired = new Map<string, RouteSet>();
  const applied = new Map<string, AppliedRoute>();
  const dirty = new Set<string>();
  /** Mirror of HAProxy's host → backend map. */
  const mapped = new Map<string, string>();
  /** Servers in maintenance waiting for their requests to finish, by `backend/server`. */
  const draining = new Map<string, { backend: string; name: string; since: number }>();
  const listeners = new Set<(r: AppliedRoute) => void>();
  const slotless = new Set<string>();
  /** Unmapped backends that held servers at the last whole reconcile (not retired when the topic was not read to its end). */
  const strays = new Set<string>();
  let slots: string[] = [];
  let mapFile = deps.mapFile;
  let caughtUp = false;
  let needFull = true;
  let stopped = false;
  let identity: { key: string; uptime: number } | undefined;
  let epoch: string | undefined;
  let lastCheck = 0;
  let failures = 0;
  let wake: (() => void) | undefined;
  /** Work arrived while the loop was busy (so it must not go to sleep). */
  let kicked = false;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  const kick = () => {
    kicked = true;
    wake?.();
    wake = undefined;
  };

  const onSet = (set: RouteSet) => {
    const cur = desired.get(set.host);
    if (cur && cur.version >= set.version) return;
    desired.set(set.host, set);
    dirty.add(set.host);
    if (caughtUp) kick();
  };

  function markApplied(set: RouteSet): void {
    const now = clock();
    const r: AppliedRoute = { host: set.host, version: set.version, upstreams: set.upstreams, appliedAt: now, lagMs: now - set.ts };
    const prev = applied.get(set.host);
    applied.set(set.host, r);
    if (prev?.version === set.version) return;
    m.applied.inc();
    m.lag.observe(Math.max(0, r.lagMs) / 1000);
    log.debug({ host: set.host, version: set.version, upstreams: set.upstreams.length, lagMs: r.lagMs }, 'route set applied');
    for (const l of listeners) l(r);
  }

  async function checkRestart(): Promise<void> {
    const id = await api.identity();
    const key = `${id.pid}/${id.startTimeSec}`;
    const marker = epoch && mapFile ? await api.getMapEntry(mapFile, EPOCH_KEY) : undefined;
    if ((identity && (identity.key !== key || id.uptimeSec < identity.uptime)) || (epoch && marker !== epoch)) {
      m.restarts.inc();
      log.warn({ was: identity?.key, now: key }, 'HAProxy restarted; reconciling every host');
      needFull = true;
    }
    identity = { key, uptime: id.uptimeSec };
  }

  /** Takes servers out of rotation (maintenance: no new requests), in one round trip; `reap` deletes them once drained. */
  async function retire(servers: ReadonlyArray<{ backend: string; s: ServerState }>, now: number, also: Step[] = []): Promise<void> {
    const steps: Step[] = [];
    for (const { backend, s } of servers) {
      const key = `${backend}/${s.name}`;
      if (!draining.has(key)) draining.set(key, { backend, name: s.name, since: now });
      if (!inMaintenance(s)) steps.push(step.setServerState(backend, s.name, 'maint'));
    }
    await api.run([...steps, ...also]);
    if (steps.length > 0) m.commands.inc({ change: 'maint' }, steps.length);
  }

  /** Makes `host`'s backend serve exactly its desired upstreams. `current`: its servers, when already read. */
  async function reconcileHost(host: string, current?: ServerState[]): Promise<void> {
    const set = desired.get(host);
    if (!set) return;
    const want = new Map(set.upstreams.map((u) => [upstreamServerName(u), u] as const));
    let backend = mapped.get(host);
    if (!backend) {
      if (want.size === 0) return markApplied(set);
      const used = new Set(mapped.values());
      const busy = new Set([...draining.values()].map((d) => d.backend));
      backend = slots.find((s) => !used.has(s) && !busy.has(s) && !strays.has(s)) ?? slots.find((s) => !used.has(s));
      if (!backend) {
        m.noSlot.inc();
        if (!slotless.has(host)) log.error({ host, slots: slots.length }, 'no free backend slot for this host: not routed (start HAProxy with more lb.backendSlots)');
        slotless.add(host);
        return;
      }
      slotless.delete(host);
      // Servers only enter a slot through this applier and leave it through `reap` (or a
      // restart, which empties every slot): a slot neither mapped, nor draining, nor found
      // holding servers at the last whole reconcile is empty, so a new host's servers go
      // in without reading it first (one command less on the start → route-live path).
      // Were it not (someone else's server of the same name), `add server` fails and the
      // whole reconcile that follows sets it right.
      current = busy.has(backend) || strays.has(backend) ? await api.serversState(backend) : [];
      strays.delete(backend);
    }
    current ??= await api.serversState(backend);
    const now = clock();
    const have = new Map(current.map((s) => [s.name, s] as const));
    // What brings servers in goes first, in one round trip; what takes servers out only
    // after it succeeded, so a replacement is serving before the replaced one stops.
    const bringIn: Step[] = [];
    const changes: string[] = [];
    for (const [name, u] of want) {
      const s = have.get(name);
      if (!s) {
        bringIn.push(step.addServer(backend, name, u.address, u.port), step.enableServer(backend, name));
        changes.push('add');
      } else {
        if (s.address !== u.address || s.port !== u.port) {
          bringIn.push(step.setServerAddress(backend, name, u.address, u.port));
          changes.push('address');
        }
        if (inMaintenance(s)) {
          bringIn.push(step.setServerState(backend, name, 'ready'));
          changes.push('ready');
        }
      }
    }
    const leaving = current.filter((s) => !want.has(s.name)).map((s) => ({ backend, s }));
    let mapStep: Step | undefined;
    if (mapped.get(host) !== backend && want.size > 0) {
      if (!mapFile) throw new LogmeterError('haproxy_no_map', 'the host map is not known yet');
      mapStep = step.addMapEntry(mapFile, host, backend);
      changes.push('map');
    }
    // A new host (nothing to take out): its map entry goes with its servers, the whole
    // change in one round trip. Were a server refused, the host answers 503 as it did
    // unmapped, until the whole reconcile that follows the error.
    if (mapStep && leaving.length === 0) bringIn.push(mapStep);
    await api.run(bringIn);
    for (const name of want.keys()) draining.delete(`${backend}/${name}`);
    if (leaving.length > 0) await retire(leaving, now, mapStep ? [mapStep] : []);
    for (const c of changes) m.commands.inc({ change: c });
    if (mapStep) mapped.set(host, backend);
    markApplied(set);
  }

  async function fullReconcile(): Promise<void> {
    const started = clock();
    dirty.clear();
    if (!deps.mapFile) {
      const maps = await api.maps();
      mapFile = maps.find((x) => x.file === 'hosts.map' || x.file.endsWith('/hosts.map'))?.file;
      if (!mapFile) throw new LogmeterError('haproxy_no_map', `HAProxy has no hosts.map loaded (maps: ${maps.map((x) => x.file).join(', ') || 'none'}): not a logmeter config?`);
    }
    slots = (await api.backends()).filter((b) => SLOT_RE.test(b)).sort((a, b) => Number(SLOT_RE.exec(a)![1]) - Number(SLOT_RE.exec(b)![1]));
    if (slots.length === 0) throw new LogmeterError('haproxy_no_slots', 'HAProxy has no be_slot_N backends: not a logmeter config?');
    const entries = await api.showMap(mapFile!);
    mapped.clear();
    const taken = new Set<string>();
    for (const [host, backend] of entries) {
      if (host === EPOCH_KEY) continue;
      if (slots.includes(backend) && !taken.has(backend)) {
        mapped.set(host, backend);
        taken.add(backend);
      } else {
        await api.delMapEntry(mapFile!, host);
      }
    }
    const byBackend = new Map<string, ServerState[]>();
    for (const s of await api.serversState()) {
      if (!SLOT_RE.test(s.backend)) continue;
      if (!byBackend.has(s.backend)) byBackend.set(s.backend, []);
      byBackend.get(s.backend)!.push(s);
    }
    // Draining entries whose server is gone (e.g. HAProxy restarted) are done.
    for (const [key, d] of draining) if (!byBackend.get(d.backend)?.some((s) => s.name === d.name)) draining.delete(key);
    strays.clear();
    const owned = new Set(mapped.values());
    for (const backend of byBackend.keys()) if (!owned.has(backend)) strays.add(backend);
    for (const host of desired.keys()) {
      const backend = mapped.get(host);
      await reconcileHost(host, backend ? (byBackend.get(backend) ?? []) : undefined);
    }
    const now = clock();
    // Hosts HAProxy routes that no set asks for, and servers in backends no host uses:
    // only once the whole topic was read (a host not read yet is not an orphan).
    if (reader.complete()) {
      const inUse = new Set(mapped.values());
      const orphans: Array<{ backend: string; s: ServerState }> = [];
      for (const [host, backend] of mapped) if (!desired.has(host)) for (const s of byBackend.get(backend) ?? []) orphans.push({ backend, s });
      for (const [backend, servers] of byBackend) if (!inUse.has(backend)) for (const s of servers) orphans.push({ backend, s });
      await retire(orphans, now);
      await releaseEmpty();
    }
    const next = randomUUID().slice(0, 8);
    if (entries.has(EPOCH_KEY)) await api.setMapEntry(mapFile!, EPOCH_KEY, next);
    else await api.addMapEntry(mapFile!, EPOCH_KEY, next);
    epoch = next;
    log.info({ hosts: desired.size, mapped: mapped.size, draining: draining.size, ms: clock() - started }, 'HAProxy reconciled with the route table');
  }

  /** Deletes drained servers (after their requests finished or the timeout) and frees empty backends. */
  async function reap(): Promise<void> {
    const now = clock();
    const backends = new Set([...draining.values()].map((d) => d.backend));
    for (const backend of backends) {
      const sessions = await api.sessions(backend);
      for (const [key, d] of draining) {
        if (d.backend !== backend) continue;
        const cur = sessions.get(d.name);
        if (cur === undefined) {
          draining.delete(key);
          continue;
        }
        if (cur > 0 && now - d.since < cfg.drainTimeoutMs) continue;
        if (cur > 0) await api.shutdownSessions(backend, d.name);
        try {
          await api.delServer(backend, d.name);
          draining.delete(key);
          m.commands.inc({ change: 'delete' });
        } catch (err) {
          if (!(err instanceof LogmeterError) || err.code !== 'haproxy_server_busy') throw err;
          // Idle connections are still attached; HAProxy purges them shortly. Next pass.
          if (now - d.since > cfg.drainTimeoutMs + 30_000) log.warn({ server: key, err: errorMessage(err) }, 'removed server still not deletable');
        }
      }
    }
    await releaseEmpty();
  }

  /** A host whose set is empty gives its backend back once no server is left in it. */
  async function releaseEmpty(): Promise<void> {
    for (const [host, backend] of [...mapped]) {
      const set = desired.get(host);
      if (set && set.upstreams.length > 0) continue;
      if ([...draining.values()].some((d) => d.backend === backend)) continue;
      if ((await api.serversState(backend)).length > 0) continue;
      await api.delMapEntry(mapFile!, host);
      mapped.delete(host);
      m.commands.inc({ change: 'unmap' });
      // A freed backend may be what a waiting host needs.
      for (const h of slotless) dirty.add(h);
    }
    m.freeSlots.set(Math.max(0, slots.length - mapped.size));
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      kicked = false;
      let pause = cfg.checkIntervalMs;
      let failed = false;
      try {
        if (caughtUp) {
          // Changed hosts first, the periodic restart check after them: a change is not
          // kept waiting for it. Against a restarted HAProxy the change either fails (a
          // whole reconcile follows) or lands in the new process, which the check then
          // notices and reconciles whole anyway.
          if (!needFull) {
            for (const host of [...dirty]) {
              dirty.delete(host);
              await reconcileHost(host);
            }
          }
          const now = clock();
          if (needFull || now - lastCheck >= cfg.checkIntervalMs) {
            lastCheck = now;
            await checkRestart();
          }
          if (needFull) {
            await fullReconcile();
            needFull = false;
            resolveReady();
          }
          if (draining.size > 0) await reap();
          pause = Math.max(0, Math.min(draining.size > 0 ? 100 : cfg.checkIntervalMs, lastCheck + cfg.checkIntervalMs - clock()));
        }
        if (failures > 0) log.info({ failures }, 'HAProxy reachable again');
        failures = 0;
      } catch (err) {
        needFull = true;
        failed = true;
        failures++;
        m.errors.inc({ code: err instanceof LogmeterError ? err.code : 'other' });
        const fields = { err: errorMessage(err), failures };
        if (failures === 1 || failures % 30 === 0) log.warn(fields, 'reconciling HAProxy failed; retrying with a whole reconcile');
        else log.debug(fields, 'reconciling HAProxy failed');
        pause = Math.min(2000, 50 * 2 ** Math.min(failures - 1, 6));
      }
      if (stopped || (!failed && (kicked || (dirty.size > 0 && caughtUp)))) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pause);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  const reader: RoutesReader = await readRoutes({ bus: deps.bus, logger: log, name: deps.group ?? 'route-applier', onSet, catchUpTimeoutMs: cfg.catchUpTimeoutMs });
  const offLocal = deps.local?.onPublished((sets) => {
    for (const set of sets) onSet(set);
  });
  const done = loop();
  // On a catch-up timeout the applier goes on with what it read (new routes must reach
  // HAProxy) but removes no host it has not read about (see fullReconcile).
  void reader.caughtUp.then((complete) => {
    caughtUp = true;
    needFull = true;
    log.info({ hosts: desired.size, complete }, 'routes topic read; reconciling HAProxy');
    kick();
  });

  return {
    ready,
    applied: () => applied,
    waitFor(host, pred, timeoutMs = 30_000) {
      const cur = applied.get(host);
      if (cur && pred(cur)) return Promise.resolve(cur);
      return new Promise<AppliedRoute>((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new LogmeterError('route_wait_timeout', `no applied route set of ${host} matched within ${timeoutMs} ms (last: ${JSON.stringify(applied.get(host) ?? null)})`));
        }, timeoutMs);
        const listener = (r: AppliedRoute) => {
          if (r.host !== host || !pred(r)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(r);
        };
        listeners.add(listener);
      });
    },
    onApplied(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async reconcileAll() {
      needFull = true;
      kick();
      while (needFull && !stopped) await new Promise((r) => setTimeout(r, 20));
    },
    async stop() {
      stopped = true;
      offLocal?.();
      kick();
      await done;
      api.close();
      await reader.stop();
      log.info('route applier stopped');
    },
  };
}

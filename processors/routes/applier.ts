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
 * - A host deleted from the topic (a tombstone: idle past its grace) is forgotten: its
 *   servers, if any are left, retired like removed ones, its map entry and slot freed.
 *
 * - A start hint (`hint`, from start-hints.ts: a container start seen in Docker's events,
 *   checked by the route table's own rules) brings that one server in at once, ahead of
 *   the set that will list it; it never takes anything out. The set that follows decides:
 *   the host's reconcile makes HAProxy equal to it. No set within `hintConfirmMs`: the
 *   host is reconciled against what the topic says (the hinted server taken out).
 *
 * One loop does every HAProxy call, so no two changes to a backend interleave. What to
 * send is decided by the pure functions of diff.ts; this file holds the state, reads
 * HAProxy and sends.
 */
import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { RouteSet, Upstream } from '../../schemas/events.js';
import { routesConfigSchema, type RoutesConfig } from './config.js';
import { readRoutes, type RoutesReader } from './compacted.js';
import { adoptMap, diffHost, isSlot, mayRelease, orphans, pickSlot, reapAction, retireSteps, slotBackends, upstreamServerName, type ServerRef } from './diff.js';
import { HaproxyRuntimeApi, type ServerState } from './runtime-api.js';
import { HintBook, decided, type RouteHint } from './hints.js';
import { applierMetrics, type ApplierMetrics } from './telemetry.js';

export type { RouteHint } from './hints.js';

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
  local?: { onPublished(listener: (sets: readonly RouteSet[], forgotten?: readonly string[]) => void): () => void };
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
  /** When this applier took the set (from the local processor or its own fetch; clock ms). */
  receivedAt: number;
  /** When it began bringing HAProxy to this set (clock ms): from `receivedAt` to here the set waited for the applier's loop. */
  startedAt: number;
}

export interface RouteApplier {
  /**
   * Brings `h.upstream` into `h.host`'s backend ahead of its set (never takes anything out).
   * False when it is left to the set: not caught up, hints off, or a set already decided.
   */
  hint(h: RouteHint): boolean;
  /** A container ended (Docker's die, stop or destroy): a server a hint brought in for it and no set settled yet is taken out now. */
  retract(containerId: string): void;
  /** Called when a hint's server was brought in (clock ms). Returns the unsubscribe function. */
  onHinted(listener: (h: RouteHint, at: number) => void): () => void;
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

type ApplierConfig = RoutesConfig['applier'];

export async function startRouteApplier(deps: RouteApplierDeps): Promise<RouteApplier> {
  const cfg = routesConfigSchema.shape.applier.parse({ ...routesConfigSchema.parse({}).applier, ...deps.config });
  const applier = new Applier(deps, cfg);
  await applier.start();
  return applier;
}

class Applier implements RouteApplier {
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly api: HaproxyRuntimeApi;
  private readonly m: ApplierMetrics;

  private readonly desired = new Map<string, RouteSet>();
  /** When each desired set was taken (clock ms), for `AppliedRoute.receivedAt`. */
  private readonly receivedAt = new Map<string, number>();
  private readonly appliedSets = new Map<string, AppliedRoute>();
  private readonly dirty = new Set<string>();
  /** Mirror of HAProxy's host → backend map. */
  private readonly mapped = new Map<string, string>();
  /** Servers in maintenance waiting for their requests to finish, by `backend/server`. */
  private readonly draining = new Map<string, { backend: string; name: string; since: number }>();
  private readonly listeners = new Set<(r: AppliedRoute) => void>();
  private readonly hintListeners = new Set<(h: RouteHint, at: number) => void>();
  private readonly hints: HintBook;
  private readonly slotless = new Set<string>();
  /** Unmapped backends that held servers at the last whole reconcile (not retired when the topic was not read to its end). */
  private readonly strays = new Set<string>();
  private slots: string[] = [];
  private mapFile: string | undefined;
  private caughtUp = false;
  private needFull = true;
  private stopped = false;
  private identity: { key: string; uptime: number } | undefined;
  private epoch: string | undefined;
  private lastCheck = 0;
  private failures = 0;
  private wake: (() => void) | undefined;
  /** Work arrived while the loop was busy (so it must not go to sleep). */
  private kicked = false;
  private reader!: RoutesReader;
  private offLocal: (() => void) | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: RouteApplierDeps,
    private readonly cfg: ApplierConfig,
  ) {
    this.log = deps.logger.child({ component: 'route-applier' });
    this.clock = deps.clock ?? Date.now;
    this.api = new HaproxyRuntimeApi(deps.adminSocket, { timeoutMs: cfg.commandTimeoutMs });
    this.m = applierMetrics(deps.registry);
    this.hints = new HintBook(cfg.hintConfirmMs, (outcome, n = 1) => this.m.hints.inc({ outcome }, n));
    this.mapFile = deps.mapFile;
    this.ready = new Promise<void>((r) => (this.resolveReady = r));
  }

  async start(): Promise<void> {
    this.reader = await readRoutes({ bus: this.deps.bus, logger: this.log, name: this.deps.group ?? 'route-applier', onSet: (s) => this.onSet(s), onForget: (h) => this.onForget(h), catchUpTimeoutMs: this.cfg.catchUpTimeoutMs });
    this.offLocal = this.deps.local?.onPublished((sets, forgotten = []) => {
      for (const set of sets) this.onSet(set);
      for (const host of forgotten) this.onForget(host);
    });
    this.done = this.loop();
    // On a catch-up timeout the applier goes on with what it read (new routes must reach
    // HAProxy) but removes no host it has not read about (see fullReconcile).
    void this.reader.caughtUp.then((complete) => {
      this.caughtUp = true;
      this.needFull = true;
      this.log.info({ hosts: this.desired.size, complete }, 'routes topic read; reconciling HAProxy');
      this.kick();
    });
  }

  applied(): ReadonlyMap<string, AppliedRoute> {
    return this.appliedSets;
  }

  waitFor(host: string, pred: (r: AppliedRoute) => boolean, timeoutMs = 30_000): Promise<AppliedRoute> {
    const cur = this.appliedSets.get(host);
    if (cur && pred(cur)) return Promise.resolve(cur);
    return new Promise<AppliedRoute>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new LogmeterError('route_wait_timeout', `no applied route set of ${host} matched within ${timeoutMs} ms (last: ${JSON.stringify(this.appliedSets.get(host) ?? null)})`));
      }, timeoutMs);
      const listener = (r: AppliedRoute) => {
        if (r.host !== host || !pred(r)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(r);
      };
      this.listeners.add(listener);
    });
  }

  hint(h: RouteHint): boolean {
    if (this.cfg.hintConfirmMs === 0 || !this.caughtUp || this.stopped || decided(h, this.desired)) {
      this.m.hints.inc({ outcome: 'skipped' });
      return false;
    }
    this.hints.add(h);
    this.kick();
    return true;
  }

  retract(containerId: string): void {
    const hosts = this.hints.retract(containerId);
    for (const host of hosts) this.dirty.add(host);
    if (hosts.length > 0) this.kick();
  }

  onHinted(listener: (h: RouteHint, at: number) => void): () => void {
    this.hintListeners.add(listener);
    return () => this.hintListeners.delete(listener);
  }

  /** The waiting hints (hints.ts rule 2), each host's in one round trip. */
  private async applyHints(): Promise<void> {
    const plans = this.hints.plan({
      desired: this.desired,
      mapped: this.mapped,
      applied: (host) => this.appliedSets.get(host)?.upstreams ?? [],
      draining: this.draining,
      slots: this.slots,
      strays: this.strays,
      mapFile: this.mapFile,
    });
    for (const p of plans) {
      this.hints.note(p, this.clock());
      if (p.maps) {
        this.mapped.set(p.host, p.backend);
        this.strays.delete(p.backend);
      }
      await this.api.run(p.steps);
      const at = this.clock();
      this.m.hints.inc({ outcome: 'applied' }, p.taken.length);
      this.m.commands.inc({ change: 'add' }, p.taken.length);
      if (p.maps) this.m.commands.inc({ change: 'map' });
      this.log.debug({ host: p.host, backend: p.backend, servers: p.taken.length }, 'start hint brought into HAProxy ahead of its route set');
      for (const h of p.taken) {
        if (h.trace) {
          const t = h.trace;
          this.m.hintLag.observe({ stage: 'event' }, Math.max(0, t.seen - t.event) / 1000);
          this.m.hintLag.observe({ stage: 'inspected' }, Math.max(0, t.inspected - t.event) / 1000);
          this.m.hintLag.observe({ stage: 'applied' }, Math.max(0, at - t.event) / 1000);
        }
        for (const l of this.hintListeners) l(h, at);
      }
    }
  }

  onApplied(listener: (r: AppliedRoute) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async reconcileAll(): Promise<void> {
    this.needFull = true;
    this.kick();
    while (this.needFull && !this.stopped) await new Promise((r) => setTimeout(r, 20));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.offLocal?.();
    this.kick();
    await this.done;
    this.api.close();
    await this.reader.stop();
    this.log.info('route applier stopped');
  }

  private kick(): void {
    this.kicked = true;
    this.wake?.();
    this.wake = undefined;
  }

  private onSet(set: RouteSet): void {
    const cur = this.desired.get(set.host);
    if (cur && cur.version >= set.version) return;
    this.desired.set(set.host, set);
    this.receivedAt.set(set.host, this.clock());
    this.dirty.add(set.host);
    if (this.caughtUp) this.kick();
  }

  /**
   * A tombstone: no set for `host` any more. Its versions start again if it comes back
   * (the route table forgot it too). Brought by the local processor, then again by the
   * topic: a set published in between (the host back within milliseconds) is taken out
   * and put back when the topic brings it as well.
   */
  private onForget(host: string): void {
    this.receivedAt.delete(host);
    if (!this.desired.delete(host) && !this.mapped.has(host)) return;
    this.appliedSets.delete(host);
    this.slotless.delete(host);
    this.dirty.add(host);
    if (this.caughtUp) this.kick();
  }

  private markApplied(set: RouteSet, startedAt: number): void {
    const now = this.clock();
    const r: AppliedRoute = { host: set.host, version: set.version, upstreams: set.upstreams, appliedAt: now, lagMs: now - set.ts, receivedAt: this.receivedAt.get(set.host) ?? startedAt, startedAt };
    const prev = this.appliedSets.get(set.host);
    this.appliedSets.set(set.host, r);
    if (prev?.version === set.version) return;
    this.m.applied.inc();
    this.m.lag.observe(Math.max(0, r.lagMs) / 1000);
    this.log.debug({ host: set.host, version: set.version, upstreams: set.upstreams.length, lagMs: r.lagMs }, 'route set applied');
    for (const l of this.listeners) l(r);
  }

  private async checkRestart(): Promise<void> {
    const id = await this.api.identity();
    const key = `${id.pid}/${id.startTimeSec}`;
    const marker = this.epoch && this.mapFile ? await this.api.getMapEntry(this.mapFile, EPOCH_KEY) : undefined;
    if ((this.identity && (this.identity.key !== key || id.uptimeSec < this.identity.uptime)) || (this.epoch && marker !== this.epoch)) {
      this.m.restarts.inc();
      this.log.warn({ was: this.identity?.key, now: key }, 'HAProxy restarted; reconciling every host');
      this.needFull = true;
    }
    this.identity = { key, uptime: id.uptimeSec };
  }

  /** Notes servers as draining (from `now`) before they are put in maintenance. */
  private drainFrom(servers: readonly ServerRef[], now: number): void {
    for (const { backend, s } of servers) {
      const key = `${backend}/${s.name}`;
      if (!this.draining.has(key)) this.draining.set(key, { backend, name: s.name, since: now });
    }
  }

  /** Makes `host`'s backend serve exactly its desired upstreams. `current`: its servers, when already read. */
  private async reconcileHost(host: string, current?: ServerState[]): Promise<void> {
    const set = this.desired.get(host);
    if (!set) return this.retireHost(host);
    const startedAt = this.clock();
    let backend = this.mapped.get(host);
    if (!backend) {
      if (set.upstreams.length === 0) return this.markApplied(set, startedAt);
      const slot = pickSlot(this.slots, this.mapped.values(), [...this.draining.values()].map((d) => d.backend), this.strays);
      if (!slot) {
        this.m.noSlot.inc();
        if (!this.slotless.has(host)) this.log.error({ host, slots: this.slots.length }, 'no free backend slot for this host: not routed (start HAProxy with more lb.backendSlots)');
        this.slotless.add(host);
        return;
      }
      this.slotless.delete(host);
      backend = slot.backend;
      // Servers only enter a slot through this applier and leave it through `reap` (or a
      // restart, which empties every slot): a slot neither mapped, nor draining, nor found
      // holding servers at the last whole reconcile is empty, so a new host's servers go
      // in without reading it first (one command less on the start → route-live path).
      // Were it not (someone else's server of the same name), `add server` fails and the
      // whole reconcile that follows sets it right.
      current = slot.read ? await this.api.serversState(backend) : [];
      this.strays.delete(backend);
    }
    current ??= await this.api.serversState(backend);
    const now = this.clock();
    const diff = diffHost({ host, backend, upstreams: set.upstreams, current, mapped: this.mapped.get(host) === backend, mapFile: this.mapFile });
    // A new host with nothing to take out has its map entry in this first round trip:
    // were a server refused, the host answers 503 as it did unmapped, until the whole
    // reconcile that follows the error.
    await this.api.run(diff.bringIn);
    for (const u of set.upstreams) this.draining.delete(`${backend}/${upstreamServerName(u)}`);
    if (diff.leaving.length > 0) {
      this.drainFrom(
        diff.leaving.map((s) => ({ backend, s })),
        now,
      );
      await this.api.run(diff.takeOut);
    }
    for (const c of diff.changes) this.m.commands.inc({ change: c });
    if (diff.maps) this.mapped.set(host, backend);
    this.hints.settle(host, set);
    this.markApplied(set, startedAt);
  }

  /** A forgotten host that still has a backend: its servers retired (drained first), its map entry freed once the backend is empty. */
  private async retireHost(host: string): Promise<void> {
    const backend = this.mapped.get(host);
    this.hints.settle(host, undefined);
    if (!backend) return;
    const retired = (await this.api.serversState(backend)).map((s) => ({ backend, s }));
    this.drainFrom(retired, this.clock());
    const steps = retireSteps(retired);
    await this.api.run(steps);
    if (steps.length > 0) this.m.commands.inc({ change: 'maint' }, steps.length);
    await this.releaseEmpty();
  }

  private async fullReconcile(): Promise<void> {
    const api = this.api;
    const started = this.clock();
    this.dirty.clear();
    if (!this.deps.mapFile) {
      const maps = await api.maps();
      this.mapFile = maps.find((x) => x.file === 'hosts.map' || x.file.endsWith('/hosts.map'))?.file;
      if (!this.mapFile) throw new LogmeterError('haproxy_no_map', `HAProxy has no hosts.map loaded (maps: ${maps.map((x) => x.file).join(', ') || 'none'}): not a logmeter config?`);
    }
    const mapFile = this.mapFile!;
    this.slots = slotBackends(await api.backends());
    if (this.slots.length === 0) throw new LogmeterError('haproxy_no_slots', 'HAProxy has no be_slot_N backends: not a logmeter config?');
    const entries = await api.showMap(mapFile);
    const adopted = adoptMap(entries, this.slots, EPOCH_KEY);
    this.mapped.clear();
    for (const [host, backend] of adopted.mapped) this.mapped.set(host, backend);
    for (const host of adopted.stale) await api.delMapEntry(mapFile, host);
    const byBackend = new Map<string, ServerState[]>();
    for (const s of await api.serversState()) {
      if (!isSlot(s.backend)) continue;
      if (!byBackend.has(s.backend)) byBackend.set(s.backend, []);
      byBackend.get(s.backend)!.push(s);
    }
    // Draining entries whose server is gone (e.g. HAProxy restarted) are done.
    for (const [key, d] of this.draining) if (!byBackend.get(d.backend)?.some((s) => s.name === d.name)) this.draining.delete(key);
    this.strays.clear();
    const owned = new Set(this.mapped.values());
    for (const backend of byBackend.keys()) if (!owned.has(backend)) this.strays.add(backend);
    for (const host of this.desired.keys()) {
      const backend = this.mapped.get(host);
      await this.reconcileHost(host, backend ? (byBackend.get(backend) ?? []) : undefined);
    }
    const now = this.clock();
    // Hosts HAProxy routes that no set asks for, and servers in backends no host uses:
    // only once the whole topic was read (a host not read yet is not an orphan).
    if (this.reader.complete()) {
      const retired = orphans(this.mapped, this.desired, byBackend);
      this.drainFrom(retired, now);
      const steps = retireSteps(retired);
      await api.run(steps);
      if (steps.length > 0) this.m.commands.inc({ change: 'maint' }, steps.length);
      await this.releaseEmpty();
    }
    const next = randomUUID().slice(0, 8);
    if (entries.has(EPOCH_KEY)) await api.setMapEntry(mapFile, EPOCH_KEY, next);
    else await api.addMapEntry(mapFile, EPOCH_KEY, next);
    this.epoch = next;
    this.log.info({ hosts: this.desired.size, mapped: this.mapped.size, draining: this.draining.size, ms: this.clock() - started }, 'HAProxy reconciled with the route table');
  }

  /** The waiting start hints, when there are any and no whole reconcile is due. */
  private async hintsFirst(): Promise<void> {
    if (this.hints.pending && !this.needFull) await this.applyHints();
  }

  /** Deletes drained servers (after their requests finished or the timeout) and frees empty backends. */
  private async reap(): Promise<void> {
    const now = this.clock();
    const backends = new Set([...this.draining.values()].map((d) => d.backend));
    for (const backend of backends) {
      await this.hintsFirst();
      const sessions = await this.api.sessions(backend);
      for (const [key, d] of this.draining) {
        if (d.backend !== backend) continue;
        const action = reapAction(sessions.get(d.name), now - d.since, this.cfg.drainTimeoutMs);
        if (action === 'forget') {
          this.draining.delete(key);
          continue;
        }
        if (action === 'wait') continue;
        if (action === 'shutdown-delete') await this.api.shutdownSessions(backend, d.name);
        try {
          await this.api.delServer(backend, d.name);
          this.draining.delete(key);
          this.m.commands.inc({ change: 'delete' });
        } catch (err) {
          if (!(err instanceof LogmeterError) || err.code !== 'haproxy_server_busy') throw err;
          // Idle connections are still attached; HAProxy purges them shortly. Next pass.
          if (now - d.since > this.cfg.drainTimeoutMs + 30_000) this.log.warn({ server: key, err: errorMessage(err) }, 'removed server still not deletable');
        }
      }
    }
    await this.releaseEmpty();
  }

  /** A host whose set is empty gives its backend back once no server is left in it. */
  private async releaseEmpty(): Promise<void> {
    for (const [host, backend] of [...this.mapped]) {
      if (!mayRelease(this.desired.get(host), backend, [...this.draining.values()].map((d) => d.backend))) continue;
      if ((await this.api.serversState(backend)).length > 0) continue;
      await this.api.delMapEntry(this.mapFile!, host);
      this.mapped.delete(host);
      this.m.commands.inc({ change: 'unmap' });
      // A freed backend may be what a waiting host needs.
      for (const h of this.slotless) this.dirty.add(h);
    }
    this.m.freeSlots.set(Math.max(0, this.slots.length - this.mapped.size));
  }

  private async loop(): Promise<void> {
    const cfg = this.cfg;
    while (!this.stopped) {
      this.kicked = false;
      let pause = cfg.checkIntervalMs;
      let failed = false;
      try {
        if (this.caughtUp) {
          // Changed hosts first, the periodic restart check after them: a change is not
          // kept waiting for it. Against a restarted HAProxy the change either fails (a
          // whole reconcile follows) or lands in the new process, which the check then
          // notices and reconciles whole anyway.
          if (!this.needFull) {
            // Starts first: a hint is one round trip that makes a new container reachable.
            // Also between the pass's other steps (hosts, the restart check, the reaping of
            // drained servers): a hint that came meanwhile waits for one step, not the pass.
            await this.hintsFirst();
            for (const host of this.hints.overdue(this.clock())) this.dirty.add(host);
            for (const host of [...this.dirty]) {
              this.dirty.delete(host);
              await this.reconcileHost(host);
              await this.hintsFirst();
            }
          }
          const now = this.clock();
          if (this.needFull || now - this.lastCheck >= cfg.checkIntervalMs) {
            this.lastCheck = now;
            await this.checkRestart();
            if (!this.needFull) await this.hintsFirst();
          }
          if (this.needFull) {
            await this.fullReconcile();
            this.needFull = false;
            this.resolveReady();
          }
          if (this.draining.size > 0) await this.reap();
          pause = Math.max(0, Math.min(this.draining.size > 0 ? 100 : cfg.checkIntervalMs, this.lastCheck + cfg.checkIntervalMs - this.clock(), this.hints.nextDeadline() - this.clock()));
        }
        if (this.failures > 0) this.log.info({ failures: this.failures }, 'HAProxy reachable again');
        this.failures = 0;
      } catch (err) {
        this.needFull = true;
        failed = true;
        this.failures++;
        this.m.errors.inc({ code: err instanceof LogmeterError ? err.code : 'other' });
        const fields = { err: errorMessage(err), failures: this.failures };
        if (this.failures === 1 || this.failures % 30 === 0) this.log.warn(fields, 'reconciling HAProxy failed; retrying with a whole reconcile');
        else this.log.debug(fields, 'reconciling HAProxy failed');
        pause = Math.min(2000, 50 * 2 ** Math.min(this.failures - 1, 6));
      }
      if (this.stopped || (!failed && (this.kicked || ((this.dirty.size > 0 || this.hints.pending) && this.caughtUp)))) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pause);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

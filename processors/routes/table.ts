/**
 * The route table: which upstreams (published host address and port) serve each app
 * host, from lifecycle events and HTTP health. Plain code over events with the time
 * passed in (no I/O, no timers), so it can be replayed and property-tested.
 *
 * A container is in its host's set while it is running, not paused, not reported
 * unhealthy by Docker, not drained by the scaler and not ejected for sustained 5xx.
 * Each host's set carries a version that only grows; `flush()` gives the sets that
 * changed since the last acknowledged publish, `published()` records the publish.
 *
 * A host idle (nothing published and no container of it running) for
 * `emptyHostGraceMs` is given up: `expired()` names it, the caller deletes its key from
 * the routes topic (a tombstone) and then calls `forget()`. A seed that reads the
 * tombstone forgets it too, so a snapshot older than the tombstone cannot bring it back.
 */
import type { HttpRequest, LifecycleEvent, RouteSet, Upstream } from '../../schemas/events.js';
import { eventId } from '../../lib/event-id.js';
import type { HealthPolicy } from './config.js';
import { normalizeHost, routeTarget } from './target.js';
import { HANDLED, outReason, sameUpstreams, serverName, sortUpstreams, terminating, type Member, type Notice, type TableSnapshot } from './member.js';

export { normalizeHost, routeTarget, type RouteTarget } from './target.js';
export { outReason, serverName, sortUpstreams, sameUpstreams, type HttpHealth, type HttpState, type Member, type Notice, type TableSnapshot } from './member.js';

export interface TablePolicy {
  labelPrefix: string;
  /** Address used for ports published on every interface. */
  wildcardAddress: string;
  health: HealthPolicy;
  /** How long a host stays idle before `expired()` names it, ms; undefined: never. */
  emptyHostGraceMs?: number | undefined;
}

interface Bucket {
  start: number;
  requests: number;
  errors: number;
}

interface HostState {
  host: string;
  /** The tenant that owns the host: another tenant's container cannot join it. */
  tenant: string;
  app: string;
  version: number;
  published: Upstream[];
  reasons: string[];
  /** Since when (ms) nothing is published for it and none of its containers runs; null while it is in use, or not seen idle yet. */
  emptySince: number | null;
}

const BUCKETS_PER_WINDOW = 10;
const MAX_REASONS = 20;

export class RouteTable {
  private readonly members = new Map<string, Member>();
  /** The members of each host (a member's host never changes): what `live` and the health check read. */
  private readonly byHost = new Map<string, Set<Member>>();
  private readonly byServer = new Map<string, string>();
  private readonly hosts = new Map<string, HostState>();
  private readonly windows = new Map<string, Bucket[]>();
  private readonly dirty = new Set<string>();
  private readonly notices: Notice[] = [];
  /** Grows on every state change worth persisting (snapshot writers compare it). */
  revision = 0;

  constructor(
    readonly policy: TablePolicy,
    private readonly node: string,
  ) {}

  static fromSnapshot(policy: TablePolicy, node: string, snap: TableSnapshot): RouteTable {
    const t = new RouteTable(policy, node);
    for (const h of snap.hosts) t.hosts.set(h.host, { ...h, published: sortUpstreams(h.published), reasons: [], emptySince: h.emptySince ?? null });
    for (const m of snap.members) t.addMember({ ...m, http: { ...m.http } });
    return t;
  }

  snapshot(): TableSnapshot {
    return {
      hosts: [...this.hosts.values()].map(({ host, tenant, app, version, published, emptySince }) => ({ host, tenant, app, version, published, emptySince })),
      members: [...this.members.values()].map((m) => ({ ...m, http: { ...m.http } })),
    };
  }

  /**
   * A set read back from the routes topic at start: its version is the floor of the
   * next one, and upstreams the table does not know become members (the topic may be
   * newer than the snapshot, or there is no snapshot).
   */
  seed(set: RouteSet): void {
    const host = normalizeHost(set.host);
    if (!host) return;
    const hs = this.hostState(host, set.tenant, set.app);
    if (set.version <= hs.version) return;
    hs.version = set.version;
    hs.published = sortUpstreams(set.upstreams);
    hs.emptySince = set.upstreams.length === 0 ? set.ts : null;
    if (!hs.tenant) hs.tenant = set.tenant;
    if (!hs.app) hs.app = set.app;
    for (const u of set.upstreams) {
      const known = this.members.get(u.container_id);
      if (known) {
        // Published back in after the snapshot was written: its probation began (a timer, not an event, so not replayed).
        if (known.http.state === 'ejected') known.http = { ...known.http, state: 'probation', since: set.ts, until: 0 };
        continue;
      }
      this.addMember({
        containerId: u.container_id,
        host,
        tenant: set.tenant,
        app: set.app,
        address: u.address,
        port: u.port,
        running: true,
        paused: false,
        unhealthy: false,
        drained: false,
        http: { state: 'ok', since: 0, until: 0, strikes: 0 },
      });
    }
    // The live set may differ from what was published last (e.g. a member the snapshot
    // knows as ejected): the next flush says so with a higher version.
    this.dirty.add(host);
    this.revision++;
  }

  applyLifecycle(e: LifecycleEvent): void {
    const id = e.container_id;
    if (!id) return;
    let m = this.members.get(id);
    const short = serverName(id);
    if (!m) {
      // Any event makes a container known, so its flags always follow the last event that
      // set each of them: applying a batch again gives the same table.
      if (!HANDLED.has(e.action) || e.action === 'destroy') return;
      const target = routeTarget(e, this.policy);
      const report = e.action === 'start';
      if (target.host === null) {
        if (target.problem === 'bad_lb_host' && report) this.notices.push({ kind: 'bad_host', containerId: id, host: null, problem: `lb-host label "${e.labels[`${this.policy.labelPrefix}lb-host`]}" is not a host name` });
        return;
      }
      const hs = this.hostState(target.host, e.tenant, e.app);
      if (hs.tenant && hs.tenant !== e.tenant) {
        if (report) this.notices.push({ kind: 'foreign_tenant', containerId: id, host: target.host, problem: `host belongs to tenant "${hs.tenant}", container is tenant "${e.tenant}": refused` });
        return;
      }
      if (!hs.tenant) {
        hs.tenant = e.tenant;
        hs.app = e.app;
      }
      m = {
        containerId: id,
        host: target.host,
        tenant: e.tenant,
        app: e.app,
        address: null,
        port: null,
        running: false,
        paused: false,
        unhealthy: false,
        drained: false,
        http: { state: 'ok', since: e.ts, until: 0, strikes: 0 },
      };
      this.addMember(m);
    }
    const before = outReason(m);
    const beforeEndpoint = `${m.address}:${m.port}`;
    if (HANDLED.has(e.action)) m.seen = Math.max(m.seen ?? 0, e.ts);
    switch (e.action) {
      case 'start':
      case 'restart':
        m.running = true;
        m.paused = false;
        m.unhealthy = false;
        m.drained = false;
        m.http = { state: 'ok', since: e.ts, until: 0, strikes: 0 };
        this.windows.delete(id);
        this.updateEndpoint(m, e);
        break;
      case 'unpause':
        // Only a running container can be paused, health-checked or unpaused.
        m.running = true;
        m.paused = false;
        if (e.ports.length > 0) this.updateEndpoint(m, e);
        break;
      case 'pause':
        m.paused = true;
        break;
      case 'health_status':
        m.running = true;
        if (e.health === 'unhealthy') m.unhealthy = true;
        else if (e.health === 'healthy') {
          m.unhealthy = false;
          if (e.ports.length > 0) this.updateEndpoint(m, e);
        }
        break;
      case 'die':
      case 'stop':
        m.running = false;
        break;
      case 'kill':
        if (terminating(e)) m.running = false;
        break;
      case 'destroy':
        m.running = false;
        this.removeMember(m);
        break;
      case 'drain':
        m.drained = true;
        break;
      default:
        return;
    }
    const after = outReason(m);
    if (before !== after || beforeEndpoint !== `${m.address}:${m.port}`) {
      this.touch(m.host, `${e.action}${e.action === 'health_status' ? ` ${e.health ?? ''}` : ''} ${short}${after && after !== 'stopped' ? ` (${after})` : ''}`);
    }
  }

  /**
   * What a `start` event would bring into its host's set, without changing the table (the
   * applier's start hints, start-hints.ts): the container's upstream, by the same rules as
   * `applyLifecycle` (lb labels, the host's tenant, a published port), and the host's last
   * published version. Undefined when the event would not put the container in a set, and
   * when the table has applied a later event of the container already (or one whose time it
   * does not know): a start seen late, after its die, must not bring it back.
   */
  preview(e: LifecycleEvent): { host: string; tenant: string; app: string; upstream: Upstream; version: number } | undefined {
    if (e.action !== 'start' || !e.container_id) return undefined;
    const known = this.members.get(e.container_id);
    if (known && (known.seen === undefined || known.seen > e.ts)) return undefined;
    const host = known?.host ?? routeTarget(e, this.policy).host;
    if (!host) return undefined;
    const hs = this.hosts.get(host);
    // A table of just this host and this container: what applyLifecycle does with the event there is what it would do here.
    const t = RouteTable.fromSnapshot(this.policy, this.node, {
      hosts: hs ? [{ host: hs.host, tenant: hs.tenant, app: hs.app, version: hs.version, published: hs.published, emptySince: hs.emptySince }] : [],
      members: known ? [{ ...known, http: { ...known.http } }] : [],
    });
    t.applyLifecycle(e);
    const m = t.members.get(e.container_id);
    if (!m || outReason(m) !== null || m.address === null || m.port === null) return undefined;
    return { host, tenant: m.tenant, app: m.app, upstream: { container_id: m.containerId, address: m.address, port: m.port }, version: hs?.version ?? 0 };
  }

  /**
   * One request's outcome for its upstream: through HAProxy's server name (HAProxy
   * logs), else the container that logged it (the app's own access log).
   */
  applyHttp(e: HttpRequest, now: number): void {
    const id = (e.server !== null && this.byServer.get(e.server)) || e.container_id;
    const m = this.members.get(id);
    if (!m || !m.running || e.ts < m.http.since) return;
    const { windowMs, minRequests, errorRate } = this.policy.health;
    const width = Math.max(1, Math.floor(windowMs / BUCKETS_PER_WINDOW));
    const start = e.ts - (e.ts % width);
    let buckets = this.windows.get(id);
    if (!buckets) this.windows.set(id, (buckets = []));
    let b = buckets.find((x) => x.start === start);
    if (!b) {
      buckets.push((b = { start, requests: 0, errors: 0 }));
      buckets.sort((x, y) => x.start - y.start);
    }
    b.requests++;
    if (e.status >= 500) b.errors++;
    const newest = buckets[buckets.length - 1]!.start;
    while (buckets.length > 0 && buckets[0]!.start <= newest - windowMs) buckets.shift();
    let requests = 0;
    let errors = 0;
    for (const x of buckets) {
      requests += x.requests;
      errors += x.errors;
    }
    if (requests < minRequests) return;
    const failing = errors / requests >= errorRate;
    const short = serverName(id);
    // Never the host's last upstream in rotation (as Envoy's panic threshold keeps routing): taken
    // out it would turn its 5xx into HAProxy's 503 and come back only after its probation — a
    // new container answering 502 while its app starts would be out for probationMs right
    // after. Taken out once another upstream of its host is in rotation.
    if (failing && m.http.state !== 'ejected' && !this.othersLive(m)) return;
    if (failing && m.http.state !== 'ejected') {
      const strikes = m.http.strikes + 1;
      const { probationMs, maxProbationMs } = this.policy.health;
      const out = Math.min(maxProbationMs, probationMs * 2 ** Math.min(strikes - 1, 30));
      m.http = { state: 'ejected', since: now, until: now + out, strikes };
      this.windows.delete(id);
      this.touch(m.host, `ejected ${short}: ${errors}/${requests} 5xx in ${windowMs / 1000}s, out for ${out / 1000}s`);
    } else if (!failing && m.http.state === 'ejected') {
      // It was seen answering well (its own access log): back on trial before its time.
      m.http = { ...m.http, state: 'probation', since: now, until: 0 };
      this.windows.delete(id);
      this.touch(m.host, `probation ${short}: ${requests - errors}/${requests} healthy`);
    } else if (!failing && m.http.state === 'probation') {
      m.http = { state: 'ok', since: m.http.since, until: 0, strikes: 0 };
      this.revision++;
    }
  }

  /** Whether another upstream of `m`'s host would stay in rotation (asked only while `m` fails). */
  private othersLive(m: Member): boolean {
    for (const o of this.byHost.get(m.host) ?? []) if (o !== m && outReason(o) === null) return true;
    return false;
  }

  /** Ejected upstreams whose time is up go back on probation. */
  tick(now: number): void {
    for (const m of this.members.values()) {
      if (m.http.state === 'ejected' && m.http.until <= now) {
        m.http = { ...m.http, state: 'probation', since: now, until: 0 };
        this.windows.delete(m.containerId);
        this.touch(m.host, `probation ${serverName(m.containerId)}: out for its time`);
      }
    }
  }

  /** When `tick()` or `expired()` next has something to do. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const m of this.members.values()) if (m.http.state === 'ejected' && (next === undefined || m.http.until < next)) next = m.http.until;
    const grace = this.policy.emptyHostGraceMs;
    if (grace !== undefined) for (const h of this.hosts.values()) if (h.emptySince !== null && (next === undefined || h.emptySince + grace < next)) next = h.emptySince + grace;
    return next;
  }

  /**
   * Hosts idle for `emptyHostGraceMs` by `now`: nothing published for them and none of
   * their containers running (one paused, unhealthy or ejected keeps its host). Notes
   * when a host is first seen idle; names it, it is not removed (see `forget()`).
   */
  expired(now: number): string[] {
    const grace = this.policy.emptyHostGraceMs;
    if (grace === undefined) return [];
    const running = new Set<string>();
    for (const m of this.members.values()) if (m.running) running.add(m.host);
    const out: string[] = [];
    for (const hs of this.hosts.values()) {
      const idle = hs.published.length === 0 && !running.has(hs.host);
      const since = idle ? (hs.emptySince ?? now) : null;
      if (since !== hs.emptySince) {
        hs.emptySince = since;
        this.revision++;
      }
      if (since !== null && now - since >= grace) out.push(hs.host);
    }
    return out;
  }

  /** Drops hosts and their (stopped) containers, once their tombstones are on the routes topic or read from it. */
  forget(hosts: readonly string[]): void {
    const gone = new Set(hosts);
    for (const host of gone) {
      this.hosts.delete(host);
      this.dirty.delete(host);
    }
    for (const m of [...this.members.values()]) if (gone.has(m.host)) this.removeMember(m);
    if (gone.size > 0) this.revision++;
  }

  /**
   * The routes topic's word on `host` (its latest set there, or `null`: none), taken as
   * what is published: the next version follows it, and the next flush says whether the
   * live set differs. Members are left alone (they come from lifecycle). For an instance
   * that just became the host's publisher (ownership.ts), or saw another one publish it.
   */
  adopt(host: string, set: RouteSet | null): void {
    const hs = set ? this.hostState(host, set.tenant, set.app) : this.hosts.get(host);
    if (!hs) return;
    hs.version = set?.version ?? 0;
    hs.published = set ? sortUpstreams(set.upstreams) : [];
    if (set) hs.emptySince = set.upstreams.length === 0 ? set.ts : null;
    this.dirty.add(host);
    this.revision++;
  }

  /** The last published version of `host` (0: none yet); undefined when the table does not know it. */
  version(host: string): number | undefined {
    return this.hosts.get(host)?.version;
  }

  /**
   * The sets that differ from their last published version, each with the next version;
   * only of hosts `mine` accepts (the others stay marked until they are this instance's).
   */
  flush(now: number, mine: (host: string) => boolean = () => true): RouteSet[] {
    const out: RouteSet[] = [];
    for (const host of [...this.dirty]) {
      if (!mine(host)) continue;
      const hs = this.hosts.get(host)!;
      const live = this.live(host);
      if (sameUpstreams(live, hs.published)) {
        this.dirty.delete(host);
        hs.reasons = [];
        continue;
      }
      const version = hs.version + 1;
      out.push({
        event_id: eventId('routes', host, version),
        tenant: hs.tenant,
        app: hs.app,
        node: this.node,
        container_id: '',
        ts: now,
        host,
        version,
        upstreams: live,
        reason: hs.reasons.join('; ').slice(0, 1000) || 'resync',
      });
    }
    return out;
  }

  /** The sets from `flush()` were acknowledged by Kafka. */
  published(sets: readonly RouteSet[]): void {
    for (const s of sets) {
      const hs = this.hosts.get(s.host);
      if (!hs || s.version <= hs.version) continue;
      hs.version = s.version;
      hs.published = sortUpstreams(s.upstreams);
      hs.emptySince = s.upstreams.length === 0 ? s.ts : null;
      hs.reasons = [];
      if (sameUpstreams(this.live(s.host), hs.published)) this.dirty.delete(s.host);
    }
    if (sets.length > 0) this.revision++;
  }

  /** Problems seen since the last call (refused containers, unroutable labels). */
  drainNotices(): Notice[] {
    return this.notices.splice(0);
  }

  /** The upstreams that should serve `host` now, sorted by container id. */
  live(host: string): Upstream[] {
    const out: Upstream[] = [];
    for (const m of this.byHost.get(host) ?? []) {
      if (outReason(m) === null) out.push({ container_id: m.containerId, address: m.address!, port: m.port! });
    }
    return sortUpstreams(out);
  }

  /** Last published set and version of every host. */
  current(): Array<{ host: string; tenant: string; app: string; version: number; upstreams: Upstream[] }> {
    return [...this.hosts.values()].map((h) => ({ host: h.host, tenant: h.tenant, app: h.app, version: h.version, upstreams: h.published }));
  }

  member(containerId: string): Readonly<Member> | undefined {
    return this.members.get(containerId);
  }

  private hostState(host: string, tenant: string, app: string): HostState {
    let hs = this.hosts.get(host);
    if (!hs) this.hosts.set(host, (hs = { host, tenant, app, version: 0, published: [], reasons: [], emptySince: null }));
    return hs;
  }

  private addMember(m: Member): void {
    this.members.set(m.containerId, m);
    let same = this.byHost.get(m.host);
    if (!same) this.byHost.set(m.host, (same = new Set()));
    same.add(m);
    this.byServer.set(serverName(m.containerId), m.containerId);
    if (!this.hosts.has(m.host)) this.hostState(m.host, m.tenant, m.app);
  }

  private removeMember(m: Member): void {
    this.members.delete(m.containerId);
    const same = this.byHost.get(m.host);
    same?.delete(m);
    if (same?.size === 0) this.byHost.delete(m.host);
    this.windows.delete(m.containerId);
    if (this.byServer.get(serverName(m.containerId)) === m.containerId) this.byServer.delete(serverName(m.containerId));
  }

  private updateEndpoint(m: Member, e: LifecycleEvent): void {
    const t = routeTarget(e, this.policy);
    if (t.host === null || t.host !== m.host) return;
    m.address = t.address;
    m.port = t.port;
    if (t.address === null) this.notices.push({ kind: 'no_port', containerId: m.containerId, host: m.host, problem: t.problem });
  }

  private touch(host: string, reason: string): void {
    this.dirty.add(host);
    this.revision++;
    const hs = this.hosts.get(host);
    if (hs && hs.reasons.length < MAX_REASONS) hs.reasons.push(reason);
  }
}

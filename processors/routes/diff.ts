/**
 * The route applier's decisions, as plain functions of what it wants (route sets) and
 * what HAProxy has (backends, map entries, servers, sessions). No I/O: applier.ts reads
 * HAProxy, calls these, and sends the commands they return, in the order they return them.
 *
 * 1. A host's upstreams are the servers of one backend slot, each named by
 *    `upstreamServerName` (the short container id).
 * 2. Bring in before taking out: round one adds and enables missing servers, moves
 *    servers whose address or port changed and puts back servers in maintenance; only
 *    after it succeeded does round two put the servers no longer wanted in maintenance
 *    (no new requests). A replacement is serving before the replaced one stops.
 * 3. A host not mapped yet gets its map entry in round one when no server leaves (the
 *    whole change in one round trip), else at the end of round two.
 * 4. A new host takes the first slot that is neither mapped, nor draining, nor found
 *    holding servers at the last whole reconcile (such a slot is empty: nothing needs
 *    reading); failing that the first unmapped one (its servers are read first). No
 *    unmapped slot: the host is not routed.
 * 5. A whole reconcile keeps the first map entry per slot; entries naming no slot, or a
 *    slot already taken, are deleted. The applier's restart marker is left alone.
 * 6. Orphans, retired once the routes topic was read to its end: the servers of mapped
 *    hosts no set asks for, and every server in a backend no host is mapped to.
 * 7. A retired server is deleted once its sessions ended, or when `drainTimeoutMs` has
 *    passed (its sessions are shut down first); gone from HAProxy, it is forgotten.
 * 8. A host whose set is empty gives its backend back once nothing drains in it (and
 *    HAProxy shows no server left in it, which the applier reads).
 */
import type { RouteSet, Upstream } from '../../schemas/events.js';
import { LogmeterError } from '../../lib/errors.js';
import { SLOT_PREFIX } from './haproxy-config.js';
import { inMaintenance, step, type ServerState, type Step } from './runtime-api.js';
import { serverName } from './table.js';

const SLOT_RE = new RegExp(`^${SLOT_PREFIX}(\\d+)$`);

/** Server name of an upstream: the short container id, or its address when there is no id. */
export function upstreamServerName(u: Upstream): string {
  const n = serverName(u.container_id);
  return /^[A-Za-z0-9_.-]+$/.test(n) ? n : `u-${u.address.replace(/[^A-Za-z0-9]/g, '_')}-${u.port}`;
}

export function isSlot(backend: string): boolean {
  return SLOT_RE.test(backend);
}

/** The backend slots among HAProxy's backends, in slot number order. */
export function slotBackends(backends: readonly string[]): string[] {
  return backends.filter(isSlot).sort((a, b) => Number(SLOT_RE.exec(a)![1]) - Number(SLOT_RE.exec(b)![1]));
}

/** A server of a backend, as the applier tracks it. */
export interface ServerRef {
  backend: string;
  s: ServerState;
}

export interface HostDiffInput {
  host: string;
  /** The backend the host has, or the slot just picked for it. */
  backend: string;
  upstreams: readonly Upstream[];
  /** The backend's servers as HAProxy has them. */
  current: readonly ServerState[];
  /** Whether HAProxy's map already sends `host` to `backend`. */
  mapped: boolean;
  /** HAProxy's name of the host map (needed only when the host gets its entry). */
  mapFile: string | undefined;
}

export interface HostDiff {
  /** Round one (rule 2): always sent, possibly empty. */
  bringIn: Step[];
  /** Servers that leave: put in maintenance by `takeOut`, deleted once drained (rule 7). */
  leaving: ServerState[];
  /** Round two, sent after round one succeeded: maintenance for leaving servers not in it yet, then the map entry (rule 3). */
  takeOut: Step[];
  /** Whether the host's map entry is among the steps. */
  maps: boolean;
  /** One entry per change, for the changes metric: `add`, `address`, `ready`, `maint`, `map`. */
  changes: string[];
}

/** The commands that make `backend` serve exactly `upstreams` (rules 1-3). */
export function diffHost(o: HostDiffInput): HostDiff {
  const want = new Map(o.upstreams.map((u) => [upstreamServerName(u), u] as const));
  const have = new Map(o.current.map((s) => [s.name, s] as const));
  const bringIn: Step[] = [];
  const changes: string[] = [];
  for (const [name, u] of want) {
    const s = have.get(name);
    if (!s) {
      bringIn.push(step.addServer(o.backend, name, u.address, u.port), step.enableServer(o.backend, name));
      changes.push('add');
      continue;
    }
    if (s.address !== u.address || s.port !== u.port) {
      bringIn.push(step.setServerAddress(o.backend, name, u.address, u.port));
      changes.push('address');
    }
    if (inMaintenance(s)) {
      bringIn.push(step.setServerState(o.backend, name, 'ready'));
      changes.push('ready');
    }
  }
  const leaving = o.current.filter((s) => !want.has(s.name));
  const takeOut = retireSteps(leaving.map((s) => ({ backend: o.backend, s })));
  for (let i = 0; i < takeOut.length; i++) changes.push('maint');
  const maps = !o.mapped && want.size > 0;
  if (maps) {
    if (!o.mapFile) throw new LogmeterError('haproxy_no_map', 'the host map is not known yet');
    const mapStep = step.addMapEntry(o.mapFile, o.host, o.backend);
    if (leaving.length === 0) bringIn.push(mapStep);
    else takeOut.push(mapStep);
    changes.push('map');
  }
  return { bringIn, leaving, takeOut, maps, changes };
}

/** Maintenance for the servers not in it yet (no new requests; in-flight ones go on). */
export function retireSteps(servers: readonly ServerRef[]): Step[] {
  return servers.filter(({ s }) => !inMaintenance(s)).map(({ backend, s }) => step.setServerState(backend, s.name, 'maint'));
}

/** The slot for a host not mapped yet (rule 4); `read`: it may hold servers, read them first. */
export function pickSlot(slots: readonly string[], mapped: Iterable<string>, draining: Iterable<string>, strays: ReadonlySet<string>): { backend: string; read: boolean } | undefined {
  const used = new Set(mapped);
  const busy = new Set(draining);
  const free = slots.find((s) => !used.has(s) && !busy.has(s) && !strays.has(s));
  if (free) return { backend: free, read: false };
  const any = slots.find((s) => !used.has(s));
  return any ? { backend: any, read: true } : undefined;
}

/** HAProxy's map entries sorted into the hosts kept and the keys to delete (rule 5). */
export function adoptMap(entries: ReadonlyMap<string, string>, slots: readonly string[], skip: string): { mapped: Map<string, string>; stale: string[] } {
  const mapped = new Map<string, string>();
  const taken = new Set<string>();
  const stale: string[] = [];
  for (const [host, backend] of entries) {
    if (host === skip) continue;
    if (slots.includes(backend) && !taken.has(backend)) {
      mapped.set(host, backend);
      taken.add(backend);
    } else stale.push(host);
  }
  return { mapped, stale };
}

/** Servers to retire after a whole reconcile (rule 6). */
export function orphans(mapped: ReadonlyMap<string, string>, desired: { has(host: string): boolean }, byBackend: ReadonlyMap<string, readonly ServerState[]>): ServerRef[] {
  const inUse = new Set(mapped.values());
  const out: ServerRef[] = [];
  for (const [host, backend] of mapped) if (!desired.has(host)) for (const s of byBackend.get(backend) ?? []) out.push({ backend, s });
  for (const [backend, servers] of byBackend) if (!inUse.has(backend)) for (const s of servers) out.push({ backend, s });
  return out;
}

/** What to do with a retired server (rule 7), from its current sessions (`undefined`: HAProxy no longer has it). */
export function reapAction(sessions: number | undefined, drainingMs: number, drainTimeoutMs: number): 'forget' | 'wait' | 'shutdown-delete' | 'delete' {
  if (sessions === undefined) return 'forget';
  if (sessions > 0 && drainingMs < drainTimeoutMs) return 'wait';
  return sessions > 0 ? 'shutdown-delete' : 'delete';
}

/** Whether a mapped host may give its backend back (rule 8), before reading the backend's servers. */
export function mayRelease(set: RouteSet | undefined, backend: string, drainingBackends: Iterable<string>): boolean {
  if (set && set.upstreams.length > 0) return false;
  for (const b of drainingBackends) if (b === backend) return false;
  return true;
}

/**
 * What the route table keeps per container (a member of its host's set) and the plain
 * helpers over upstreams, shared by table.ts and the processor. Pure.
 */
import type { LifecycleEvent, Upstream } from '../../schemas/events.js';

/** HTTP health of one upstream: in rotation, taken out until `until`, or back in on trial. */
export type HttpState = 'ok' | 'ejected' | 'probation';

export interface HttpHealth {
  state: HttpState;
  /** Requests before this time (ms) are ignored: they belong to the previous state. */
  since: number;
  /** When an ejected upstream goes back on probation (ms). */
  until: number;
  /** Ejections in a row without a healthy window in between (doubles the time out). */
  strikes: number;
}

export interface Member {
  containerId: string;
  host: string;
  tenant: string;
  app: string;
  address: string | null;
  port: number | null;
  running: boolean;
  paused: boolean;
  /** Docker health check said unhealthy (until it says healthy). */
  unhealthy: boolean;
  /** The scaler drained it before stopping it (until it starts again). */
  drained: boolean;
  http: HttpHealth;
  /** Time (`ts`, ms) of the newest lifecycle event applied to it; absent in snapshots written before it was kept. */
  seen?: number;
}

/** Why a known container is not in its host's set; `null` when it is. */
export function outReason(m: Member): 'stopped' | 'paused' | 'unhealthy' | 'drained' | 'ejected' | 'no_port' | null {
  if (!m.running) return 'stopped';
  if (m.paused) return 'paused';
  if (m.unhealthy) return 'unhealthy';
  if (m.drained) return 'drained';
  if (m.http.state === 'ejected') return 'ejected';
  if (m.address === null || m.port === null) return 'no_port';
  return null;
}

/** The HAProxy server name of an upstream: the short container id (what `docker ps` shows). */
export function serverName(containerId: string): string {
  return containerId.slice(0, 12);
}

export const HANDLED = new Set(['create', 'start', 'restart', 'unpause', 'pause', 'health_status', 'die', 'stop', 'kill', 'destroy', 'drain']);

/** Signals after which a container is going away (Docker's `kill` event also reports reload signals like HUP). */
const TERMINATING_SIGNALS = new Set(['2', '3', '6', '9', '15', 'INT', 'QUIT', 'ABRT', 'KILL', 'TERM']);

export function terminating(e: LifecycleEvent): boolean {
  const sig = e.attributes.signal;
  return sig === undefined || sig === '' || TERMINATING_SIGNALS.has(sig.toUpperCase().replace(/^SIG/, ''));
}

/** What the table keeps across restarts (health windows are not kept: they refill in seconds). */
export interface TableSnapshot {
  hosts: Array<{ host: string; tenant: string; app: string; version: number; published: Upstream[]; emptySince?: number | null }>;
  members: Member[];
}

/** Something the table refused or could not route, for the caller to log and count. */
export interface Notice {
  kind: 'bad_host' | 'foreign_tenant' | 'no_port';
  containerId: string;
  host: string | null;
  problem: string;
}

/** Sorted plain copies (decoded Avro records are class instances). */
export function sortUpstreams(us: readonly Upstream[]): Upstream[] {
  return us.map(({ container_id, address, port }) => ({ container_id, address, port })).sort((a, b) => (a.container_id < b.container_id ? -1 : a.container_id > b.container_id ? 1 : a.port - b.port));
}

export function sameUpstreams(a: readonly Upstream[], b: readonly Upstream[]): boolean {
  if (a.length !== b.length) return false;
  const sb = sortUpstreams(b);
  return sortUpstreams(a).every((u, i) => u.container_id === sb[i]!.container_id && u.address === sb[i]!.address && u.port === sb[i]!.port);
}

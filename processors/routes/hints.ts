/**
 * Start hints, the applier's book of them: plain state and decisions, no I/O (applier.ts
 * sends what `plan` returns).
 *
 * A hint is a container start seen in Docker's own event stream (start-hints.ts), checked
 * by the route table's rules (RouteTable.preview): its upstream may go into HAProxy before
 * the lifecycle event went through Kafka, the table and the routes topic. The topic stays
 * the source: a hint only ever adds one server, and the set that follows decides.
 *
 * 1. A hint is dropped (`decided`) when the applier holds a set of its host newer than the
 *    table's version the hint was made against, or one that lists its upstream already.
 * 2. Each host's waiting hints go in one round trip: `add server` and `enable server` per
 *    upstream, and for a host not mapped yet its map entry, in a slot known to be empty. A
 *    server of that name already applied, draining or hinted, or a slot that would have to
 *    be read first, is left to the set.
 * 3. A hinted server is settled by the next reconcile of its host (confirmed when the set
 *    lists it, taken out otherwise); if none came within `confirmMs`, it counts as expired
 *    and its host is reconciled against the topic (retired when the topic has no set for it).
 * 4. A hinted container that ends (die, stop, destroy in Docker's events) before a set
 *    settled it is retracted: its host is reconciled against the topic at once.
 */
import type { RouteSet, Upstream } from '../../schemas/events.js';
import { pickSlot, upstreamServerName } from './diff.js';
import { step, type Step } from './runtime-api.js';

/** A container start to bring into HAProxy ahead of its set (see RoutePreview, processor.ts). */
export interface RouteHint {
  host: string;
  upstream: Upstream;
  /** The host's last published version when the hint was made: a set with a higher one may already have decided. */
  version: number;
  /** Where the hint's time went, epoch ms (start-hints.ts): Docker's event time, when the routes lane saw it, when its inspect returned. */
  trace?: HintTrace;
}

export interface HintTrace {
  event: number;
  seen: number;
  inspected: number;
}

/** What the applier knows of HAProxy and the topic when it plans a host's hints. */
export interface HintContext {
  desired: ReadonlyMap<string, RouteSet>;
  mapped: ReadonlyMap<string, string>;
  /** Servers known applied per host (the last applied set's upstreams). */
  applied(host: string): readonly Upstream[];
  /** Servers draining, by `backend/server`. */
  draining: ReadonlyMap<string, { backend: string }>;
  slots: readonly string[];
  strays: ReadonlySet<string>;
  mapFile: string | undefined;
}

export interface HintPlan {
  host: string;
  backend: string;
  /** The host gets its map entry in this round trip. */
  maps: boolean;
  steps: Step[];
  taken: RouteHint[];
}

export type HintOutcome = 'applied' | 'confirmed' | 'expired' | 'retracted' | 'skipped';

/** Rule 1. */
export function decided(h: RouteHint, desired: ReadonlyMap<string, RouteSet>): boolean {
  const cur = desired.get(h.host);
  return cur !== undefined && (cur.version > h.version || cur.upstreams.some((u) => u.container_id === h.upstream.container_id));
}

export class HintBook {
  private readonly waiting = new Map<string, RouteHint[]>();
  private readonly hinted = new Map<string, { host: string; container: string; until: number }>();

  constructor(
    private readonly confirmMs: number,
    private readonly count: (outcome: HintOutcome, n?: number) => void,
  ) {}

  get pending(): boolean {
    return this.waiting.size > 0;
  }

  get unsettled(): number {
    return this.hinted.size;
  }

  add(h: RouteHint): void {
    const list = this.waiting.get(h.host) ?? [];
    list.push(h);
    this.waiting.set(h.host, list);
  }

  /** Rule 2: the round trip for each host with waiting hints (the waiting list is emptied). */
  plan(ctx: HintContext): HintPlan[] {
    const plans: HintPlan[] = [];
    for (const [host, list] of this.waiting) {
      const fresh = list.filter((h) => !decided(h, ctx.desired));
      if (fresh.length < list.length) this.count('skipped', list.length - fresh.length);
      if (fresh.length === 0) continue;
      let backend = ctx.mapped.get(host);
      const maps = backend === undefined;
      if (backend === undefined) {
        const taken = [...ctx.mapped.values(), ...plans.filter((p) => p.maps).map((p) => p.backend)];
        const slot = pickSlot(ctx.slots, taken, [...ctx.draining.values()].map((d) => d.backend), ctx.strays);
        if (!slot || slot.read || !ctx.mapFile) {
          this.count('skipped', fresh.length);
          continue;
        }
        backend = slot.backend;
      }
      const known = new Set(ctx.applied(host).map(upstreamServerName));
      const steps: Step[] = [];
      const taken: RouteHint[] = [];
      for (const h of fresh) {
        const name = upstreamServerName(h.upstream);
        const key = `${backend}/${name}`;
        if (known.has(name) || ctx.draining.has(key) || this.hinted.has(key)) {
          this.count('skipped');
          continue;
        }
        steps.push(step.addServer(backend, name, h.upstream.address, h.upstream.port), step.enableServer(backend, name));
        known.add(name);
        taken.push(h);
      }
      if (taken.length === 0) continue;
      if (maps) steps.push(step.addMapEntry(ctx.mapFile!, host, backend));
      plans.push({ host, backend, maps, steps, taken });
    }
    this.waiting.clear();
    return plans;
  }

  /** The plan's servers are being sent: noted first, so that a refused command is settled by the reconcile that follows. */
  note(p: HintPlan, now: number): void {
    for (const h of p.taken) this.hinted.set(`${p.backend}/${upstreamServerName(h.upstream)}`, { host: p.host, container: h.upstream.container_id, until: now + this.confirmMs });
  }

  /** Rule 3: a reconcile of `host` made HAProxy equal to `set` (undefined: retired). */
  settle(host: string, set: RouteSet | undefined): void {
    for (const [key, h] of this.hinted) {
      if (h.host !== host) continue;
      this.hinted.delete(key);
      const name = key.slice(key.indexOf('/') + 1);
      this.count(set?.upstreams.some((u) => upstreamServerName(u) === name) ? 'confirmed' : 'expired');
    }
  }

  /**
   * Rule 3: hosts with a hinted server past its deadline, to reconcile now; those servers are
   * settled here (expired), so that a reconcile that cannot run (no slot, no map) does not
   * bring them back every turn.
   */
  overdue(now: number): string[] {
    const hosts = new Set<string>();
    for (const [key, h] of this.hinted) {
      if (now < h.until) continue;
      hosts.add(h.host);
      this.hinted.delete(key);
      this.count('expired');
    }
    return [...hosts];
  }

  /**
   * Rule 4: the container of a hinted server ended (Docker's die, stop or destroy) before a
   * set settled it: its host, to reconcile now against the topic; the server is settled here.
   */
  retract(containerId: string): string[] {
    const hosts = new Set<string>();
    for (const [key, h] of this.hinted) {
      if (h.container !== containerId) continue;
      hosts.add(h.host);
      this.hinted.delete(key);
      this.count('retracted');
    }
    return [...hosts];
  }

  /** The earliest deadline of a hinted server (Infinity: none). */
  nextDeadline(): number {
    let next = Infinity;
    for (const h of this.hinted.values()) next = Math.min(next, h.until);
    return next;
  }
}

/**
 * What a tenant may send from this node, in two layers, both in lines/s and bytes/s:
 *
 * 1. Its own token buckets (`rateLimit.linesPerSecond` …, per-tenant overrides): the
 *    tenant's quota, whatever the others do.
 * 2. The node's budget (`rateLimit.node`): what this node's pipeline can carry (a measured
 *    figure, see BENCHMARKS.md "noisy neighbour"), shared max-min fairly among the tenants
 *    sending now (`maxMinShares`): a tenant using less than an equal share keeps what it
 *    uses (and may grow to the equal share at once), the rest is split evenly among the
 *    ones that want more. So tenants that each stay within their quota cannot together
 *    push more into the node than it carries, and a flood is cut to what the others leave.
 *
 * Lines over either are dropped, counted and reported to the tenant (drops.ts), each
 * with its reason (`rate_limited`, `node_budget`).
 */
import { nodeBudget, type CollectorConfig, type NodeBudgetConfig } from './config.js';

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private rate: number,
    private burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `n` tokens if there are that many; false (and nothing taken) otherwise. */
  take(n: number, now: number): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** New rate and burst from `now` on (tokens already earned are kept, up to the new burst). */
  reset(rate: number, burst: number, now: number): void {
    this.refill(now);
    this.rate = rate;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
  }
}

/**
 * Max-min fair shares of `capacity` among demands (water filling): demands below the
 * level are met in full, every other one gets the level, and the shares add up to
 * `capacity` (or to the demands, when they are less).
 */
export function maxMinShares(demands: ReadonlyMap<string, number>, capacity: number): Map<string, number> {
  const sorted = [...demands].sort((a, b) => a[1] - b[1]);
  const shares = new Map<string, number>();
  let left = capacity;
  for (let i = 0; i < sorted.length; i++) {
    const [key, demand] = sorted[i]!;
    const level = left / (sorted.length - i);
    const share = Math.min(demand, level);
    shares.set(key, share);
    left -= share;
  }
  return shares;
}

/** Why a line may not pass, for the drop report; undefined when it may. */
export interface Refusal {
  reason: 'rate_limited' | 'node_budget';
  detail: string;
}

interface Sending {
  lines: TokenBucket;
  bytes: TokenBucket;
  /** The byte bucket's burst: a line longer than it is charged the burst. */
  bytesBurst: number;
  /** Offered (past the tenant's own buckets) in the current window. */
  offeredLines: number;
  offeredBytes: number;
  /** Offered per second, as measured over the last window (Infinity before a first window). */
  demandLines: number;
  demandBytes: number;
  lastSeen: number;
}

export class NodeBudget {
  private readonly tenants = new Map<string, Sending>();
  private windowStart: number;

  /**
   * @param windowMs How often demands are measured and shares recomputed.
   * @param idleMs A tenant that sent nothing for this long no longer counts as sending.
   */
  constructor(
    private readonly cfg: { linesPerSecond: number; bytesPerSecond: number },
    private readonly burstSeconds: number,
    private readonly clock: () => number = Date.now,
    private readonly windowMs = 250,
    private readonly idleMs = 2000,
  ) {
    this.windowStart = clock();
  }

  /** Whether a line of `bytes` bytes from `tenant` fits the tenant's share of the node now. */
  allow(tenant: string, bytes: number, now = this.clock()): boolean {
    let t = this.tenants.get(tenant);
    if (!t) {
      t = { lines: new TokenBucket(1, 1, now), bytes: new TokenBucket(1, 1, now), bytesBurst: 1, offeredLines: 0, offeredBytes: 0, demandLines: Infinity, demandBytes: Infinity, lastSeen: now };
      this.tenants.set(tenant, t);
      // A newcomer gets its share at once, and the others' shrink with it.
      this.recompute(now, false);
      const l = this.linesShare(tenant);
      const b = this.bytesShare(tenant);
      t.lines = new TokenBucket(l, this.burst(l), now);
      t.bytesBurst = this.burst(b);
      t.bytes = new TokenBucket(b, t.bytesBurst, now);
    } else if (now - this.windowStart >= this.windowMs) this.recompute(now, true);
    t.lastSeen = now;
    t.offeredLines++;
    t.offeredBytes += bytes;
    if (!t.lines.take(1, now)) return false;
    return t.bytes.take(Math.min(bytes, t.bytesBurst), now);
  }

  /** The shares last computed, lines/s and bytes/s (for drop reports and tests). */
  share(tenant: string): { linesPerSecond: number; bytesPerSecond: number } {
    return { linesPerSecond: this.linesShare(tenant), bytesPerSecond: this.bytesShare(tenant) };
  }

  /** Tenants counted as sending now. */
  get sending(): number {
    return this.tenants.size;
  }

  private lineShares = new Map<string, number>();
  private byteShares = new Map<string, number>();

  private linesShare(tenant: string): number {
    return this.lineShares.get(tenant) ?? this.cfg.linesPerSecond;
  }

  private bytesShare(tenant: string): number {
    return this.byteShares.get(tenant) ?? this.cfg.bytesPerSecond;
  }

  private burst(rate: number): number {
    return Math.max(1, rate * this.burstSeconds);
  }

  /**
   * Measures each tenant's demand over the window that ends now (when `measure`) and
   * shares the node out again. A tenant's bucket runs at the larger of its max-min share
   * and an equal share: a quiet tenant may grow up to the equal share before the next
   * window notices, while a flood gets what the others do not use.
   */
  private recompute(now: number, measure: boolean): void {
    const seconds = Math.max(0.001, (now - this.windowStart) / 1000);
    for (const [name, t] of this.tenants) {
      if (now - t.lastSeen > this.idleMs) {
        this.tenants.delete(name);
        continue;
      }
      if (measure) {
        t.demandLines = t.offeredLines / seconds;
        t.demandBytes = t.offeredBytes / seconds;
        t.offeredLines = 0;
        t.offeredBytes = 0;
      }
    }
    if (measure) this.windowStart = now;
    const n = Math.max(1, this.tenants.size);
    const lines = maxMinShares(new Map([...this.tenants].map(([k, t]) => [k, t.demandLines])), this.cfg.linesPerSecond);
    const bytes = maxMinShares(new Map([...this.tenants].map(([k, t]) => [k, t.demandBytes])), this.cfg.bytesPerSecond);
    this.lineShares = new Map([...lines].map(([k, v]) => [k, Math.max(v, this.cfg.linesPerSecond / n)]));
    this.byteShares = new Map([...bytes].map(([k, v]) => [k, Math.max(v, this.cfg.bytesPerSecond / n)]));
    for (const [name, t] of this.tenants) {
      const l = this.linesShare(name);
      const b = this.bytesShare(name);
      t.lines.reset(l, this.burst(l), now);
      t.bytesBurst = this.burst(b);
      t.bytes.reset(b, t.bytesBurst, now);
    }
  }
}

/** A tenant's own buckets, and the byte burst a longer line is charged. */
interface OwnBuckets {
  lines: TokenBucket;
  bytes: TokenBucket;
  burstBytes: number;
}

export class TenantLimiter {
  private readonly buckets = new Map<string, OwnBuckets>();
  private readonly node: NodeBudget;
  private readonly nodeCfg: NodeBudgetConfig;

  constructor(
    private readonly cfg: CollectorConfig['rateLimit'],
    private readonly clock: () => number = Date.now,
  ) {
    this.nodeCfg = nodeBudget(cfg);
    this.node = new NodeBudget(this.nodeCfg, this.nodeCfg.burstSeconds, clock);
  }

  /** Whether a line of `bytes` bytes from `tenant` may pass now (its own quota and its share of the node). */
  allow(tenant: string, bytes: number): boolean {
    return this.check(tenant, bytes) === undefined;
  }

  /** Undefined when a line of `bytes` bytes from `tenant` may pass now; otherwise why not. Called per line: one clock read. */
  check(tenant: string, bytes: number): Refusal | undefined {
    const now = this.clock();
    if (!this.allowOwn(tenant, bytes, now)) {
      const lim = this.limits(tenant);
      return { reason: 'rate_limited', detail: `tenant ${tenant} over its limit of ${lim.linesPerSecond} lines/s and ${lim.bytesPerSecond} bytes/s` };
    }
    if (!this.node.allow(tenant, bytes, now)) {
      const s = this.node.share(tenant);
      const node = this.nodeCfg;
      return {
        reason: 'node_budget',
        detail: `tenant ${tenant} over its fair share of this node (${Math.round(s.linesPerSecond)} lines/s and ${Math.round(s.bytesPerSecond)} bytes/s of ${node.linesPerSecond} lines/s and ${node.bytesPerSecond} bytes/s, shared among ${this.node.sending} tenants sending)`,
      };
    }
    return undefined;
  }

  /** The tenant's share of the node as last computed (lines/s, bytes/s). */
  nodeShare(tenant: string): { linesPerSecond: number; bytesPerSecond: number } {
    return this.node.share(tenant);
  }

  private allowOwn(tenant: string, bytes: number, now: number): boolean {
    let b = this.buckets.get(tenant);
    if (!b) {
      const { linesPerSecond, bytesPerSecond } = this.limits(tenant);
      const burstBytes = bytesPerSecond * this.cfg.burstSeconds;
      b = {
        lines: new TokenBucket(linesPerSecond, Math.max(1, linesPerSecond * this.cfg.burstSeconds), now),
        bytes: new TokenBucket(bytesPerSecond, burstBytes, now),
        burstBytes,
      };
      this.buckets.set(tenant, b);
    }
    if (!b.lines.take(1, now)) return false;
    // A line longer than the whole byte burst would never pass: it is charged the burst.
    return b.bytes.take(Math.min(bytes, b.burstBytes), now);
  }

  /** Limits in force for a tenant (for drop reports). */
  limits(tenant: string): { linesPerSecond: number; bytesPerSecond: number } {
    const o = this.cfg.tenants[tenant];
    return { linesPerSecond: o?.linesPerSecond ?? this.cfg.linesPerSecond, bytesPerSecond: o?.bytesPerSecond ?? this.cfg.bytesPerSecond };
  }
}

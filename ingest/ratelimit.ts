/**
 * Per-tenant token buckets (lines/s and bytes/s). A flooding tenant runs out of tokens
 * and its further lines are dropped (counted and reported); other tenants have buckets
 * of their own and are never delayed by it.
 */
import type { CollectorConfig } from './config.js';

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `n` tokens if there are that many; false (and nothing taken) otherwise. */
  take(n: number, now: number): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

export class TenantLimiter {
  private readonly buckets = new Map<string, { lines: TokenBucket; bytes: TokenBucket }>();

  constructor(
    private readonly cfg: CollectorConfig['rateLimit'],
    private readonly clock: () => number = Date.now,
  ) {}

  /** Whether a line of `bytes` bytes from `tenant` may pass now. */
  allow(tenant: string, bytes: number): boolean {
    const now = this.clock();
    const { linesPerSecond, bytesPerSecond } = this.limits(tenant);
    const burstBytes = bytesPerSecond * this.cfg.burstSeconds;
    let b = this.buckets.get(tenant);
    if (!b) {
      b = {
        lines: new TokenBucket(linesPerSecond, Math.max(1, linesPerSecond * this.cfg.burstSeconds), now),
        bytes: new TokenBucket(bytesPerSecond, burstBytes, now),
      };
      this.buckets.set(tenant, b);
    }
    if (!b.lines.take(1, now)) return false;
    // A line longer than the whole byte burst would never pass: it is charged the burst.
    return b.bytes.take(Math.min(bytes, burstBytes), now);
  }

  /** Limits in force for a tenant (for drop reports). */
  limits(tenant: string): { linesPerSecond: number; bytesPerSecond: number } {
    const o = this.cfg.tenants[tenant];
    return { linesPerSecond: o?.linesPerSecond ?? this.cfg.linesPerSecond, bytesPerSecond: o?.bytesPerSecond ?? this.cfg.bytesPerSecond };
  }
}

/**
 * Sliding windows over one app's HTTP requests, keyed by event time (the request's
 * `ts`, never arrival time), evaluated at a time the caller passes in (its clock).
 *
 * Requests are kept per second of event time: counts and sums, and a DDSketch of
 * latencies (and of queue times) per second. A window is the last N whole seconds,
 * merged newest first, so the panic window (the newest few seconds) and the stable
 * window (all of them) come out of one pass; the window slides by dropping whole
 * seconds. Memory per app is bounded by the stable window's seconds × the sketch's
 * bins (a few hundred from 1 ms to a minute), whatever the request rate.
 *
 * Percentiles: DDSketch (@datadog/sketches-js) with a stated relative accuracy α
 * (default 1 %): the reported q-quantile is within α of the exact lower nearest-rank
 * value, `sorted[floor(q × (n − 1))]`, of the requests in the window.
 */
import { DDSketch } from '@datadog/sketches-js';
import type { HttpRequest, WindowStats } from '../../schemas/events.js';

/** The fields of an HttpRequest the windows read. */
export type WindowRequest = Pick<HttpRequest, 'ts' | 'status' | 'request_time_ms' | 'queue_time_ms' | 'backend_queue' | 'server_queue'>;

export interface WindowOptions {
  /** Stable window length in ms (whole seconds). */
  stableMs: number;
  /** Panic window length in ms (whole seconds, ≤ stableMs). */
  panicMs: number;
  /** DDSketch relative accuracy of the percentiles (0.01 = 1 %). */
  relativeAccuracy: number;
}

export type AddResult = 'added' | 'too_old' | 'future';

interface Second {
  requests: number;
  latencySumMs: number;
  errors5xx: number;
  errors504: number;
  latency: DDSketch;
  queueTime: DDSketch | undefined;
  queueLengthMax: number | null;
}

/**
 * The last second a window at `now` covers: the second holding the instant just before
 * `now`. At a whole second that is the second just completed, so a window evaluated at
 * a whole second is exactly its N complete seconds.
 */
export function lastSecond(now: number): number {
  return Math.floor((now - 1) / 1000);
}

/** Merges `src` into `dst` key by key. (The library's merge() sizes the target from `maxKey || minKey`, so a source whose highest key is 0, values near 1, can land outside the target's bins.) */
export function mergeSketch(dst: DDSketch, src: DDSketch): void {
  const { bins, offset } = src.store;
  for (let i = 0; i < bins.length; i++) {
    const n = bins[i]!;
    if (n > 0) dst.store.add(offset + i, n);
  }
  dst.zeroCount += src.zeroCount;
  dst.count += src.count;
  dst.sum += src.sum;
  if (src.min < dst.min) dst.min = src.min;
  if (src.max > dst.max) dst.max = src.max;
}

function quantile(s: DDSketch, q: number): number | null {
  return s.count === 0 ? null : s.getValueAtQuantile(q);
}

/** Sums of seconds merged so far, read out as WindowStats. */
class Accumulator {
  requests = 0;
  latencySumMs = 0;
  errors5xx = 0;
  errors504 = 0;
  queueLengthMax: number | null = null;
  readonly latency: DDSketch;
  queueTime: DDSketch | undefined;

  constructor(private readonly relativeAccuracy: number) {
    this.latency = new DDSketch({ relativeAccuracy });
  }

  add(s: Second): void {
    this.requests += s.requests;
    this.latencySumMs += s.latencySumMs;
    this.errors5xx += s.errors5xx;
    this.errors504 += s.errors504;
    if (s.queueLengthMax !== null) this.queueLengthMax = Math.max(this.queueLengthMax ?? 0, s.queueLengthMax);
    mergeSketch(this.latency, s.latency);
    if (s.queueTime) mergeSketch((this.queueTime ??= new DDSketch({ relativeAccuracy: this.relativeAccuracy })), s.queueTime);
  }

  stats(windowMs: number, coveredMs: number): WindowStats {
    const n = this.requests;
    return {
      window_ms: windowMs,
      requests: n,
      rate_rps: (n * 1000) / coveredMs,
      p50_ms: quantile(this.latency, 0.5),
      p95_ms: quantile(this.latency, 0.95),
      p99_ms: quantile(this.latency, 0.99),
      rate_5xx: n === 0 ? 0 : this.errors5xx / n,
      rate_504: n === 0 ? 0 : this.errors504 / n,
      queue_time_p95_ms: this.queueTime ? quantile(this.queueTime, 0.95) : null,
      queue_length_max: this.queueLengthMax,
      // Little's law: rate × mean latency = (n / covered) × (sum / n) = sum / covered.
      in_flight: this.latencySumMs / coveredMs,
    };
  }
}

/**
 * The requests of one app from one source, per second of event time.
 *
 * WindowStats fields: `rate_rps` requests per second over the time the window covers;
 * `rate_5xx` and `rate_504` are fractions of the window's requests (0–1);
 * `queue_time_p95_ms` and `queue_length_max` (server + backend queue ahead of a request)
 * are null when no request in the window carried them; `in_flight` is rate × mean
 * latency; percentiles are null for an empty window.
 */
export class RequestWindow {
  private readonly seconds = new Map<number, Second>();
  private readonly stableN: number;
  private readonly panicN: number;

  constructor(private readonly opts: WindowOptions) {
    this.stableN = Math.max(1, Math.round(opts.stableMs / 1000));
    this.panicN = Math.min(this.stableN, Math.max(1, Math.round(opts.panicMs / 1000)));
  }

  /**
   * Adds a request as seen at `now`. One older than the stable window cannot count any
   * more (`too_old`); one more than a stable window ahead of `now` is refused (`future`)
   * so memory stays bounded whatever the senders' clocks say. Both are the caller's to
   * count.
   */
  add(r: WindowRequest, now: number): AddResult {
    const last = lastSecond(now);
    const sec = Math.floor(r.ts / 1000);
    if (sec <= last - this.stableN) return 'too_old';
    if (sec > last + this.stableN) return 'future';
    let s = this.seconds.get(sec);
    if (!s) {
      s = { requests: 0, latencySumMs: 0, errors5xx: 0, errors504: 0, latency: new DDSketch({ relativeAccuracy: this.opts.relativeAccuracy }), queueTime: undefined, queueLengthMax: null };
      this.seconds.set(sec, s);
    }
    const latency = Math.max(0, r.request_time_ms);
    s.requests += 1;
    s.latencySumMs += latency;
    s.latency.accept(latency);
    if (r.status >= 500 && r.status <= 599) s.errors5xx += 1;
    if (r.status === 504) s.errors504 += 1;
    if (r.queue_time_ms !== null) (s.queueTime ??= new DDSketch({ relativeAccuracy: this.opts.relativeAccuracy })).accept(Math.max(0, r.queue_time_ms));
    if (r.backend_queue !== null || r.server_queue !== null) {
      const q = Math.max(0, r.backend_queue ?? 0) + Math.max(0, r.server_queue ?? 0);
      s.queueLengthMax = Math.max(s.queueLengthMax ?? 0, q);
    }
    return 'added';
  }

  /** The panic and stable windows ending at `now`. */
  stats(now: number): { stable: WindowStats; panic: WindowStats } {
    const last = lastSecond(now);
    const acc = new Accumulator(this.opts.relativeAccuracy);
    // Time each window covers: from the start of its oldest second to now.
    const covered = (n: number) => now - (last - n + 1) * 1000;
    let panic: WindowStats | undefined;
    for (let k = 0; k < this.stableN; k++) {
      const s = this.seconds.get(last - k);
      if (s) acc.add(s);
      if (k === this.panicN - 1) panic = acc.stats(this.panicN * 1000, covered(this.panicN));
    }
    return { stable: acc.stats(this.stableN * 1000, covered(this.stableN)), panic: panic! };
  }

  /** Drops the seconds no window at `now` covers; returns how many seconds are left. */
  prune(now: number): number {
    const oldest = lastSecond(now) - this.stableN + 1;
    for (const sec of this.seconds.keys()) if (sec < oldest) this.seconds.delete(sec);
    return this.seconds.size;
  }

  /** Seconds held (memory is this × a sketch). */
  get size(): number {
    return this.seconds.size;
  }
}

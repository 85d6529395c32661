/**
 * Counter deltas. Docker's counters are cumulative since the container (re)started;
 * one that went down means the container restarted, so the new value is all traffic
 * since then: count from zero, never negative.
 */
export function counterDelta(prev: number | undefined, cur: number): number {
  if (prev === undefined || cur < prev) return cur;
  return cur - prev;
}

/**
 * V8 heap settings for a long-running process whose memory must stay bounded at full
 * load (the collector: issue 19, RSS ≤ 2 × LOGMETER_MAX_BUFFERED_BYTES + its idle
 * baseline). At full speed the collector allocates fast and keeps little: what pushes
 * its RSS over is garbage V8 lets accumulate between major GCs, not live data
 * (BENCHMARKS.md, "Memory at full speed"). V8 grows the old generation's limit by a
 * factor it picks between 1.1 and 4 from its GC and mutator speeds; at a fast mutator
 * that is near 4. `--heap-growing-percent=P` fixes the factor at 1 + P/100, so a major
 * GC comes once the heap has grown P % past what the last one left live.
 *
 * Applied with `v8.setFlagsFromString` when the command starts: V8 reads this flag each
 * time it computes a new limit, so it takes effect after start-up (test/heap-limits.test.ts
 * checks that it does). Settings V8 reads only when it creates the heap
 * (`--max-semi-space-size`, `--max-old-space-size`) would need the node command line;
 * they are not offered here (the semi-space one did not lower the peak, measured; a hard
 * old-space limit turns a burst into a crash).
 */
import v8 from 'node:v8';

export interface HeapSettings {
  /** The old generation grows this many percent past its live size before the next major GC; 0 = V8's own heuristics. */
  heapGrowingPercent: number;
}

/** The V8 flags for `s` (none when every setting is off). */
export function heapFlags(s: HeapSettings): string[] {
  if (!Number.isInteger(s.heapGrowingPercent) || s.heapGrowingPercent < 0) throw new Error(`heapGrowingPercent: ${s.heapGrowingPercent} is not a whole number ≥ 0`);
  return s.heapGrowingPercent > 0 ? [`--heap-growing-percent=${s.heapGrowingPercent}`] : [];
}

/** Sets the flags in this process's V8 (process-wide: every isolate of the process). Returns them. */
export function applyHeapSettings(s: HeapSettings): string[] {
  const flags = heapFlags(s);
  for (const f of flags) v8.setFlagsFromString(f);
  return flags;
}

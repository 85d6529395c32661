/**
 * Child process of test/heap-limits.test.ts: applies the heap settings given as argv[2]
 * (heapGrowingPercent) the way `logmeter collector` does, after start-up, then retains
 * ~1.5 million small objects and prints how many major (mark-compact) GCs that took, as JSON.
 */
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { applyHeapSettings } from '../../lib/heap-limits.js';

const flags = applyHeapSettings({ heapGrowingPercent: Number(process.argv[2]) });
let major = 0;
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
});
obs.observe({ entryTypes: ['gc'] });
const keep: Array<{ a: number; b: string; c: number[] }> = [];
for (let i = 0; i < 1_500_000; i++) keep.push({ a: i, b: `x${i}`, c: [i] });
// GC entries are delivered asynchronously.
await new Promise((r) => setTimeout(r, 100));
obs.disconnect();
process.stdout.write(`${JSON.stringify({ flags, major, retained: keep.length })}\n`);

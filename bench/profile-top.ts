/**
 * The hot spots of a V8 CPU profile (`node --cpu-prof`): self time per function and
 * per file, and total (inclusive) time of logmeter's own functions.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/collector.ts --rounds 1 --only collector
 *   node --import tsx bench/profile-top.ts /tmp/prof/CPU.*.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, fmt, out, table } from './lib/common.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const topIdx = args.indexOf('--top');
const top = topIdx >= 0 ? Number(args[topIdx + 1]) : 25;
const files = args.filter((a, i) => !a.startsWith('--') && (topIdx < 0 || i !== topIdx + 1));
if (files.length === 0) {
  out('usage: node --import tsx bench/profile-top.ts FILE.cpuprofile… [--top 25]');
  process.exit(1);
}

const where = (url: string) => {
  const p = url.startsWith('file://') ? url.slice(7) : url;
  if (p.startsWith(ROOT)) return path.relative(ROOT, p);
  return p || '(native)';
};

for (const file of files) {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  let total = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  });
  const key = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
  const selfBy = new Map<string, number>();
  const fileBy = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const inclusiveFile = new Map<string, number>();
  const area = (c: ProfileNode) => (c.callFrame.url ? where(c.callFrame.url).replace(/node_modules\/(@[^/]+\/[^/]+|[^/]+)\/.*/, 'node_modules/$1') : `(${c.callFrame.functionName})`);
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    selfBy.set(key(n), (selfBy.get(key(n)) ?? 0) + us);
    const fkey = area(n);
    fileBy.set(fkey, (fileBy.get(fkey) ?? 0) + us);
    // Inclusive time of our own code: every distinct frame on the stack gets the sample.
    const seen = new Set<string>();
    const seenFile = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const c = byId.get(cur)!;
      const a = area(c);
      if (!seenFile.has(a)) {
        seenFile.add(a);
        inclusiveFile.set(a, (inclusiveFile.get(a) ?? 0) + us);
      }
      const w = where(c.callFrame.url);
      if (!c.callFrame.url || w.startsWith('/') || w.startsWith('node:') || w.startsWith('node_modules')) continue;
      const k = key(c);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const pct = (us: number) => `${((us / total) * 100).toFixed(1)} %`;
  const rows = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => [k, fmt(us / 1000), pct(us)]);
  out(`## ${path.basename(file)}: ${fmt(total / 1000)} ms sampled`);
  out('self time by function');
  table(['function', 'ms', 'share'], rows(selfBy));
  out('self time by file / package');
  table(['file', 'ms', 'share'], rows(fileBy));
  out('inclusive time by file / package (a sample counts once per file on its stack)');
  table(['file', 'ms', 'share'], rows(inclusiveFile));
  out('inclusive time of logmeter functions');
  table(['function', 'ms', 'share'], rows(inclusive));
}

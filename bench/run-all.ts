/**
 * Runs every benchmark in sequence, each in its own process with its default settings,
 * and prints everything (stdout: the tables; stderr: progress).
 *
 *   node --import tsx bench/run-all.ts [--only collector,sink,codec,kafka-clients,end-to-end,noisy-neighbor,memory,routes,autoscale,scale-out] [--quick] [--out FILE]
 *
 * `--quick` is a smoke run (one round, fewer lines, shorter windows; minutes, not a
 * measurement to publish). `--out FILE` also writes the tables to FILE.
 * One benchmark failing does not stop the others; the exit code says whether all passed.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, flags, out } from './lib/common.js';

const BENCHES = ['codec', 'collector', 'sink', 'kafka-clients', 'end-to-end', 'noisy-neighbor', 'memory', 'routes', 'autoscale', 'scale-out'] as const;
type Bench = (typeof BENCHES)[number];
const QUICK: Record<Bench, string[]> = {
  codec: ['--rounds', '1', '--seconds', '0.2'],
  collector: ['--rounds', '1', '--lines', '50000'],
  sink: ['--rounds', '1', '--rows', '100000'],
  'kafka-clients': ['--rounds', '1', '--lines', '50000', '--probes', '50'],
  'end-to-end': ['--rounds', '1', '--seconds', '10'],
  'noisy-neighbor': ['--seconds', '5', '--collector', 'same'],
  memory: ['--counts', '0,10,50', '--steady', '10', '--no-lean'],
  routes: ['--rounds', '1', '--starts', '20', '--warmup', '1'],
  autoscale: ['--steps', '2'],
  'scale-out': ['--messages', '100000'],
};

const f = flags(['only', 'out'], ['quick']);
if (f.bool('help')) {
  out('node --import tsx bench/run-all.ts [--only collector,sink,codec,kafka-clients,end-to-end,noisy-neighbor,memory,routes,autoscale,scale-out] [--quick] [--out FILE]');
  process.exit(0);
}
const only = f.str('only', '');
const quick = f.bool('quick');
const outFile = f.str('out', '');
const selected = only ? only.split(',').map((s) => s.trim()) : [...BENCHES];
for (const s of selected) if (!(BENCHES as readonly string[]).includes(s)) throw new Error(`unknown benchmark "${s}" (known: ${BENCHES.join(', ')})`);
if (outFile) writeFileSync(outFile, '');

function run(name: Bench): Promise<number | null> {
  const args = ['--import', 'tsx', path.join(ROOT, 'bench', `${name}.ts`), ...(quick ? QUICK[name] : [])];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d: Buffer) => {
      process.stdout.write(d);
      if (outFile) appendFileSync(outFile, d);
    });
    child.on('exit', (code) => resolve(code));
  });
}

const failed: string[] = [];
for (const name of selected as Bench[]) {
  const t0 = Date.now();
  process.stderr.write(`\n=== bench/${name}.ts${quick ? ` ${QUICK[name].join(' ')}` : ''}\n`);
  const code = await run(name);
  process.stderr.write(`=== bench/${name}.ts: exit ${code} after ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  if (code !== 0) failed.push(name);
  out();
}
if (failed.length > 0) {
  process.stderr.write(`failed: ${failed.join(', ')}\n`);
  process.exit(1);
}

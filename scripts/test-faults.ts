/**
 * `npm run test:faults`: the fault suite. Starts the private Kafka, Redis and dockerd
 * (test/faults/services.ts), runs every `test/faults/*.fault.ts` with node's test
 * runner one file at a time against them, stops them, and prints every fault's figures.
 * Extra arguments: fault files to run instead of all, and test-runner flags.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../lib/logger.js';
import { FAULTS_DIR, startServices, stopServices } from '../test/faults/services.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const args = process.argv.slice(2);
const explicit = args.filter((a) => a.endsWith('.ts'));
const flags = args.filter((a) => !a.endsWith('.ts'));
const dir = path.join(root, 'test', 'faults');
const files = explicit.length > 0 ? explicit : readdirSync(dir).filter((f) => f.endsWith('.fault.ts')).sort().map((f) => path.join('test', 'faults', f));

const logger = createLogger('info', 2);
const t0 = Date.now();
const resultsFile = path.join(FAULTS_DIR, 'results', 'results.jsonl');
const tapFile = path.join(FAULTS_DIR, 'results', 'tap.txt');
rmSync(resultsFile, { force: true });
rmSync(tapFile, { force: true });
mkdirSync(path.dirname(tapFile), { recursive: true });
logger.info({ dir: FAULTS_DIR }, 'starting the private Kafka, Redis and dockerd');
const svc = await startServices(logger);
logger.info({ ...svc.addresses, seconds: Math.round((Date.now() - t0) / 1000) }, 'private services up');

let code = 1;
const child = spawn(
  process.execPath,
  // spec for people; TAP to a file, for the closing "N passed, N failed" line.
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=900000', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tapFile}`, ...flags, ...files],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1', LOGMETER_FAULTS_SERVICES: JSON.stringify(svc.addresses) },
  },
);
const forward = (sig: NodeJS.Signals) => child.kill(sig);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);
try {
  code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
} finally {
  await stopServices(svc);
}

if (existsSync(resultsFile)) {
  const rows = readFileSync(resultsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { fault: string; durationMs: number; counts: { tenants: Array<{ sent: number; lost: number; duplicated: number }>; storedFinal: number; usage: Array<{ requests: { expected: number; observed: number }; log_bytes: { expected: number; observed: number }; container_seconds: { expected: number; observed: number } }> } });
  const out = ['', 'fault summary (sent / stored FINAL / lost / duplicated / usage equal to expected):'];
  for (const r of rows) {
    const sum = (f: (t: { sent: number; lost: number; duplicated: number }) => number) => r.counts.tenants.reduce((s, t) => s + f(t), 0);
    const usageOk = r.counts.usage.every((u) => u.requests.observed === u.requests.expected && u.log_bytes.observed === u.log_bytes.expected && u.container_seconds.observed === u.container_seconds.expected);
    out.push(`  ${r.fault.padEnd(40)} sent ${sum((t) => t.sent)}  stored ${r.counts.storedFinal}  lost ${sum((t) => t.lost)}  duplicated ${sum((t) => t.duplicated)}  usage ${usageOk ? 'equal' : 'DIFFERENT'}  (${Math.round(r.durationMs / 1000)} s)`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}
process.stdout.write(`fault suite: ${Math.round((Date.now() - t0) / 1000)} s in all\n`);
const tap = existsSync(tapFile) ? readFileSync(tapFile, 'utf8') : '';
const tally = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
process.stdout.write(`faults: ${tally('pass')} passed, ${tally('fail') + tally('cancelled')} failed\n`);
process.exit(code);

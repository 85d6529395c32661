/**
 * What every benchmark script shares: flags, the machine header, medians and
 * percentiles, the result table, a namespace on the real services (topic prefix,
 * ClickHouse database, data directory, container labels) and CPU time of the
 * processes the figures depend on (dockerd, the Kafka broker).
 *
 * Benchmarks print to stdout (tables) and keep pino at `warn` on stderr, so the
 * tables stay readable and the logging costs no more than in production at `warn`.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../../app/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Writes a line to stdout (the benchmarks' output; no console in this codebase). */
export function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Flags: `--name value` for `names`, bare `--name` for `booleans` (and `--help`); read with the helpers below. Unknown flags are refused. */
export function flags(names: readonly string[], booleans: readonly string[] = []): { str(name: string, dflt: string): string; num(name: string, dflt: number): number; list(name: string, dflt: number[]): number[]; bool(name: string): boolean } {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const n of names) options[n] = { type: 'string' };
  for (const n of booleans) options[n] = { type: 'boolean' };
  const { values } = parseArgs({ options, allowPositionals: false, strict: true });
  const v = values as Record<string, string | boolean | undefined>;
  const str = (name: string, dflt: string) => {
    const x = v[name];
    return typeof x === 'string' ? x : dflt;
  };
  const num = (name: string, dflt: number) => {
    const x = Number(str(name, String(dflt)));
    if (!Number.isFinite(x)) throw new Error(`--${name}: not a number`);
    return x;
  };
  const list = (name: string, dflt: number[]) =>
    str(name, dflt.join(','))
      .split(',')
      .filter((s) => s.trim() !== '')
      .map((s) => {
        const x = Number(s);
        if (!Number.isFinite(x)) throw new Error(`--${name}: "${s}" is not a number`);
        return x;
      });
  return { str, num, list, bool: (name) => v[name] === true };
}

export interface Machine {
  date: string;
  commit: string;
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  kafka: string;
  docker: string;
}

export function machine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  const pom = readFileSync(path.join(ROOT, 'stack/kafka/pom.xml'), 'utf8');
  const kafka = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom)?.[1] ?? 'unknown';
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
  let docker = 'unknown';
  try {
    docker = execFileSync('docker', ['version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    // No docker CLI: the header says unknown.
  }
  return {
    date: new Date().toISOString(),
    commit: dirty ? `${commit} (with uncommitted changes)` : commit,
    cores: os.cpus().length,
    cpu: model,
    memoryGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    kafka,
    docker,
  };
}

/** The header every benchmark prints first. */
export function header(title: string, settings: Record<string, unknown>): void {
  const m = machine();
  out(`# ${title}`);
  out(`date ${m.date} · commit ${m.commit}`);
  out(`machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB.toFixed(1)} GiB RAM · node ${m.node} · Kafka ${m.kafka} (KRaft, 1 node) · dockerd ${m.docker}`);
  out(`load average at start (1/5/15 min): ${os.loadavg().map((x) => x.toFixed(2)).join(' / ')} — the machine is shared; other work shows up here`);
  out(`settings: ${Object.entries(settings).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`).join(' ')}`);
  out();
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile of a sorted array. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** 1234567 → "1,234,567"; fractional values keep `digits`. */
export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return '–';
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${((a / b) * 100).toFixed(0)} %`;
}

/** Prints an aligned table; numbers right-aligned, text left-aligned. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const isNum = (s: string) => /^[-+<>≤≥~]?[\d,.]+( ?[%a-zA-Z/]*)?( \([\d,.]+\))?$/.test(s) || s === '–';
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (isNum(c) && cells !== headers ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  out(line(headers));
  out(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) out(line(r));
  out();
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Wall-clock ms with sub-ms resolution (Docker's event times are wall clock too), comparable across processes. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

/** Polls `fn` every `everyMs` until it returns true; throws after `timeoutMs`. */
export async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

export interface BenchNamespace {
  id: string;
  /** Kafka topic prefix (so topics and consumer groups) of this run. */
  topicPrefix: string;
  /** ClickHouse database of this run. */
  database: string;
  /** Container label prefix of this run (`<id>.tenant` …). */
  labelPrefix: string;
  dataDir: string;
  config: Config;
  logger: Logger;
  cleanup(): void;
}

/** A fresh namespace on the real services, as the tests use (never the production `logmeter.` names). */
export function benchNamespace(name: string, extraEnv: Record<string, string> = {}): BenchNamespace {
  const id = `b${name}${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `logmeter-bench-${name}-`));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LOGMETER_TOPIC_PREFIX: `${id}.`,
    LOGMETER_DATA_DIR: dataDir,
    CLICKHOUSE_DATABASE: id,
    LOGMETER_HTTP: '127.0.0.1:0',
    LOGMETER_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    ...extraEnv,
  };
  const config = loadConfig({ env });
  // Also when the run dies early (a service down at start): no data directory left behind.
  process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
  return {
    id,
    topicPrefix: `${id}.`,
    database: id,
    labelPrefix: `${id}.`,
    dataDir,
    config,
    logger: createLogger(config.log.level, 2),
    cleanup: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) used so far by a process, from /proc/<pid>/stat. */
export function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/**
 * Resident set size of a process in bytes (VmRSS), its peak (VmHWM), and the anonymous
 * part (RssAnon: heap, buffers; what the process itself allocated) apart from the
 * file-backed part (RssFile: mapped code, e.g. chDB's 540 MB libchdb.so once loaded).
 */
export function procRss(pid: number | 'self' = 'self'): { rss: number; peak: number; anon: number; file: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
  } catch {
    return { rss: NaN, peak: NaN, anon: NaN, file: NaN };
  }
}

/** Pids of the services whose CPU time the figures depend on: dockerd and the Kafka broker (java … kafka.Kafka). */
export function servicePids(): { dockerd?: number; kafka?: number } {
  const found: { dockerd?: number; kafka?: number } = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (comm === 'dockerd') found.dockerd = Number(entry);
      else if (comm === 'java' && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('kafka.Kafka')) found.kafka = Number(entry);
    } catch {
      // The process went away while we looked.
    }
  }
  return found;
}

/** CPU seconds of this process, dockerd and Kafka over a window: `const w = cpuWindow(); …; w.end()`. */
export function cpuWindow(): { end(): { self: number; dockerd: number; kafka: number } } {
  const pids = servicePids();
  const self0 = process.cpuUsage();
  const d0 = pids.dockerd ? procCpuSeconds(pids.dockerd) : NaN;
  const k0 = pids.kafka ? procCpuSeconds(pids.kafka) : NaN;
  return {
    end: () => {
      const s = process.cpuUsage(self0);
      return {
        self: (s.user + s.system) / 1e6,
        dockerd: pids.dockerd ? procCpuSeconds(pids.dockerd) - d0 : NaN,
        kafka: pids.kafka ? procCpuSeconds(pids.kafka) - k0 : NaN,
      };
    },
  };
}

/** Samples this process's RSS every `everyMs` until stopped; returns the peak in bytes. */
export function rssSampler(everyMs = 50): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

/** Removes containers on SIGINT/SIGTERM too, so an interrupted benchmark leaves none behind. */
export function onInterrupt(cleanup: () => Promise<void>): void {
  let once = false;
  const handler = (signal: NodeJS.Signals) => {
    if (once) return;
    once = true;
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

/** A temporary directory removed when the process exits, however it exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A TCP port free on 127.0.0.1 right now (for a published port or a listener chosen beforehand). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A metric of a logmeter process's `/metrics` on 127.0.0.1:port, summed over its label sets (NaN when absent). */
export async function metricSum(port: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  const values = [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm'))].map((m) => Number(m[1]));
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0);
}

export const MB = 1e6;
export const MiB = 2 ** 20;

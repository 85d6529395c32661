/**
 * What every fault scenario shares: its own namespace on the private services, the real
 * pipeline processes as children (`logmeter collector`, `logmeter processor …`), a
 * numbered-line workload in two tenants' containers, and the counts read back the way
 * a tenant reads them (the log center API, which reads FINAL).
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before } from 'node:test';
import { stringify as toYaml } from 'yaml';
import type { Docker } from '../../lib/docker.js';
import { BASE_IMAGE } from '../../lib/docker.js';
import { loadConfig, type Config } from '../../app/config.js';
import { createLogger } from '../../lib/logger.js';
import { runIntervals, splitByHour } from '../../processors/usage/meters.js';
import { busFor, schemaSource } from '../../lib/runtime.js';
import { AvroCodec } from '../../schemas/codec.js';
import { cliBackground } from '../helpers/env.js';
import { readAll } from '../helpers/kafka.js';
import { FAULTS_DIR, freePort, removeAllContainers, servicesFromEnv, startServices, stopServices, type Services } from './services.js';

export const TENANTS = ['acme', 'globex'] as const;
export const PROCESSOR_NAMES = ['log-sink', 'access-log', 'traffic', 'usage', 'billing'];

/** The private services: the runner's, or started here when a file runs alone. */
export function useServices(): () => Services {
  let svc: Services | undefined = servicesFromEnv();
  const own = svc === undefined;
  before(async () => {
    if (own) svc = await startServices();
  });
  after(async () => {
    if (own && svc) await stopServices(svc);
  });
  return () => {
    if (!svc) throw new Error('services not started');
    return svc;
  };
}

export interface Scenario {
  name: string;
  id: string;
  dir: string;
  labelPrefix: string;
  tokens: Record<string, string>;
  adminToken: string;
  collectorHttp: string;
  processorsHttp: string;
  env: NodeJS.ProcessEnv;
  config: Config;
  svc: Services;
  startedAt: number;
}

/** A namespace of its own: topic prefix, ClickHouse database, data directory, label prefix, HTTP ports. */
export async function scenario(name: string, svc: Services, configFile: Record<string, unknown> = {}): Promise<Scenario> {
  const id = `f${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const dir = path.join(FAULTS_DIR, 'runs', `${name}-${id}`);
  mkdirSync(dir, { recursive: true });
  const tokens = Object.fromEntries(TENANTS.map((t) => [t, `${t}-token-${id}-0123456789`]));
  const adminToken = `admin-token-${id}-0123456789`;
  const collectorHttp = `127.0.0.1:${await freePort()}`;
  const processorsHttp = `127.0.0.1:${await freePort()}`;
  const cfgPath = path.join(dir, 'config.yaml');
  writeFileSync(cfgPath, toYaml({ processors: { usageIntervalSeconds: 5, sinkBatchMs: 200, reportPeriods: ['monthly'] }, ...configFile }));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: svc.kafka,
    REDIS_URL: svc.redis,
    DOCKER_HOST: svc.dockerHost,
    LOGMETER_CONFIG: cfgPath,
    LOGMETER_DATA_DIR: path.join(dir, 'data'),
    LOGMETER_TOPIC_PREFIX: `${id}.`,
    CLICKHOUSE_DATABASE: id,
    LOGMETER_LABEL_PREFIX: `${id}.`,
    LOGMETER_API_TOKENS: Object.entries(tokens).map(([t, k]) => `${t}:${k}`).join(','),
    LOGMETER_ADMIN_TOKEN: adminToken,
    LOGMETER_LOG_LEVEL: 'info',
    LOGMETER_STATS_INTERVAL: '5',
    LOGMETER_NODE: 'fault-node',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
  };
  return { name, id, dir, labelPrefix: `${id}.`, tokens, adminToken, collectorHttp, processorsHttp, env, config: loadConfig({ env }), svc, startedAt: Date.now() };
}

/** A `logmeter` child process that can be killed and started again. */
export class Child {
  private proc: ReturnType<typeof cliBackground> | undefined;
  /** Everything every run of it printed. */
  private previous = '';
  starts = 0;

  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly ready: RegExp,
  ) {}

  async start(timeoutMs = 120_000): Promise<number> {
    const t0 = Date.now();
    this.proc = cliBackground(this.args, this.env);
    this.starts++;
    await this.proc.waitFor(this.ready, timeoutMs);
    return Date.now() - t0;
  }

  output(): string {
    return this.previous + (this.proc?.output() ?? '');
  }

  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  /** Sends `signal` and returns at once (SIGSTOP / SIGCONT: freeze and thaw). */
  signal(signal: NodeJS.Signals): void {
    this.proc?.child.kill(signal);
  }

  /** Sends `signal` and waits for the exit; returns the exit code (null after a signal). */
  async kill(signal: NodeJS.Signals): Promise<number | null> {
    const p = this.proc;
    if (!p) return null;
    p.child.kill(signal);
    const code = await p.exited;
    this.previous += p.output();
    this.proc = undefined;
    return code;
  }

  async stop(): Promise<number | null> {
    return this.kill('SIGTERM');
  }
}

export function collectorChild(sc: Scenario): Child {
  return new Child('collector', ['collector'], { ...sc.env, LOGMETER_HTTP: sc.collectorHttp }, /"msg":"collector up"/);
}

/** The processors that share the embedded store, in one process (what `logmeter up` runs, without its collector, load balancer and scaler). */
export function processorsChild(sc: Scenario): Child {
  return new Child('processors', ['processor', ...PROCESSOR_NAMES], { ...sc.env, LOGMETER_HTTP: sc.processorsHttp }, /"msg":"processor up"/);
}

/** A scenario with its processors and collector running, and the list of what was done. */
export interface Pipeline {
  sc: Scenario;
  processors: Child;
  collector: Child;
  events: string[];
  /** Adds an event, stamped with the seconds since the scenario started. */
  note: (what: string) => void;
}

/** A scenario, its processors process and its collector started (in that order). */
export async function startPipeline(name: string, svc: Services): Promise<Pipeline> {
  const sc = await scenario(name, svc);
  const processors = processorsChild(sc);
  const collector = collectorChild(sc);
  const events: string[] = [];
  const at = stamp(sc);
  const note = (what: string) => void events.push(at(what));
  try {
    note(`processors up in ${await processors.start()} ms`);
    note(`collector up in ${await collector.start()} ms`);
  } catch (err) {
    await cleanupScenario(sc, collector, processors);
    throw err;
  }
  return { sc, processors, collector, events, note };
}

/** The usual workload: 2 tenants × 2 containers × 3000 lines over `seconds`. */
export async function standardWorkload(p: Pipeline, seconds = 45): Promise<Workload> {
  const wl = await startWorkload(p.sc, { containersPerTenant: 2, lines: 3000, seconds });
  p.note('workload started: 2 tenants × 2 containers × 3000 lines');
  return wl;
}

/** Waits for the workload to end and the counts to settle, then prints and records them. */
export async function finish(p: Pipeline, wl: Workload, fault: string, extra?: () => Record<string, unknown>): Promise<Counts & { settleMs: number }> {
  await wl.done();
  p.note('workload finished');
  const counts = await settle(p.sc, wl, httpReaders(p.sc));
  p.note(`counts settled after ${Math.round(counts.settleMs / 1000)} s`);
  report({ fault, counts, events: p.events, durationMs: Date.now() - p.sc.startedAt, ...(extra ? { extra: extra() } : {}) });
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Workload

export interface WorkloadSpec {
  containersPerTenant: number;
  /** Lines per container. */
  lines: number;
  /** Roughly how long each container prints. */
  seconds: number;
}

export interface WorkloadContainer {
  id: string;
  /** `<tenant>-<n>`, printed in every line. */
  short: string;
  tenant: string;
  lines: number;
  bytes: number;
}

export interface Workload {
  containers: WorkloadContainer[];
  /** Resolves when every container exited 0. */
  done(): Promise<void>;
  expected(tenant: string): { lines: number; bytes: number };
}

/** One numbered line: an access-log line in the `json` format, so each line is also one request. */
export function workloadLine(tenant: string, short: string, seq: number): string {
  return `{"tenant":"${tenant}","container":"${short}","seq":${seq},"method":"GET","path":"/w/${short}/${seq}","status":200,"bytes":512,"request_time":0.004}`;
}

function script(tenant: string, short: string, spec: WorkloadSpec): string {
  const batch = 50;
  const pause = Math.max(0.01, spec.seconds / Math.ceil(spec.lines / batch)).toFixed(3);
  const fmt = workloadLine(tenant, short, 0).replace('"seq":0', '"seq":%d').replace(`/${short}/0"`, `/${short}/%d"`);
  return `i=1; while [ $i -le ${spec.lines} ]; do printf '${fmt}\\n' $i $i; [ $((i % ${batch})) -eq 0 ] && sleep ${pause}; i=$((i+1)); done; true`;
}

/** Starts `containersPerTenant` containers per tenant, numbered from `first` (a second batch continues the numbering). */
export async function startWorkload(sc: Scenario, spec: WorkloadSpec, first = 1): Promise<Workload> {
  const docker = sc.svc.docker;
  const containers: WorkloadContainer[] = [];
  const created: Docker.Container[] = [];
  for (const tenant of TENANTS) {
    for (let k = first; k < first + spec.containersPerTenant; k++) {
      const short = `${tenant}-${k}`;
      const c = await docker.createContainer({
        Image: BASE_IMAGE,
        name: `${sc.id}-${short}`,
        Cmd: ['sh', '-c', script(tenant, short, spec)],
        Labels: { [`${sc.labelPrefix}tenant`]: tenant, [`${sc.labelPrefix}app`]: 'web', [`${sc.labelPrefix}log-format`]: 'json', [`${sc.labelPrefix}size`]: 'small' },
        HostConfig: { Init: true, NetworkMode: 'none' },
      });
      let bytes = 0;
      for (let i = 1; i <= spec.lines; i++) bytes += Buffer.byteLength(workloadLine(tenant, short, i));
      containers.push({ id: c.id, short, tenant, lines: spec.lines, bytes });
      created.push(c);
    }
  }
  for (const c of created) await c.start();
  return {
    containers,
    async done() {
      for (const c of containers) {
        // Docker may be restarting under the scenario: ask again until it answers.
        for (;;) {
          try {
            const r = (await docker.getContainer(c.id).wait()) as { StatusCode: number };
            if (r.StatusCode !== 0) throw new Error(`workload container ${c.short} exited ${r.StatusCode}`);
            break;
          } catch (err) {
            if (String(err).includes('exited')) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      }
    },
    expected: (tenant) => {
      const mine = containers.filter((c) => c.tenant === tenant);
      return { lines: mine.reduce((s, c) => s + c.lines, 0), bytes: mine.reduce((s, c) => s + c.bytes, 0) };
    },
  };
}

/** Several batches as one workload. */
export function combine(...parts: Workload[]): Workload {
  return {
    containers: parts.flatMap((p) => p.containers),
    async done() {
      for (const p of parts) await p.done();
    },
    expected: (tenant) => {
      const all = parts.map((p) => p.expected(tenant));
      return { lines: all.reduce((s, e) => s + e.lines, 0), bytes: all.reduce((s, e) => s + e.bytes, 0) };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reading back, as a tenant does

export type Query = (tenant: string, urlPath: string) => Promise<unknown>;
export type Sql = (query: string) => Promise<Array<Record<string, unknown>>>;

/** The API and SQL of the processors process, over HTTP. */
export function httpReaders(sc: Scenario): { api: Query; sql: Sql } {
  const base = `http://${sc.processorsHttp}`;
  return {
    api: async (tenant, urlPath) => {
      const res = await fetch(`${base}${urlPath}`, { headers: { authorization: `Bearer ${sc.tokens[tenant]}` }, signal: AbortSignal.timeout(60_000) });
      if (!res.ok) throw new Error(`GET ${urlPath}: HTTP ${res.status} ${await res.text()}`);
      return res.json();
    },
    sql: async (query) => {
      const res = await fetch(`${base}/api/v1/admin/sql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${sc.adminToken}` },
        body: JSON.stringify({ query }),
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`sql: HTTP ${res.status} ${text}`);
      return text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}

export interface TenantCounts {
  tenant: string;
  sent: number;
  /** Lines the tenant's API returned (all pages). */
  returned: number;
  /** Distinct (container, seq) among them. */
  distinct: number;
  lost: number;
  duplicated: number;
  /** Lines that are not the workload's (must be 0). */
  foreign: number;
}

export interface UsageCounts {
  tenant: string;
  requests: { expected: number; observed: number };
  log_bytes: { expected: number; observed: number };
  container_seconds: { expected: number; observed: number; docker: number };
  /** Containers whose start and die each appear exactly once in the lifecycle. */
  lifecycleComplete: number;
}

export interface Counts {
  tenants: TenantCounts[];
  /** Rows of the workload's lines in ClickHouse, FINAL (what queries see) and without FINAL (repeats not yet merged away). */
  storedFinal: number;
  storedRaw: number;
  /** Messages on the logs topic: more than sent when lines were read again after a restart (same ids, removed downstream). */
  kafkaLogMessages: number;
  usage: UsageCounts[];
}

/**
 * Messages on one of the scenario's topics: every message read back from the start to its
 * end through the bus, so the lines of a packed record (lib/bus/pack.ts: many log lines in
 * one Kafka record) count one by one, as the collector sent them.
 */
export async function topicMessages(sc: Scenario, topic: 'logs' | 'lifecycle'): Promise<number> {
  const codec = await AvroCodec.create(schemaSource(sc.config));
  const bus = busFor(sc.config, codec, createLogger('error', 2));
  let n = 0;
  try {
    await readAll(bus, topic, (b) => {
      n += b.length;
      return Promise.resolve();
    });
    return n;
  } finally {
    await bus.close();
  }
}

interface LogPage {
  items: Array<{ line: string; tenant: string; container_name: string }>;
  next_cursor: string | null;
}

/** Every stdout line of the tenant since the scenario started, page by page, oldest first. */
export async function tenantLines(api: Query, tenant: string, since: number): Promise<LogPage['items']> {
  const out: LogPage['items'] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ from: new Date(since - 60_000).toISOString(), stream: 'stdout', order: 'asc', limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const page = (await api(tenant, `/api/v1/logs?${q.toString()}`)) as LogPage;
    out.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

async function usageSum(api: Query, tenant: string, meter: string, since: number): Promise<number> {
  const q = new URLSearchParams({ from: new Date(Math.floor(since / 3_600_000) * 3_600_000 - 3_600_000).toISOString(), period: 'hour', meter });
  const body = (await api(tenant, `/api/v1/usage?${q.toString()}`)) as { items: Array<{ quantity: number; tenant: string }> };
  return round3(body.items.reduce((s, i) => s + Number(i.quantity), 0));
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export async function count(sc: Scenario, wl: Workload, readers: { api: Query; sql: Sql }): Promise<Counts> {
  const { api, sql } = readers;
  const tenants: TenantCounts[] = [];
  for (const tenant of TENANTS) {
    const items = await tenantLines(api, tenant, sc.startedAt);
    const seen = new Set<string>();
    let foreign = 0;
    const valid = new Map(wl.containers.filter((c) => c.tenant === tenant).map((c) => [c.short, c.lines]));
    for (const it of items) {
      let key: string | undefined;
      try {
        const l = JSON.parse(it.line) as { tenant?: string; container?: string; seq?: number };
        const max = valid.get(l.container ?? '');
        if (l.tenant === tenant && it.tenant === tenant && max !== undefined && Number.isInteger(l.seq) && l.seq! >= 1 && l.seq! <= max) key = `${l.container}#${l.seq}`;
      } catch {
        /* not a workload line */
      }
      if (key === undefined) foreign++;
      else seen.add(key);
    }
    const sent = wl.expected(tenant).lines;
    tenants.push({ tenant, sent, returned: items.length, distinct: seen.size, lost: sent - seen.size, duplicated: items.length - foreign - seen.size, foreign });
  }
  const ids = wl.containers.map((c) => `'${c.id}'`).join(',');
  const [fin] = await sql(`SELECT count() AS n FROM ${sc.id}.logs FINAL WHERE container_id IN (${ids})`);
  const [raw] = await sql(`SELECT count() AS n FROM ${sc.id}.logs WHERE container_id IN (${ids})`);
  const life = (await sql(
    `SELECT container_id, tenant, action, toUnixTimestamp64Milli(ts) AS ts FROM ${sc.id}.lifecycle FINAL WHERE actor = 'docker' AND action IN ('start', 'die') AND container_id IN (${ids}) ORDER BY container_id, ts`,
  )) as Array<{ container_id: string; tenant: string; action: string; ts: number }>;
  const usage: UsageCounts[] = [];
  for (const tenant of TENANTS) {
    const mine = wl.containers.filter((c) => c.tenant === tenant);
    // Expected container-seconds: the product's own interval and hour split over the lifecycle stored, so the
    // check is on the usage path (sink → usage → API); the lifecycle itself is checked complete (one start, one die).
    const hours = new Map<number, number>();
    let complete = 0;
    let dockerSeconds = 0;
    for (const c of mine) {
      const ev = life.filter((e) => e.container_id === c.id).map((e) => ({ action: e.action, ts: Number(e.ts) }));
      if (ev.filter((e) => e.action === 'start').length === 1 && ev.filter((e) => e.action === 'die').length === 1) complete++;
      for (const [a, b] of runIntervals(ev, undefined, Date.now())) for (const [h, s] of splitByHour(a, b, 0, Number.MAX_SAFE_INTEGER)) hours.set(h, (hours.get(h) ?? 0) + s);
      const info = await sc.svc.docker.getContainer(c.id).inspect();
      dockerSeconds += (Date.parse(info.State.FinishedAt) - Date.parse(info.State.StartedAt)) / 1000;
    }
    const expectedSeconds = round3([...hours.values()].reduce((s, v) => s + round3(v), 0));
    const exp = wl.expected(tenant);
    usage.push({
      tenant,
      requests: { expected: exp.lines, observed: await usageSum(api, tenant, 'requests', sc.startedAt) },
      log_bytes: { expected: exp.bytes, observed: await usageSum(api, tenant, 'log_bytes', sc.startedAt) },
      container_seconds: { expected: expectedSeconds, observed: await usageSum(api, tenant, 'container_seconds', sc.startedAt), docker: round3(dockerSeconds) },
      lifecycleComplete: complete,
    });
  }
  return { tenants, storedFinal: Number(fin?.n ?? 0), storedRaw: Number(raw?.n ?? 0), kafkaLogMessages: await topicMessages(sc, 'logs'), usage };
}

export function allGood(c: Counts, wl: Workload): boolean {
  return (
    c.tenants.every((t) => t.lost === 0 && t.duplicated === 0 && t.foreign === 0) &&
    c.usage.every((u) => u.requests.observed === u.requests.expected && u.log_bytes.observed === u.log_bytes.expected && u.container_seconds.observed === u.container_seconds.expected && u.lifecycleComplete === wl.containers.length / TENANTS.length)
  );
}

/** Counts until everything is in (or `timeoutMs` passed); the last counts either way. */
export async function settle(sc: Scenario, wl: Workload, readers: { api: Query; sql: Sql }, timeoutMs = 240_000): Promise<Counts & { settleMs: number }> {
  const t0 = Date.now();
  let last: Counts | undefined;
  let lastErr: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      last = await count(sc, wl, readers);
      if (allGood(last, wl)) break;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 3000));
  }
  if (!last) throw new Error(`no counts within ${timeoutMs / 1000} s: ${String(lastErr)}`);
  return { ...last, settleMs: Date.now() - t0 };
}

// ---------------------------------------------------------------------------------------------
// Results

export interface FaultResult {
  fault: string;
  counts: Counts & { settleMs: number };
  /** What was done, with timings (printed, never asserted). */
  events: string[];
  extra?: Record<string, unknown>;
  durationMs: number;
}

const results = createLogger('info', 2);

/** Prints the fault's figures and keeps them under <faults dir>/results for the runner's summary. */
export function report(r: FaultResult): void {
  const lines = [`fault: ${r.fault} (${Math.round(r.durationMs / 1000)} s)`, ...r.events.map((e) => `  · ${e}`)];
  for (const t of r.counts.tenants) lines.push(`  ${t.tenant}: sent ${t.sent}, returned by the API ${t.returned}, lost ${t.lost}, duplicated ${t.duplicated}, foreign ${t.foreign}`);
  const sent = r.counts.tenants.reduce((n, t) => n + t.sent, 0);
  lines.push(`  on Kafka: ${r.counts.kafkaLogMessages} log messages (${r.counts.kafkaLogMessages - sent} lines read again after a restart, same event ids)`);
  lines.push(`  stored rows: ${r.counts.storedFinal} with FINAL (what queries see), ${r.counts.storedRaw} without FINAL at the end`);
  for (const u of r.counts.usage) {
    lines.push(
      `  usage ${u.tenant}: requests ${u.requests.observed}/${u.requests.expected}, log_bytes ${u.log_bytes.observed}/${u.log_bytes.expected}, container_seconds ${u.container_seconds.observed}/${u.container_seconds.expected} (Docker's own: ${u.container_seconds.docker}), lifecycle complete ${u.lifecycleComplete}`,
    );
  }
  if (r.extra) lines.push(`  ${JSON.stringify(r.extra)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  mkdirSync(path.join(FAULTS_DIR, 'results'), { recursive: true });
  appendFileSync(path.join(FAULTS_DIR, 'results', 'results.jsonl'), `${JSON.stringify({ ...r, at: new Date().toISOString() })}\n`);
  results.debug({ fault: r.fault }, 'result recorded');
}

/** A clock for the event list: seconds since the scenario started. */
export function stamp(sc: Scenario): (what: string) => string {
  return (what) => `${((Date.now() - sc.startedAt) / 1000).toFixed(1)} s: ${what}`;
}

export async function cleanupScenario(sc: Scenario, ...children: Child[]): Promise<void> {
  for (const c of children) {
    await c.stop().catch(() => undefined);
    // Every run's output, kept for reading after the fact (<faults dir>/runs/<scenario>/<child>.log).
    writeFileSync(path.join(sc.dir, `${c.name}.log`), c.output());
  }
  await removeAllContainers(sc.svc.docker);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Messages of a scenario's topic that a processor group had not committed yet (end minus
 * committed, summed over partitions): taken right after a kill, what its restart has to
 * read again from the last committed offset.
 */
export async function uncommitted(sc: Scenario, processor: string, topic: 'logs' | 'lifecycle' | 'http' | 'usage'): Promise<number> {
  const codec = await AvroCodec.create(schemaSource(sc.config));
  const bus = busFor(sc.config, codec, createLogger('error', 2));
  try {
    const t = bus.topic(topic);
    const end = await bus.endOffsets(t);
    const committed = await bus.committedOffsets(`${sc.config.kafka.topicPrefix}${processor}.${topic}`, t);
    let n = 0;
    for (const e of end) {
      const c = committed.find((x) => x.partition === e.partition);
      const at = c && Number(c.offset) >= 0 ? Number(c.offset) : Number(e.low);
      n += Number(e.high) - at;
    }
    return n;
  } finally {
    await bus.close();
  }
}

/** One value of a process's `/metrics` (the sum over its label sets; 0 when absent). */
export async function metricValue(http: string, name: string): Promise<number> {
  const res = await fetch(`http://${http}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** How many times `re` occurs in `text`. */
export function occurrences(text: string, re: RegExp): number {
  return (text.match(new RegExp(re.source, `${re.flags.replace('g', '')}g`)) ?? []).length;
}

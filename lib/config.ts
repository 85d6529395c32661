/**
 * The ground floor of logmeter's configuration: the settings every process shares
 * (node, data directory, Kafka, Redis, ClickHouse, Docker, HTTP, start-up) and the
 * loader. The whole configuration — these plus each component's section — is
 * assembled in app/config.ts, above the components; lib/ knows none of them.
 *
 * Sources, later ones winning: built-in defaults, an optional config file (YAML or
 * JSON, `--config` or `LOGMETER_CONFIG`), then environment variables. The merged
 * object is validated once with zod; every problem is reported together, named by
 * the environment variable or config-file key it came from. Unknown config-file keys
 * are refused (`.strict()` everywhere), like Vector's `deny_unknown_fields`.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';

/** `host:port`, port 0-65535. */
export const hostPort = z.string().superRefine((s, ctx) => {
  const m = /^([^\s:/]+):(\d{1,5})$/.exec(s);
  if (!m) ctx.addIssue({ code: 'custom', message: `expected host:port, got "${s}"` });
  else if (Number(m[2]) > 65535) ctx.addIssue({ code: 'custom', message: `port must be 0-65535, got ${m[2]}` });
});

/** A URL with one of the given protocols (`'http:'`). */
export const url = (protocols: string[]) =>
  z.string().refine((s) => {
    try {
      return protocols.includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, `expected a URL (${protocols.join(' or ')})`);

/**
 * The producer's gzip level by default (`kafka.compressionLevel`): zlib's fastest. Against
 * zlib's own default (6, what kafkajs used), median of the same-run pairs: 0.70 × the CPU per
 * line of the collector's Kafka path, 0.86 × of the whole collector, for 9 % more bytes on the
 * broker with the collector's events (BENCHMARKS.md, "Collector: V8 GC settings and the gzip
 * level").
 */
export const GZIP_LEVEL_DEFAULT = 1;

/** The settings every logmeter process shares, as zod shapes (app/config.ts adds the components' sections). */
export const baseConfigShape = {
    /** Name of this node in every event (default: the machine's hostname). */
    node: z.string().min(1).default(hostname()),
    /** Where embedded ClickHouse, checkpoints and reports live. Default `./data`. */
    dataDir: z.string().min(1).default('./data'),
    log: z
      .object({
        /** pino level. Default `info`. */
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .default({ level: 'info' }),
    kafka: z
      .object({
        /** Bootstrap brokers. Default `127.0.0.1:9092`. */
        brokers: z.array(hostPort).min(1).default(['127.0.0.1:9092']),
        /** Prefix of every topic name. Default `logmeter.`. */
        topicPrefix: z
          .string()
          .regex(/^[A-Za-z0-9._-]*$/, 'only letters, digits, ".", "_" and "-"')
          .default('logmeter.'),
        /** kafkajs client id. Default `logmeter`. */
        clientId: z.string().min(1).default('logmeter'),
        /** Partitions of the per-container topics (logs, lifecycle, stats). Default 6. */
        partitions: z.number().int().min(1).max(1024).default(6),
        /** Replication factor of created topics. Default 1 (single-node stack). */
        replicationFactor: z.number().int().min(1).default(1),
        /**
         * Producer compression: `snappy` (default; lib/bus/kafkajs-snappy.ts), `gzip` (at
         * `compressionLevel`: 0.64 × snappy's bytes on the broker for 1.17 × the collector's CPU
         * per line) or `none` (Kafka on the same host or LAN). Consumers read every one of them
         * whatever this says. Env `LOGMETER_KAFKA_COMPRESSION`. Decision:
         * docs/decisions/2026-12-05-kafka-compression-snappy.md.
         */
        compression: z.enum(['gzip', 'snappy', 'none']).default('snappy'),
        /**
         * zlib level of the producer's gzip (`compression: gzip`), 1 (fastest) to 9 (smallest). Any level is read by
         * every consumer alike (gzip is gzip). Env `LOGMETER_KAFKA_COMPRESSION_LEVEL`. Default
         * GZIP_LEVEL_DEFAULT (1).
         */
        compressionLevel: z.number().int().min(1).max(9).default(GZIP_LEVEL_DEFAULT),
        /**
         * Consumer watchdog: a consumer with messages waiting (lag > 0) and no batch handed to
         * its handler for this many seconds is a stall: logged as an error naming group, topic,
         * partitions and lag, counted (`logmeter_bus_consumer_stalls_total`), `/healthz`
         * degraded, consumer rebuilt. Env `LOGMETER_CONSUMER_STALL_SECONDS`. Default 30.
         */
        consumerStallSeconds: z.number().positive().default(30),
        /**
         * Consumer group session timeout: a member that stops heartbeating (a process killed
         * with SIGKILL, a host gone) is expelled after this many seconds, and its partitions
         * wait that long for another member. At least 6 (the broker's
         * `group.min.session.timeout.ms`). Env `LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS`. Default 30.
         */
        sessionTimeoutSeconds: z.number().int().min(6).max(300).default(30),
      })
      .strict()
      .default({ brokers: ['127.0.0.1:9092'], topicPrefix: 'logmeter.', clientId: 'logmeter', partitions: 6, replicationFactor: 1, compression: 'snappy', compressionLevel: GZIP_LEVEL_DEFAULT, consumerStallSeconds: 30, sessionTimeoutSeconds: 30 }),
    redis: z
      .object({
        /** bullmq's Redis. Default `redis://127.0.0.1:6379`. */
        url: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
      })
      .strict()
      .default({ url: 'redis://127.0.0.1:6379' }),
    clickhouse: z
      .object({
        /** ClickHouse server URL; unset = embedded chDB in `<dataDir>/clickhouse`. */
        url: url(['http:', 'https:']).optional(),
        /** Database holding logmeter's tables. Default `logmeter`. */
        database: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier')
          .default('logmeter'),
        username: z.string().optional(),
        password: z.string().optional(),
      })
      .strict()
      .default({ database: 'logmeter' }),
    docker: z
      .object({
        /** Docker Engine endpoint: `unix:///path`, a socket path or `tcp://host:port`. Default the local socket. */
        host: z
          .string()
          .refine((s) => s.startsWith('/') || /^(unix|tcp|http|https):\/\//.test(s), 'expected unix:///path, /path or tcp://host:port')
          .default('unix:///var/run/docker.sock'),
      })
      .strict()
      .default({ host: 'unix:///var/run/docker.sock' }),
    schemaRegistry: z
      .object({
        /** Confluent-compatible schema registry; unset = the checked-in manifest. */
        url: url(['http:', 'https:']).optional(),
      })
      .strict()
      .default({}),
    http: z
      .object({
        /** Where `/metrics`, `/healthz` and `/api/v1` are served. Default `127.0.0.1:8780`. */
        listen: hostPort.default('127.0.0.1:8780'),
      })
      .strict()
      .default({ listen: '127.0.0.1:8780' }),
    startup: z
      .object({
        /**
         * Seconds a process waits at start for the services it needs (Kafka, a ClickHouse
         * server, Redis, Docker, a schema registry) to answer, retrying with backoff and a
         * log line per attempt, before it exits with a message naming each one. Default 60.
         */
        timeoutSeconds: z.number().positive().max(3600).default(60),
      })
      .strict()
      .default({ timeoutSeconds: 60 }),
};

/** What lib/ reads of the configuration; the whole `Config` (app/config.ts) is one. */
export type BaseConfig = z.infer<z.ZodObject<typeof baseConfigShape>>;

/** An environment variable and the config path it sets. */
export interface EnvVar {
  name: string;
  path: string[];
  parse?: (raw: string) => unknown;
  /** Never shown in a problem message. */
  secret?: boolean;
}

/** The variables of the shared settings; app/config.ts adds the components'. */
export const BASE_ENV_VARS: readonly EnvVar[] = [
  { name: 'KAFKA_BROKERS', path: ['kafka', 'brokers'], parse: csv },
  { name: 'REDIS_URL', path: ['redis', 'url'] },
  { name: 'CLICKHOUSE_URL', path: ['clickhouse', 'url'] },
  { name: 'CLICKHOUSE_DATABASE', path: ['clickhouse', 'database'] },
  { name: 'CLICKHOUSE_USER', path: ['clickhouse', 'username'] },
  { name: 'CLICKHOUSE_PASSWORD', path: ['clickhouse', 'password'], secret: true },
  { name: 'DOCKER_HOST', path: ['docker', 'host'] },
  { name: 'LOGMETER_DATA_DIR', path: ['dataDir'] },
  { name: 'SCHEMA_REGISTRY_URL', path: ['schemaRegistry', 'url'] },
  { name: 'LOGMETER_HTTP', path: ['http', 'listen'] },
  { name: 'LOGMETER_TOPIC_PREFIX', path: ['kafka', 'topicPrefix'] },
  { name: 'LOGMETER_KAFKA_COMPRESSION', path: ['kafka', 'compression'] },
  { name: 'LOGMETER_KAFKA_COMPRESSION_LEVEL', path: ['kafka', 'compressionLevel'], parse: decimal },
  { name: 'LOGMETER_CONSUMER_STALL_SECONDS', path: ['kafka', 'consumerStallSeconds'], parse: decimal },
  { name: 'LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS', path: ['kafka', 'sessionTimeoutSeconds'], parse: decimal },
  { name: 'LOGMETER_NODE', path: ['node'] },
  { name: 'LOGMETER_LOG_LEVEL', path: ['log', 'level'] },
  { name: 'LOGMETER_STARTUP_TIMEOUT', path: ['startup', 'timeoutSeconds'], parse: decimal },
];

/** `LOGMETER_*` variables that are not config keys (read by the CLI, `stack`, the fault suite's runner). */
const OTHER_VARS = new Set(['LOGMETER_CONFIG', 'LOGMETER_STATE_DIR', 'LOGMETER_FAULTS_DIR', 'LOGMETER_FAULTS_SERVICES']);

/**
 * A decimal number (`12`, `0.5`, `-3`); anything else (`10MiB`, `0x10`, `1e3`, ` `) is
 * kept as text, so validation reports it as "expected number" with the value, instead
 * of `Number()` reading hex or exponents or turning it into NaN.
 */
export function decimal(raw: string): unknown {
  return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
}

/**
 * `LOGMETER_*` variables that no config key reads — most likely a typo, which would
 * otherwise leave the default in force without a word — each with the closest known
 * name. Not refused (scripts and other tools may share the prefix), but logged at start.
 */
export function unknownVariables(env: NodeJS.ProcessEnv, vars: readonly EnvVar[]): Array<{ name: string; didYouMean: string | undefined }> {
  const known = [...new Set(vars.map((v) => v.name).filter((n) => n.startsWith('LOGMETER_')))];
  return Object.keys(env)
    .filter((n) => n.startsWith('LOGMETER_') && !OTHER_VARS.has(n) && !known.includes(n))
    .sort()
    .map((name) => {
      let best: { n: string; d: number } | undefined;
      for (const k of known) {
        const d = editDistance(name, k);
        if (!best || d < best.d) best = { n: k, d };
      }
      return { name, didYouMean: best && best.d <= 3 ? best.n : undefined };
    });
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

export function csv(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** `tenant:token,tenant:token` → { tenant: token }; a malformed pair is kept so validation names it. */
export function tenantTokens(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of csv(raw)) {
    const i = pair.indexOf(':');
    out[i > 0 ? pair.slice(0, i) : pair] = i > 0 ? pair.slice(i + 1) : '';
  }
  return out;
}

// Defined in errors.ts, so that component configs (which app/config.ts assembles) throw it without importing the loader.
export { ConfigError };

export interface LoadOptions {
  /** Environment to read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Config file; default `env.LOGMETER_CONFIG`. */
  file?: string | undefined;
}

/**
 * Loads, merges and validates a configuration against `schema`, with `vars` naming the
 * environment variables; throws ConfigError listing every problem.
 */
export function loadConfigWith<S extends z.ZodType>(schema: S, vars: readonly EnvVar[], opts: LoadOptions = {}): z.infer<S> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.LOGMETER_CONFIG;
  const problems: string[] = [];
  let raw: Record<string, unknown> = {};
  if (file) {
    try {
      const parsed: unknown = parseYaml(readFileSync(file, 'utf8'));
      if (parsed !== null && parsed !== undefined) {
        if (typeof parsed !== 'object' || Array.isArray(parsed)) problems.push(`${file}: the top level must be a mapping`);
        else raw = parsed as Record<string, unknown>;
      }
    } catch (err) {
      problems.push(`${file}: ${(err as Error).message.split('\n')[0] ?? 'unreadable'}`);
    }
  }
  const fromEnv = new Map<string, string>();
  const shownValue = new Map<string, string>();
  for (const v of vars) {
    const value = env[v.name];
    if (value === undefined || value === '') continue;
    setPath(raw, v.path, v.parse ? v.parse(value) : value);
    fromEnv.set(v.path.join('.'), v.name);
    // The value is shown after its problem, unless it is a secret.
    if (!v.secret) shownValue.set(v.name, JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value));
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = issue.path.map(String);
      const source = describeSource(key, fromEnv, file);
      const got = shownValue.get(source);
      problems.push(`${source}: ${issue.message}${got === undefined ? '' : ` (got ${got})`}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result.data as z.infer<S>;
}

function describeSource(key: string[], fromEnv: Map<string, string>, file: string | undefined): string {
  // An array element's problem belongs to the variable that set the array.
  for (let n = key.length; n > 0; n--) {
    const name = fromEnv.get(key.slice(0, n).join('.'));
    if (name) return name;
  }
  const dotted = key.join('.') || '(top level)';
  return file ? `${file}: ${dotted}` : dotted;
}

function setPath(target: Record<string, unknown>, keys: string[], value: unknown): void {
  let node = target;
  for (const k of keys.slice(0, -1)) {
    const next = node[k];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

/** Absolute path of a file under the data directory. */
export function dataPath(config: { dataDir: string }, ...parts: string[]): string {
  return path.resolve(config.dataDir, ...parts);
}

/** Splits `host:port`. */
export function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
}

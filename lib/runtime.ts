/**
 * Builds the shared services one logmeter process needs from its config: logger,
 * metrics registry, HTTP server, schema codec, event bus and (when asked) ClickHouse
 * with migrations applied. Components get these passed in; none builds its own.
 * Which components run and which routes the HTTP server serves is decided above, in
 * app/ (the composition root).
 */
import { connect } from 'node:net';
import type { Registry } from 'prom-client';
import type { BaseConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { createRegistry } from './metrics.js';
import { Degraded, createHttpServer, type HttpServer } from './http.js';
import { busConfig, type EventBus } from './bus/bus.js';
import { createBus } from './bus/create.js';
import { AvroCodec } from '../schemas/codec.js';
import { ConfluentRegistrySource, ManifestSource, type SchemaSource } from '../schemas/registry.js';
import { clickHouseOptions, openClickHouse, type ClickHouse } from './clickhouse/client.js';
import { migrate } from './clickhouse/migrate.js';
import { splitHostPort } from './config.js';
import { LogmeterError, errorMessage } from './errors.js';
import { dockerClient } from './docker.js';

export interface Runtime<C extends BaseConfig = BaseConfig> {
  config: C;
  logger: Logger;
  registry: Registry;
  http: HttpServer;
  codec: AvroCodec;
  bus: EventBus;
  clickhouse?: ClickHouse | undefined;
  /** Closes everything opened, in reverse order. */
  close(): Promise<void>;
}

export function schemaSource(config: BaseConfig): SchemaSource {
  return config.schemaRegistry.url ? new ConfluentRegistrySource(config.schemaRegistry.url, config.kafka.topicPrefix) : new ManifestSource();
}

export function busFor(config: BaseConfig, codec: AvroCodec, logger: Logger, registry?: Registry): EventBus {
  return createBus(busConfig(config), codec, logger, registry);
}

export async function openClickHouseMigrated(config: BaseConfig, logger: Logger): Promise<ClickHouse> {
  if (config.clickhouse.url) await waitForServices(config, ['clickhouse'], logger);
  const ch = openClickHouse(clickHouseOptions(config, logger.child({ component: 'clickhouse' })));
  try {
    await migrate(ch, logger.child({ component: 'migrate' }));
  } catch (err) {
    await ch.close().catch(() => undefined);
    throw err;
  }
  return ch;
}

export interface RuntimeOptions {
  /** Open ClickHouse (migrations applied). */
  clickhouse: boolean;
  /** This process runs the collector: Docker must answer, and its longest line must fit the Kafka topics. */
  collector?: { maxLineBytes: number } | undefined;
  /** Further services to wait for at start (Kafka, and ClickHouse when opened, always are). */
  services?: readonly Service[];
  logger?: Logger;
}

export async function startRuntime<C extends BaseConfig>(config: C, opts: RuntimeOptions): Promise<Runtime<C>> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const needed = new Set<Service>(['kafka', ...(opts.services ?? [])]);
  if (config.schemaRegistry.url) needed.add('registry');
  if (opts.clickhouse && config.clickhouse.url) needed.add('clickhouse');
  if (opts.collector) needed.add('docker');
  await waitForServices(config, [...needed], logger);
  const registry = createRegistry();
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, 'error while closing');
      }
    }
  };
  try {
    const codec = await AvroCodec.create(schemaSource(config));
    const bus = busFor(config, codec, logger, registry);
    closers.push(() => bus.close());
    await bus.ensureTopics();
    if (opts.collector) await checkLineFitsTopics(bus, opts.collector.maxLineBytes);
    let clickhouse: ClickHouse | undefined;
    if (opts.clickhouse) {
      clickhouse = await openClickHouseMigrated(config, logger);
      closers.push(() => clickhouse!.close());
    }
    const http = createHttpServer({ listen: config.http.listen, registry, logger: logger.child({ component: 'http' }) });
    http.addHealthCheck('kafka', async () => {
      await bus.ping();
    });
    // A consumer the watchdog is recovering (lib/bus/watchdog.ts): degraded, with the reason.
    http.addHealthCheck('consumers', () => {
      const stalls = bus.consumerStalls();
      return stalls.length > 0 ? Promise.reject(new Degraded(stalls.map((s) => s.reason).join('; '))) : Promise.resolve();
    });
    if (clickhouse) {
      const ch = clickhouse;
      http.addHealthCheck('clickhouse', () => ch.ping());
    }
    closers.push(() => http.close());
    return { config, logger, registry, http, codec, bus, clickhouse, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A service a process may need at start. */
export type Service = 'kafka' | 'clickhouse' | 'redis' | 'docker' | 'registry';

interface Probe {
  name: string;
  address: string;
  /** Which setting names the address. */
  setting: string;
  check(timeoutMs: number): Promise<void>;
}

function probeFor(config: BaseConfig, service: Service): Probe | undefined {
  switch (service) {
    case 'kafka':
      // A TCP connect to any bootstrap broker: kafkajs itself would log every failed
      // attempt as an error with a stack trace.
      return { name: 'Kafka', address: config.kafka.brokers.join(','), setting: 'KAFKA_BROKERS', check: (t) => Promise.any(config.kafka.brokers.map((b) => tcpCheck(splitHostPort(b), t))).catch((e: AggregateError) => Promise.reject(e.errors[0] as Error)) };
    case 'redis': {
      const u = new URL(config.redis.url);
      return { name: 'Redis', address: `${u.hostname}:${u.port || 6379}`, setting: 'REDIS_URL', check: (t) => tcpCheck({ host: u.hostname, port: Number(u.port || 6379) }, t) };
    }
    case 'clickhouse': {
      const url = config.clickhouse.url;
      return url ? { name: 'ClickHouse', address: url, setting: 'CLICKHOUSE_URL', check: (t) => httpCheck(new URL('/ping', url).toString(), t) } : undefined;
    }
    case 'registry': {
      const url = config.schemaRegistry.url;
      return url ? { name: 'the schema registry', address: url, setting: 'SCHEMA_REGISTRY_URL', check: (t) => httpCheck(new URL('subjects', url.endsWith('/') ? url : `${url}/`).toString(), t) } : undefined;
    }
    case 'docker': {
      const docker = dockerClient(config.docker.host);
      return { name: 'Docker', address: config.docker.host, setting: 'DOCKER_HOST', check: (t) => withTimeout(docker.ping().then(() => undefined), t) };
    }
  }
}

function tcpCheck(to: { host: string; port: number }, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: to.host, port: to.port, timeout: timeoutMs });
    sock.once('connect', () => {
      sock.destroy();
      resolve();
    });
    sock.once('timeout', () => {
      sock.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    });
    sock.once('error', reject);
  });
}

async function httpCheck(url: string, timeoutMs: number): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  await res.body?.cancel();
  if (res.status >= 500) throw new Error(`HTTP ${res.status}`);
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** Why a connection attempt failed, without a stack: `connect ECONNREFUSED 127.0.0.1:1`. */
function reasonOf(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  // fetch() says only "fetch failed"; the reason is its cause.
  return cause instanceof Error ? `${errorMessage(err)}: ${cause.message}` : errorMessage(err);
}

/**
 * Waits until every service answers, all at once and for at most
 * `startup.timeoutSeconds` in total: jittered exponential backoff (250 ms doubling to
 * 5 s), one warning per failed attempt naming the service and its address. Then a
 * `service_unreachable` error naming each service that never answered, its address, the
 * setting that sets it and the last error — the CLI prints it and exits 1, instead of
 * a crash with a stack trace or a process that hangs without a word.
 */
export async function waitForServices(config: BaseConfig, services: readonly Service[], logger: Logger): Promise<void> {
  const log = logger.child({ component: 'startup' });
  const limitMs = config.startup.timeoutSeconds * 1000;
  const deadline = Date.now() + limitMs;
  const probes = services.map((s) => probeFor(config, s)).filter((p): p is Probe => p !== undefined);
  const failures = await Promise.all(
    probes.map(async (p) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await p.check(Math.max(100, Math.min(3000, deadline - Date.now())));
          if (attempt > 1) log.info({ service: p.name, address: p.address, attempts: attempt }, `${p.name} at ${p.address} answers (attempt ${attempt})`);
          return undefined;
        } catch (err) {
          const left = deadline - Date.now();
          if (left <= 0) return `${p.name} at ${p.address} (${p.setting}) did not answer within ${config.startup.timeoutSeconds} s (${attempt} attempts; last error: ${reasonOf(err)})`;
          const delay = Math.min(left, Math.min(5000, 250 * 2 ** Math.min(attempt - 1, 5)) * (0.5 + Math.random() / 2));
          log.warn({ service: p.name, address: p.address, attempt, retryInMs: Math.round(delay), err: reasonOf(err) }, `${p.name} at ${p.address} is not answering (${reasonOf(err)}); retrying in ${(delay / 1000).toFixed(1)} s, giving up after ${config.startup.timeoutSeconds} s`);
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    }),
  );
  const failed = failures.filter((f): f is string => f !== undefined);
  if (failed.length > 0) {
    throw new LogmeterError('service_unreachable', `${failed.join('; ')}. Check that ${failed.length > 1 ? 'they run' : 'it runs'} (npx logmeter stack status) and the address, or wait longer (LOGMETER_STARTUP_TIMEOUT).`, { retriable: true });
  }
}

/** Room a log event needs besides its line: ids, names, timestamps, flags, Kafka's record framing. */
const LOG_EVENT_OVERHEAD_BYTES = 2048;

/**
 * The collector cuts lines at `maxLineBytes`; a line that size must still fit in one
 * Kafka message, or the broker would refuse it (MESSAGE_TOO_LARGE) and the collector's
 * queue would stall behind it. Checked once at start against the logs topic's
 * `max.message.bytes` (the broker's `message.max.bytes` unless the topic overrides it).
 */
export async function checkLineFitsTopics(bus: EventBus, maxLineBytes: number): Promise<void> {
  const topic = bus.topic('logs');
  const limit = Number((await bus.topicSettings(topic, ['max.message.bytes']))['max.message.bytes']);
  if (!Number.isFinite(limit)) return;
  if (maxLineBytes + LOG_EVENT_OVERHEAD_BYTES > limit) {
    throw new LogmeterError(
      'line_too_large_for_kafka',
      `collector.maxLineBytes (LOGMETER_MAX_LINE_BYTES) is ${maxLineBytes}, but topic ${topic} takes messages of at most ${limit} bytes (max.message.bytes): a line that long could never be sent. Set it to at most ${limit - LOG_EVENT_OVERHEAD_BYTES}, or raise the topic's max.message.bytes.`,
    );
  }
}

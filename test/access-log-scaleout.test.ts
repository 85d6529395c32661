/**
 * The access-log parser as N instances, on real Kafka with a 6 s session timeout: one
 * recorded workload of raw log lines (nginx combined, HAProxy behind `lb-host` claims,
 * JSON; lines that do not parse and plain lines among them) goes through 1 instance, and
 * in a second namespace through 3 instances in child processes, one SIGKILLed midway
 * (while the second half arrives). Both http topics hold the same HttpRequest messages by
 * id, each with the same content (its Avro bytes) and key; after the kill a message may
 * repeat (a batch handled but not committed is handled again), only as an exact copy, and
 * the copies are counted.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { EventBus } from '../lib/bus/bus.js';
import type { LifecycleEvent, LogLine } from '../schemas/events.js';
import { ACCESS_LOG_PROCESSOR } from '../processors/access-log/config.js';
import { ROOT, eventually, namespace, type TestNamespace } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { busPool, readAll } from './helpers/kafka.js';
import { spawnInstance, stopInstances, type ChildInstance } from './helpers/instance.js';

const SCRIPT = path.join(ROOT, 'test', 'helpers', 'access-log-instance.ts');
const namespaces: TestNamespace[] = [];
const buses = busPool();
after(async () => {
  await stopInstances();
  await buses.closeAll();
  for (const ns of namespaces) ns.cleanup();
});

async function setup(): Promise<{ ns: TestNamespace; bus: EventBus }> {
  const ns = namespace({ LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS: '6' });
  namespaces.push(ns);
  const bus = await buses.open(ns);
  await bus.ensureTopics();
  return { ns, bus };
}

// ---------------------------------------------------------------------------------
// The recorded workload.

const T0 = Date.UTC(2026, 10, 26, 8, 0, 0);
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number) => String(n).padStart(2, '0');
/** `26/Nov/2026:08:45:57` (UTC). */
const clf = (ms: number) => {
  const d = new Date(ms);
  return `${p2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}`;
};

interface Source {
  container: string;
  tenant: string;
  app: string;
  format: string | null;
  line(i: number, t: number): string;
}

const nginx = (i: number, t: number) => `10.0.${i % 200}.7 - - [${clf(t)} +0000] "GET /web/${i}?q=${i % 7} HTTP/1.1" ${i % 50 === 0 ? 502 : 200} ${500 + (i % 300)} "-" "curl/8" 0.0${p2(i % 90)} 0.0${p2(i % 80)} "Web.Acme.Test"`;
const json = (i: number, t: number) => JSON.stringify({ time: t, method: i % 3 === 0 ? 'POST' : 'GET', path: `/api/${i}`, status: i % 40 === 0 ? 504 : 201, bytes: i % 1000, request_time: (i % 250) / 1000, host: 'api.acme.test' });
const hosts = ['web.acme.test', 'api.acme.test', 'nobody.acme.test'];
const haproxy = (i: number, t: number) =>
  `<134>Nov 26 08:45:57 lb-1 haproxy[12]: 10.0.1.${i % 250}:${30_000 + i} [${clf(t)}.${String(t % 1000).padStart(3, '0')}] fe_https~ be_x/srv${i % 3} 10/${i % 20}/30/69/${100 + (i % 400)} ${i % 60 === 0 ? 503 : 200} ${2000 + i} - - ---- 40/40/38/10/1 ${i % 4}/${i % 7} {${hosts[i % 3]!}|curl} {text/html} "GET /lb/${i} HTTP/1.1"`;

const SOURCES: Source[] = [
  ...[1, 2, 3].map((r) => ({ container: `web-${r}`, tenant: 'acme', app: 'web', format: 'nginx-combined', line: nginx })),
  ...[1, 2, 3].map((r) => ({ container: `api-${r}`, tenant: 'acme', app: 'api', format: 'json', line: json })),
  ...[1, 2].map((r) => ({ container: `lb-${r}`, tenant: 'platform', app: 'lb', format: 'haproxy', line: haproxy })),
  // Lines that are no requests: a plain container, and an nginx-labelled one printing something else.
  { container: 'worker-1', tenant: 'acme', app: 'worker', format: null, line: (i: number) => `job ${i} done` },
  { container: 'web-9', tenant: 'acme', app: 'web', format: 'nginx-combined', line: (i: number) => `starting worker process ${i}` },
];

function lifecycle(prefix: string): { event: LifecycleEvent }[] {
  const host = new Map([
    ['web', 'web.acme.test'],
    ['api', 'api.acme.test'],
  ]);
  return SOURCES.map((s) => ({
    event: {
      ...SAMPLE_EVENTS.lifecycle,
      event_id: `life-${s.container}`,
      tenant: s.tenant,
      app: s.app,
      container_id: s.container,
      container_name: s.container,
      ts: T0 - 60_000,
      action: 'start',
      exit_code: null,
      labels: { [`${prefix}tenant`]: s.tenant, [`${prefix}app`]: s.app, ...(host.has(s.app) ? { [`${prefix}lb-host`]: host.get(s.app)! } : {}) },
      identity: null,
    },
  }));
}

/** Lines `from` to `to` (exclusive) of every source, keyed by container (the logs topic's natural key). */
function lines(from: number, to: number): { event: LogLine }[] {
  const out: { event: LogLine }[] = [];
  for (let i = from; i < to; i++) {
    for (const s of SOURCES) {
      const t = T0 + i * 37;
      const text = s.line(i, t);
      out.push({
        event: { ...SAMPLE_EVENTS.logs, event_id: `${s.container}:${i}`, tenant: s.tenant, app: s.app, node: 'node-1', container_id: s.container, container_name: s.container, ts: t, ts_nanos: 0, seq: i, stream: 'stdout', line: Buffer.from(text), original_length: Buffer.byteLength(text), truncated: false, invalid_utf8: false, log_format: s.format },
      });
    }
  }
  return out;
}

/** Lines per source: the first part before the instances start, the rest while one of them is killed. */
const FIRST = 400;
const TOTAL = 1600;

// ---------------------------------------------------------------------------------

/** Log lines on the topic, and how many of them the access-log group committed. */
async function progress(ns: TestNamespace, bus: EventBus): Promise<{ lines: number; handled: number }> {
  const group = `${ns.config.kafka.topicPrefix}${ACCESS_LOG_PROCESSOR.group}`;
  const [ends, committed] = await Promise.all([bus.endOffsets(bus.topic('logs')), bus.committedOffsets(group, bus.topic('logs'))]);
  let lines = 0;
  let handled = 0;
  for (const e of ends) {
    lines += Number(e.high) - Number(e.low);
    const at = Number(committed.find((x) => x.partition === e.partition)?.offset ?? -1);
    handled += at < 0 ? 0 : at - Number(e.low);
  }
  return { lines, handled };
}

/** Resolves once the access-log group has committed every logs partition to its end. */
async function handledAll(ns: TestNamespace, bus: EventBus): Promise<void> {
  await eventually(
    'every log line handled',
    async () => {
      const p = await progress(ns, bus);
      return p.handled === p.lines ? true : undefined;
    },
    180_000,
  );
}

interface HttpOutput {
  /** event id → its Avro bytes (base64) and key. */
  byId: Map<string, { content: string; key: string }>;
  messages: number;
  /** Messages that repeat an id (each an exact copy). */
  copies: number;
}

/** The http topic's messages by id; a repeated id must be an exact copy (content and key). */
async function httpOutput(bus: EventBus): Promise<HttpOutput> {
  const out: HttpOutput = { byId: new Map(), messages: 0, copies: 0 };
  await readAll(bus, 'http', (batch) => {
    for (const m of batch) {
      out.messages++;
      const seen = { content: bus.codec.encode('http', m.event).toString('base64'), key: m.key?.toString() ?? '' };
      const before = out.byId.get(m.event.event_id);
      if (before) {
        assert.deepEqual(seen, before, `${m.event.event_id} repeated with other content or key`);
        out.copies++;
      } else out.byId.set(m.event.event_id, seen);
    }
    return Promise.resolve();
  });
  return out;
}

test('1 instance and 3 instances (one SIGKILLed midway) publish the same HttpRequest messages by id, content and key', async () => {
  // 1 instance.
  const one = await setup();
  await one.bus.publish('lifecycle', lifecycle(one.ns.config.labelPrefix));
  await one.bus.publish('logs', lines(0, TOTAL));
  const single = await spawnInstance('access-log-1', SCRIPT, [], one.ns.env);
  await handledAll(one.ns, one.bus);
  assert.equal(await single.stop(), 0);
  const reference = await httpOutput(one.bus);
  // web, api and the load balancer's lines are requests; the lines that are none are not.
  assert.equal(reference.byId.size, 8 * TOTAL, 'one request per access line');
  assert.equal(reference.copies, 0);
  const keys = new Map<string, number>();
  for (const { key } of reference.byId.values()) keys.set(key, (keys.get(key) ?? 0) + 1);
  const lbTo = (host: string) => 2 * Array.from({ length: TOTAL }, (_, i) => hosts[i % 3]).filter((h) => h === host).length;
  assert.deepEqual(
    Object.fromEntries(keys),
    { 'acme/web': 3 * TOTAL + lbTo('web.acme.test'), 'acme/api': 3 * TOTAL + lbTo('api.acme.test'), 'platform/lb': lbTo('nobody.acme.test') },
    'own requests keyed by their app, the load balancer\'s by the app claiming the host (its own key when none does)',
  );

  // 3 instances, one killed while the second half arrives.
  const three = await setup();
  await three.bus.publish('lifecycle', lifecycle(three.ns.config.labelPrefix));
  await three.bus.publish('logs', lines(0, FIRST));
  const children: ChildInstance[] = await Promise.all(['a', 'b', 'c'].map((n) => spawnInstance(`access-log-${n}`, SCRIPT, [], three.ns.env)));
  await handledAll(three.ns, three.bus);
  const firstLines = (await progress(three.ns, three.bus)).lines;
  // The rest arrives; once the group has handled some of it, one instance is killed (it
  // may be between a publish and its commit, or done with its share: either is allowed).
  await three.bus.publish('logs', lines(FIRST, TOTAL));
  const atKill = await eventually('some of the rest handled', async () => {
    const p = await progress(three.ns, three.bus);
    return p.handled > firstLines ? p : undefined;
  });
  const victim = children[1]!;
  await victim.kill();
  await handledAll(three.ns, three.bus);
  for (const c of children) if (c !== victim) assert.equal(await c.stop(), 0, `${c.name} stops cleanly on SIGTERM`);
  const scaled = await httpOutput(three.bus);

  assert.deepEqual([...scaled.byId.keys()].sort(), [...reference.byId.keys()].sort(), 'the same set of ids');
  for (const [id, ref] of reference.byId) assert.deepEqual(scaled.byId.get(id), ref, `${id}: same content and key`);
  assert.equal(scaled.messages, scaled.byId.size + scaled.copies);
  three.ns.logger.warn({ linesAtKill: atKill.lines, handledAtKill: atKill.handled, messages: scaled.messages, ids: scaled.byId.size, copies: scaled.copies }, 'access-log scale-out: exact copies after the kill');
});

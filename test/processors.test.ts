import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LogLine } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import type { AppRuntime } from '../app/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { clickHouseOn, openClickHouse, withDatabase, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector, type Collector } from '../ingest/collector.js';
import { startProcessors, stopAll, type Running } from '../app/pipeline.js';
import { startUsage } from '../processors/usage/processor.js';
import { runIntervals, splitByHour, toUsageRecord, usageWindow, HOUR } from '../processors/usage/meters.js';
import { computeMeters } from '../processors/usage/queries.js';
import { counterDelta } from '../processors/traffic/delta.js';
import Fastify from 'fastify';
import { registerTenantRoutes } from '../api/index.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { cliBackground, namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers, runContainer } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

const ns = namespace({ LOGMETER_LOG_LEVEL: 'warn' });
const prefix = `${ns.id}.`;
const ext = `${ns.id}-ext`;
const int = `${ns.id}-int`;
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const config = { ...ns.config, processors: { ...ns.config.processors, sinkBatchMs: 100, usageIntervalSeconds: 3600 } };

/** The sink's ClickHouse, behind a handle the test can close and reopen (the embedded store going away). */
let current: ClickHouse = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
const ch: ClickHouse = clickHouseOn(() => current.client, 'embedded', ns.id, () => current.close());
let running: Running[] = [];
let collector: Collector;

async function q<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
  return ch.query<T>(sql, params);
}

before(async () => {
  await bus.ensureTopics();
  await migrate(ch, ns.logger);
  const rt = { config, logger: ns.logger, registry, bus, codec, clickhouse: ch } as unknown as AppRuntime;
  running = await startProcessors(rt, ['log-sink', 'access-log', 'traffic']);
  for (const name of [ext, int]) await docker.createNetwork({ Name: name, Labels: { [`${prefix}tenant`]: 'net' } });
  collector = createCollector({
    cfg: collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 1, externalNetworks: [ext], internalNetworks: [int] }),
    node: 'node-t',
    stateDir: path.join(ns.dataDir, 'collector'),
    docker,
    bus,
    codec,
    logger: ns.logger,
    registry,
  });
  await collector.start();
});

after(async () => {
  await collector.stop();
  await stopAll(running);
  await removeTestContainers(prefix);
  for (const name of [ext, int]) await docker.getNetwork(name).remove().catch(() => undefined);
  await bus.close();
  await ch.close();
  ns.cleanup();
});

// The requests' own time is now: usage computations look back a few hours from the clock, and a
// fixed time would fall inside one lookback and outside another depending on when the test runs.
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const nginxTime = (d: Date) =>
  `${String(d.getUTCDate()).padStart(2, '0')}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${d.toISOString().slice(11, 19)} +0000`;
const REQUEST_TIME = nginxTime(new Date());
const access = (i: number, status: number, rt: string) => `10.0.0.${i} - - [${REQUEST_TIME}] "GET /item/${i}?q=\\"x\\" HTTP/1.1" ${status} ${100 + i} "-" "test/1.0" ${rt}`;

test('two tenants: log lines land in ClickHouse with tenant, kind and flags; access lines become HTTP requests', async () => {
  const a = await runContainer({ prefix, tenant: 'acme', app: 'web', labels: { [`${prefix}log-format`]: 'nginx-combined' }, script: `echo '${access(1, 200, '0.012')}'; echo '${access(2, 504, '1.500')}'; echo 'not an access line'; echo 'debug: warming cache' >&2` });
  const b = await runContainer({ prefix, tenant: 'globex', app: 'worker', script: "echo 'job 1 done'; printf 'bin \\001\\n'" });
  await a.wait();
  await b.wait();
  type Row = { tenant: string; app: string; line: string; kind: string; stream: string; invalid_utf8: boolean };
  const rows = await eventually('6 log rows', async () => {
    const r = await q<Row>(`SELECT tenant, app, line, kind, stream, invalid_utf8 FROM ${ch.table('logs')} FINAL WHERE container_id IN ({a:String}, {b:String}) ORDER BY tenant, line`, { a: a.id, b: b.id });
    return r.length >= 6 ? r : undefined;
  });
  assert.deepEqual(rows, [
    { tenant: 'acme', app: 'web', line: access(1, 200, '0.012'), kind: 'access', stream: 'stdout', invalid_utf8: false },
    { tenant: 'acme', app: 'web', line: access(2, 504, '1.500'), kind: 'access', stream: 'stdout', invalid_utf8: false },
    { tenant: 'acme', app: 'web', line: 'debug: warming cache', kind: 'debug', stream: 'stderr', invalid_utf8: false },
    { tenant: 'acme', app: 'web', line: 'not an access line', kind: 'debug', stream: 'stdout', invalid_utf8: false },
    { tenant: 'globex', app: 'worker', line: 'bin \u0001', kind: 'debug', stream: 'stdout', invalid_utf8: true },
    { tenant: 'globex', app: 'worker', line: 'job 1 done', kind: 'debug', stream: 'stdout', invalid_utf8: false },
  ]);
  type Req = { tenant: string; method: string; path: string; status: number; bytes: number; request_time_ms: number };
  const reqs = await eventually('2 http rows', async () => {
    const r = await q<Req>(`SELECT tenant, method, path, status, bytes, request_time_ms FROM ${ch.table('http_requests')} FINAL WHERE container_id = {a:String} ORDER BY status`, { a: a.id });
    return r.length >= 2 ? r : undefined;
  });
  assert.deepEqual(reqs, [
    { tenant: 'acme', method: 'GET', path: '/item/1?q="x"', status: 200, bytes: 101, request_time_ms: 12 },
    { tenant: 'acme', method: 'GET', path: '/item/2?q="x"', status: 504, bytes: 102, request_time_ms: 1500 },
  ]);
  const life = await eventually('start and die of both', async () => {
    const r = await q<{ action: string; kind: string; exit_code: number | null }>(`SELECT action, kind, exit_code FROM ${ch.table('lifecycle')} FINAL WHERE container_id = {a:String} AND action IN ('start', 'die') ORDER BY ts`, { a: a.id });
    return r.length >= 2 ? r : undefined;
  });
  assert.deepEqual(life, [
    { action: 'start', kind: 'start', exit_code: null },
    { action: 'die', kind: 'operation', exit_code: 0 },
  ]);
});

test('the API shows each tenant exactly its own lines from the pipeline', async () => {
  const app = Fastify();
  const tokens = { acme: 'acme-token-0123456789', globex: 'globex-token-0123456789' };
  registerTenantRoutes(app, { ch, tokens, logger: ns.logger });
  const get = async (tenant: keyof typeof tokens, url: string) => {
    const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${tokens[tenant]}` } });
    return { status: r.statusCode, body: r.json<{ items: Array<{ tenant: string; line: string; kind: string }> }>() };
  };
  const acme = await get('acme', '/api/v1/logs?limit=1000&from=1h');
  assert.equal(acme.status, 200);
  assert.ok(acme.body.items.length > 0 && acme.body.items.every((i) => i.tenant === 'acme'));
  const globex = await get('globex', '/api/v1/logs?limit=1000&from=1h&kind=debug');
  assert.deepEqual(globex.body.items.map((i) => i.line).sort(), ['bin \u0001', 'job 1 done']);
  const sneaky = await get('acme', '/api/v1/logs?limit=1000&from=1h&app=worker&tenant=globex');
  assert.deepEqual(sneaky.body.items, [], "tenant A asking for B's app sees nothing of B's");
  const quoted = await get('acme', `/api/v1/logs?from=1h&q=${encodeURIComponent('?q=\\"x\\"')}`);
  assert.equal(quoted.body.items.length, 2, 'quotes and backslashes matched literally');
  await app.close();
});

test('a redelivered event does not appear twice; an undecodable one goes to dead_letters and the sink goes on', async () => {
  // A current timestamp: the tables' retention (TTL) drops rows older than it on insert.
  const line: LogLine = { ...SAMPLE_EVENTS.logs, ts: Date.now(), event_id: `dup-${ns.id}`, tenant: 'dup', container_id: 'dup-container' };
  await bus.publish('logs', [{ event: line }, { event: line }]);
  await bus.publishRaw(bus.topic('logs'), [{ key: 'dup-container', value: Buffer.from('garbage that is not avro') }]);
  await bus.publish('logs', [{ event: { ...line, event_id: `after-${ns.id}` } }]);
  await eventually('line after garbage', async () => ((await q(`SELECT 1 FROM ${ch.table('logs')} FINAL WHERE event_id = {e:String}`, { e: `after-${ns.id}` })).length ? true : undefined));
  const dup = await q<{ n: number }>(`SELECT count() AS n FROM ${ch.table('logs')} FINAL WHERE event_id = {e:String}`, { e: line.event_id });
  assert.deepEqual(dup, [{ n: 1 }]);
  const raw = await q<{ line: string }>(`SELECT hex(line) AS line FROM ${ch.table('logs')} FINAL WHERE event_id = {e:String}`, { e: line.event_id });
  assert.equal(raw[0]!.line, line.line.toString('hex').toUpperCase(), 'bytes kept exactly, invalid UTF-8 included');
  const dead = await eventually('dead letter row', async () => {
    const r = await q<{ error_code: string; payload: string; source_topic: string }>(`SELECT error_code, payload, source_topic FROM ${ch.table('dead_letters')} FINAL WHERE source_topic = {t:String}`, { t: bus.topic('logs') });
    return r.length ? r : undefined;
  });
  assert.deepEqual(dead, [{ error_code: 'bad_magic_byte', payload: Buffer.from('garbage that is not avro').toString('base64'), source_topic: bus.topic('logs') }]);
});

test('ClickHouse closed: the sink stops committing, retries, and loses nothing once it is back', async () => {
  const group = `${ns.config.kafka.topicPrefix}log-sink.lifecycle`;
  const committed = async () =>
    (await bus.committedOffsets(group, bus.topic('lifecycle'))).reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
  const before = await committed();
  await current.close();
  const events = Array.from({ length: 50 }, (_, i) => ({ event: { ...SAMPLE_EVENTS.lifecycle, ts: Date.now(), event_id: `outage-${ns.id}-${i}`, tenant: 'outage', container_id: `outage-${i % 5}` } }));
  await bus.publish('lifecycle', events);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(await committed(), before, 'no offset committed while the store is closed');
  current = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  const n = await eventually('all 50 rows after reopening', async () => {
    const r = await q<{ n: number }>(`SELECT count() AS n FROM ${ch.table('lifecycle')} FINAL WHERE tenant = 'outage'`);
    return r[0]!.n >= 50 ? r[0]!.n : undefined;
  }, 60_000);
  assert.equal(n, 50);
  await eventually('offsets committed again', async () => ((await committed()) >= before + 50 ? true : undefined));
});

test('known traffic on internal and external networks: usage bills the external bytes, shows the internal ones, across a restart', async () => {
  // A server on both networks; the clients carry no tenant label, so only the server is metered.
  const server = await runContainer({ prefix, tenant: 'acme', app: 'files', labels: { [`${prefix}size`]: 'small' }, network: ext, start: false, script: 'head -c 3000000 /dev/zero > /www/ext.bin; head -c 1000000 /dev/zero > /www/int.bin; httpd -f -p 80 -h /www' });
  await docker.getNetwork(int).connect({ Container: server.id });
  await server.start();
  const ipOn = async (net: string) => (await server.inspect()).NetworkSettings.Networks[net]!.IPAddress;
  const fetch = async (net: string, file: string) => {
    const c = await docker.createContainer({ Image: 'logmeter/base:1', Cmd: ['sh', '-c', `sleep 1; timeout 20 wget -q -O /dev/null http://${await ipOn(net)}/${file}`], Labels: { [`${prefix}client`]: 'x' }, HostConfig: { Init: true, NetworkMode: net } });
    await c.start();
    const r = (await c.wait()) as { StatusCode: number };
    await c.remove();
    assert.equal(r.StatusCode, 0);
  };
  await fetch(ext, 'ext.bin');
  await fetch(int, 'int.bin');
  await new Promise((r) => setTimeout(r, 2500));
  await server.restart({ t: 1 });
  await fetch(ext, 'ext.bin');
  await new Promise((r) => setTimeout(r, 2500));

  // Expected: from the samples themselves — per run, the last counter seen (counters restart at 0).
  const samples = (await collect(bus, 'stats', (evs) => evs.filter((e) => e.container_id === server.id).length >= 4)).filter((e) => e.container_id === server.id);
  const expectSum = (cls: string, dir: 'tx_bytes' | 'rx_bytes') => {
    let total = 0;
    let prev: number | undefined;
    for (const s of samples) for (const i of s.interfaces.filter((x) => x.traffic_class === cls)) {
      total += counterDelta(prev, i[dir]);
      prev = i[dir];
    }
    return total;
  };
  const egress = expectSum('external', 'tx_bytes');
  assert.ok(egress >= 6_000_000 && egress < 6_600_000, `egress ${egress} covers two 3 MB downloads`);
  await eventually('traffic rows for every sample', async () => {
    const r = await q<{ n: number }>(`SELECT count() AS n FROM ${ch.table('traffic')} FINAL WHERE container_id = {c:String} AND network != '(blkio)'`, { c: server.id });
    return r[0]!.n >= samples.reduce((s, x) => s + x.interfaces.length, 0) ? true : undefined;
  });
  const usage = startUsage({ bus, ch, logger: ns.logger, registry, config: { intervalSeconds: 3600, lookbackHours: 2 } });
  await usage.runOnce();
  await usage.stop();
  type U = { meter: string; q: number };
  const meters = await eventually('usage rows', async () => {
    const r = await q<U>(`SELECT meter, sum(quantity) AS q FROM ${ch.table('usage')} FINAL WHERE tenant = 'acme' AND app = 'files' GROUP BY meter ORDER BY meter`);
    return r.some((x) => x.meter === 'egress_external_bytes') ? r : undefined;
  });
  const m = Object.fromEntries(meters.map((x) => [x.meter, x.q]));
  // Samples taken after the run ended may be missing from the topic read above; the table holds them all.
  const fromTable = await q<{ tx: number }>(`SELECT sum(tx_bytes) AS tx FROM ${ch.table('traffic')} FINAL WHERE container_id = {c:String} AND traffic_class = 'external'`, { c: server.id });
  assert.equal(m.egress_external_bytes, fromTable[0]!.tx);
  assert.ok(m.egress_external_bytes >= egress, 'no bytes lost across the restart');
  assert.ok(m.egress_external_bytes < 6_600_000, 'none counted twice');
  assert.ok(m.internal_bytes! >= 1_000_000 && m.internal_bytes! < 1_100_000, `internal ${m.internal_bytes}`);
  assert.ok(m.container_seconds! > 0);
  const negative = await q<{ n: number }>(`SELECT count() AS n FROM ${ch.table('traffic')} FINAL WHERE toInt64(rx_bytes) < 0 OR toInt64(tx_bytes) < 0`);
  assert.deepEqual(negative, [{ n: 0 }]);
  await server.remove({ force: true });
});

test('container-seconds match the measured run time within one stats interval', async () => {
  const c = await runContainer({ prefix, tenant: 'timed', app: 'sleeper', labels: { [`${prefix}size`]: 'medium' }, script: 'sleep 3' });
  await c.wait();
  const info = await c.inspect();
  const measured = (Date.parse(info.State.FinishedAt) - Date.parse(info.State.StartedAt)) / 1000;
  await eventually('die in lifecycle', async () => ((await q(`SELECT 1 FROM ${ch.table('lifecycle')} FINAL WHERE container_id = {c:String} AND action = 'die'`, { c: c.id })).length ? true : undefined));
  const now = Date.now();
  const values = (await computeMeters(ch, Math.floor(now / HOUR) * HOUR - HOUR, Math.floor(now / HOUR) * HOUR + HOUR, now)).filter((v) => v.tenant === 'timed' && v.meter === 'container_seconds');
  const total = values.reduce((s, v) => s + v.quantity, 0);
  assert.ok(Math.abs(total - measured) <= 1, `container-seconds ${total} vs measured ${measured}`);
  assert.deepEqual(values.map((v) => v.dimensions), values.map(() => ({ size: 'medium' })));
});

test('usage interrupted mid-publish and recomputed, and the usage topic replayed from offset 0 into a fresh store: identical totals', async () => {
  const now = Date.now();
  const from = Math.floor(now / HOUR) * HOUR - 2 * HOUR;
  const to = Math.floor(now / HOUR) * HOUR + HOUR;
  const totals = async (store: ClickHouse) =>
    q0(store, `SELECT tenant, app, meter, round(sum(quantity), 3) AS q FROM ${store.table('usage')} FINAL GROUP BY tenant, app, meter ORDER BY tenant, app, meter`);
  const q0 = (store: ClickHouse, sql: string) => store.query(sql);

  // An undisturbed computation.
  const values = await computeMeters(ch, from, to, now);
  assert.ok(values.length > 0);
  await bus.publish('usage', values.map((v) => ({ event: toUsageRecord(v) })));
  const settled = async (store: ClickHouse, want: number) =>
    eventually('usage rows settled', async () => {
      const r = await q0(store, `SELECT count() AS n FROM ${store.table('usage')} FINAL`);
      return Number(r[0]!.n) >= want ? true : undefined;
    });
  await settled(ch, values.length);
  const reference = await totals(ch);

  // A run killed half-way through publishing, then a full recomputation.
  await bus.publish('usage', values.slice(0, Math.floor(values.length / 2)).map((v) => ({ event: { ...toUsageRecord(v), quantity: v.quantity } })));
  const usage = startUsage({ bus, ch, logger: ns.logger, registry, config: { intervalSeconds: 3600, lookbackHours: 2 }, clock: () => now });
  await usage.runOnce();
  await usage.stop();
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(await totals(ch), reference);

  // Replay: a new sink group into a new database reads the usage topic from offset 0.
  const replayDb = `${ns.id}_replay`;
  const replay: ClickHouse = withDatabase(ch, replayDb);
  await migrate(replay, ns.logger);
  const replayBus = busFor({ ...ns.config }, codec, ns.logger);
  const sub = await startLogSink({ config: logSinkConfig(config), bus: replayBus, ch: replay, logger: ns.logger, registry: createRegistry(false), group: 'log-sink-replay' });
  try {
    await settled(replay, values.length);
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await totals(replay), reference);
  } finally {
    await sub.stop();
    await replayBus.close();
  }
});

test('pure parts: counter deltas never go negative; hours split exactly; run intervals from start/die', () => {
  assert.equal(counterDelta(undefined, 500), 500);
  assert.equal(counterDelta(100, 500), 400);
  assert.equal(counterDelta(500, 120), 120, 'a counter that went down restarted at zero');
  const h = Date.parse('2026-11-26T10:00:00Z');
  assert.deepEqual([...splitByHour(h - 1800_000, h + 900_000, h - HOUR, h + HOUR)], [[h - HOUR, 1800], [h, 900]]);
  assert.deepEqual(runIntervals([{ action: 'start', ts: 10 }, { action: 'die', ts: 50 }, { action: 'restart', ts: 60 }], 90, 1000), [[10, 50], [60, 90]]);
  assert.deepEqual(runIntervals([{ action: 'die', ts: 5 }, { action: 'start', ts: 10 }], undefined, 1000), [[10, 10]]);
  assert.deepEqual(usageWindow(h + 1234, 2), { from: h - 2 * HOUR, to: h + HOUR }, 'the current hour and two before it');
});

test('the usage processor killed with SIGKILL mid-run and restarted: usage totals identical', async () => {
  const totals = async () =>
    ch.query(`SELECT tenant, app, meter, round(sum(quantity), 3) AS q FROM ${ch.table('usage')} FINAL GROUP BY tenant, app, meter ORDER BY tenant, app, meter`);
  const reference = await totals();
  assert.ok(reference.length > 0);
  const published = async () => (await bus.endOffsets(bus.topic('usage'))).reduce((n, p) => n + Number(p.high), 0);
  const before = await published();
  // The processor runs as its own process on the embedded store: this one lets go of it meanwhile
  // (the sink retries its inserts and commits nothing until the store is back).
  await current.close();
  const env = { ...ns.env, LOGMETER_LOG_LEVEL: 'info', LOGMETER_HTTP: '127.0.0.1:0' };
  let proc = cliBackground(['processor', 'usage'], env);
  await proc.waitFor(/"msg":"usage processor started"/, 60_000);
  await new Promise((r) => setTimeout(r, 150));
  proc.child.kill('SIGKILL');
  await proc.exited;
  proc = cliBackground(['processor', 'usage'], env);
  await proc.waitFor(/"msg":"processor up"/, 60_000);
  await new Promise((r) => setTimeout(r, 3000));
  proc.child.kill('SIGTERM');
  assert.equal(await proc.exited, 0, proc.output());
  assert.ok((await published()) > before, 'the restarted processor published its computation');
  current = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(await totals(), reference);
});

/**
 * Several nodes into one pipeline, on real services: two private Docker engines on this
 * machine (test/helpers/nodes.ts), a collector per engine with its own LOGMETER_NODE and
 * DOCKER_HOST, into the shared Kafka under one topic prefix; one log sink and traffic
 * processor (into an embedded ClickHouse), one access-log parser, one autoscale instance,
 * one route processor and the usage computation. One app of one tenant has a replica on
 * each node (an httpd behind the lb-host `shop.acme.test`) that logs numbered lines and
 * access-log lines.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { EventMap, RouteSet, TopicName } from '../schemas/events.js';
import type { AppRuntime } from '../app/runtime.js';
import { startProcessors, stopAll, type Running } from '../app/pipeline.js';
import { openClickHouse, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { eventId } from '../lib/event-id.js';
import { busFor } from '../lib/runtime.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { createRegistry } from '../lib/metrics.js';
import type { EventBus } from '../lib/bus/bus.js';
import type { Collector } from '../ingest/collector.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { AUTOSCALE_DEFAULTS } from '../processors/autoscale/config.js';
import { startAutoscale, type AutoscaleProcessor } from '../processors/autoscale/processor.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { startUsage } from '../processors/usage/processor.js';
import { HOUR } from '../processors/usage/meters.js';
import { eventually, namespace } from './helpers/env.js';
import { collect } from './helpers/kafka.js';
import { MULTI_NODE_LAYOUT, nodeConfig, startNodeCollector, startNodes, stopNodes, type DockerNode } from './helpers/nodes.js';

const ns = namespace();
const prefix = `${ns.id}.`;
const NODES = ['node-a', 'node-b'] as const;
const LINES = 40;
const REQUESTS = 12;
const HOST = 'shop.acme.test';

const nginxTime = (d: Date) =>
  `${String(d.getUTCDate()).padStart(2, '0')}/${d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' })}/${d.getUTCFullYear()}:${d.toISOString().slice(11, 19)} +0000`;

let nodes: DockerNode[] = [];
const buses: EventBus[] = [];
const collectors: Collector[] = [];
let parser: { stop(): Promise<void> } | undefined;
let autoscale: AutoscaleProcessor | undefined;
let autoscaleNow = 0;
let routes: RouteProcessor | undefined;
/** When the replicas log their requests; autoscale's clock is one second after, however long the pipeline takes. */
const REQUEST_TIME = Date.now();
let bus: EventBus;
let ch: ClickHouse;
let running: Running[] = [];
/** Container id → the node it runs on. */
const placed = new Map<string, string>();

before(async () => {
  nodes = await startNodes(NODES, ns.logger, MULTI_NODE_LAYOUT);
  const codec = await AvroCodec.create(new ManifestSource());
  const newBus = () => {
    const b = busFor(ns.config, codec, ns.logger);
    buses.push(b);
    return b;
  };
  bus = newBus();
  await bus.ensureTopics();
  // A collector per engine, configured as a node's would be: LOGMETER_NODE and DOCKER_HOST.
  for (const n of nodes) {
    assert.equal(nodeConfig(ns.env, n).node, n.name);
    collectors.push(await startNodeCollector(n, { env: ns.env, labelPrefix: prefix, stateDir: path.join(ns.dataDir, `collector-${n.name}`), bus: newBus(), codec, logger: ns.logger }));
  }
  ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  await migrate(ch, ns.logger);
  const config = { ...ns.config, processors: { ...ns.config.processors, sinkBatchMs: 100 } };
  running = await startProcessors({ config, logger: ns.logger, registry: createRegistry(false), bus: newBus(), codec, clickhouse: ch } as unknown as AppRuntime, ['log-sink', 'traffic']);
  parser = await startAccessLogParser({ bus: newBus(), logger: ns.logger, registry: createRegistry(false), routing: { lbApp: AUTOSCALE_DEFAULTS.lbApp, labelPrefix: prefix } });
  // Started a millisecond before its tick: an instance signals only past when it took its partitions.
  autoscaleNow = REQUEST_TIME + 999;
  autoscale = await startAutoscale({ bus: newBus(), logger: ns.logger, registry: createRegistry(false), config: AUTOSCALE_DEFAULTS, node: 'processors', labelPrefix: prefix, autoTick: false, clock: () => autoscaleNow });
  autoscaleNow = REQUEST_TIME + 1000;
  routes = await startRouteProcessor({ bus: newBus(), logger: ns.logger, registry: createRegistry(false), node: 'processors', stateDir: path.join(ns.dataDir, 'routes'), config: { labelPrefix: prefix } });
});

after(async () => {
  for (const stop of [() => routes?.stop(), () => autoscale?.stop(), () => parser?.stop(), ...collectors.map((c) => async () => void (await c.stop())), () => stopAll(running)]) {
    await Promise.resolve()
      .then(stop)
      .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
  }
  await stopNodes(nodes);
  for (const b of buses) await b.close();
  await ch?.close();
  ns.cleanup();
});

/** The replica on `n`: numbered lines and access-log lines (the request time is now), then busybox httpd on port 80, published on 127.0.0.1. */
async function startReplica(n: DockerNode): Promise<Docker.Container> {
  const at = nginxTime(new Date(REQUEST_TIME));
  const access = Array.from({ length: REQUESTS }, (_, i) => `10.0.0.${i + 1} - - [${at}] "GET /${n.name}/${i} HTTP/1.1" 200 ${100 + i} "-" "test/1.0" 0.0${10 + i}`);
  const script = [`i=1; while [ $i -le ${LINES} ]; do echo "line ${n.name} $i"; i=$((i+1)); done`, ...access.map((l) => `echo '${l}'`), 'exec httpd -f -p 80 -h /www'].join('\n');
  const c = await n.docker.createContainer({
    Image: BASE_IMAGE,
    Cmd: ['sh', '-c', script],
    Labels: { [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'shop', [`${prefix}log-format`]: 'nginx-combined', [`${prefix}lb-host`]: HOST, [`${prefix}lb-port`]: '80' },
    ExposedPorts: { '80/tcp': {} },
    HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  await c.start();
  placed.set(c.id, n.name);
  return c;
}

/** Everything on `topic` up to its end now (a fresh group from the start). */
async function readAll<T extends TopicName>(topic: T): Promise<EventMap[T][]> {
  const ends = await bus.endOffsets(bus.topic(topic));
  const total = ends.reduce((s, e) => s + Number(e.high) - Number(e.low), 0);
  return collect(bus, topic, (got) => got.length >= total);
}

function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 3000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('an app with a replica on each of two nodes: every event carries its node, one autoscale signal and one route set for the app', async () => {
  const replicas = await Promise.all(nodes.map((n) => startReplica(n)));
  const ids = replicas.map((c) => c.id);

  // Logs: every numbered line of every node, and every access line.
  const isOurs = (e: { container_id: string }) => placed.has(e.container_id);
  await eventually(
    'every line on the logs topic',
    async () => {
      const got = (await readAll('logs')).filter(isOurs);
      return got.length >= NODES.length * (LINES + REQUESTS) ? true : undefined;
    },
    60_000,
  );
  // Stats: a sample of each replica.
  await eventually(
    'a stats sample of each replica',
    async () => {
      const got = (await readAll('stats')).filter(isOurs);
      return ids.every((id) => got.some((s) => s.container_id === id)) ? true : undefined;
    },
    60_000,
  );
  // The requests, parsed; and the route set with both replicas.
  await eventually(
    'every access line as a request',
    async () => ((await readAll('http')).filter(isOurs).length >= NODES.length * REQUESTS ? true : undefined),
    60_000,
  );
  await eventually('a route set with both replicas', () => Promise.resolve(routes!.table.current().find((h) => h.host === HOST && h.upstreams.length === 2) ? true : undefined), 60_000);

  // The collectors stop (flushing what they hold): what is on the topics now is all there will be.
  for (const c of collectors.splice(0)) await c.stop();

  const logs = (await readAll('logs')).filter(isOurs);
  const lines = logs.map((e) => ({ node: e.node, line: e.line.toString('utf8'), ranOn: placed.get(e.container_id) }));
  for (const l of lines) assert.equal(l.node, l.ranOn, `"${l.line}" carries the node it ran on`);
  const numbered = lines.filter((l) => l.line.startsWith('line ')).map((l) => `${l.node}|${l.line}`);
  const expected = NODES.flatMap((n) => Array.from({ length: LINES }, (_, i) => `${n}|line ${n} ${i + 1}`));
  assert.deepEqual([...numbered].sort(), [...expected].sort(), 'every numbered line once, with its node');
  assert.equal(lines.length, NODES.length * (LINES + REQUESTS), 'no other line, none twice');
  for (const n of NODES) assert.equal(lines.filter((l) => l.node === n && l.line.includes(`"GET /${n}/`)).length, REQUESTS, `${n}: its access lines once`);

  const lifecycle = (await readAll('lifecycle')).filter(isOurs);
  for (const id of ids) {
    const own = lifecycle.filter((e) => e.container_id === id);
    assert.ok(own.some((e) => e.action === 'start'), `${placed.get(id)}: a start event`);
    for (const e of own) assert.equal(e.node, placed.get(id), `lifecycle ${e.action} of ${id.slice(0, 12)} carries its node`);
  }

  const stats = (await readAll('stats')).filter(isOurs);
  for (const id of ids) assert.ok(stats.some((s) => s.container_id === id), `stats of ${placed.get(id)}`);
  for (const s of stats) assert.equal(s.node, placed.get(s.container_id), 'a stats sample carries its node');

  const requests = (await readAll('http')).filter(isOurs);
  assert.equal(requests.length, NODES.length * REQUESTS, 'every access line once as a request');
  for (const n of NODES) {
    const own = requests.filter((r) => r.node === n);
    assert.equal(own.length, REQUESTS, `${n}: its requests`);
    for (const r of own) assert.ok(r.path.startsWith(`/${n}/`), `${n}: a request it served (${r.path})`);
  }

  // Autoscale: one signal for the app, counting both replicas and both nodes' requests.
  await eventually('autoscale has every request and both replicas', () => Promise.resolve(autoscale!.seen().http >= NODES.length * REQUESTS && autoscale!.replicas('acme/shop') === 2 ? true : undefined), 60_000);
  const signals = (await autoscale!.tick()).filter((s) => s.tenant === 'acme' && s.app === 'shop');
  assert.equal(signals.length, 1, 'one signal for the app, not one per node');
  assert.equal(signals[0]!.current_replicas, 2);
  assert.equal(signals[0]!.stable.requests, NODES.length * REQUESTS);
  assert.equal(signals[0]!.host, HOST);
  const published = await eventually('the signal on the autoscale topic', async () => {
    const got = (await readAll('autoscale')).filter((s) => s.tenant === 'acme' && s.app === 'shop');
    return got.length > 0 ? got : undefined;
  });
  assert.equal(published.length, 1, 'one signal on the topic');

  // Routes: the app's host has one route set, published by one processor, with an upstream per node.
  const sets: RouteSet[] = (await readAll('routes')).filter((s) => s.host === HOST);
  const last = sets.at(-1)!;
  assert.deepEqual(
    sets.map((s) => s.version),
    sets.map((_, i) => sets[0]!.version + i),
    'one sequence of versions',
  );
  assert.deepEqual(last.upstreams.map((u) => u.container_id).sort(), [...ids].sort(), 'both replicas, one per node');
  for (const u of last.upstreams) {
    const inspected = await nodes.find((n) => n.name === placed.get(u.container_id))!.docker.getContainer(u.container_id).inspect();
    const binding = inspected.NetworkSettings.Ports['80/tcp']?.[0];
    assert.deepEqual({ address: u.address, port: u.port }, { address: '127.0.0.1', port: Number(binding?.HostPort) }, `${placed.get(u.container_id)}: the port its engine published`);
    // Published by the engine of the other node too: the address is this machine's loopback, reachable from the load balancer here.
    const res = await get(u.port);
    assert.equal(res.status, 200, `${placed.get(u.container_id)} answers on ${u.address}:${u.port}`);
  }
});

test('usage per node: each node its own rows, summing to the app; a row from before usage had a node is counted once', async () => {
  const app = `tenant = 'acme' AND app = 'shop'`;
  const ids = [...placed.keys()];
  // Everything the first test saw is in ClickHouse: every line, every request, traffic of both replicas.
  await eventually(
    'the log center has both nodes\' rows',
    async () => {
      const [logs, reqs] = await Promise.all([
        ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('logs')} FINAL WHERE ${app}`),
        ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('http_requests')} FINAL WHERE ${app}`),
      ]);
      const traffic = await ch.query<{ container_id: string }>(`SELECT DISTINCT container_id FROM ${ch.table('traffic')} FINAL WHERE ${app}`);
      return Number(logs[0]!.n) === NODES.length * (LINES + REQUESTS) && Number(reqs[0]!.n) === NODES.length * REQUESTS && ids.every((id) => traffic.some((t) => t.container_id === id)) ? true : undefined;
    },
    60_000,
  );
  const logs = (await readAll('logs')).filter((e) => placed.has(e.container_id));
  const logBytes = (n: string) => logs.filter((e) => e.node === n).reduce((s, e) => s + e.original_length, 0);

  // What the usage processor wrote before usage had a node: one row for the app's hour (id without node; `node = ''` in the table).
  const hour = Math.floor(Math.min(...logs.map((e) => e.ts)) / HOUR) * HOUR;
  const legacyId = eventId('usage', 'acme', 'shop', 'hour', hour, 'log_bytes', '');
  const total = logBytes('node-a') + logBytes('node-b');
  await bus.publish('usage', [{ event: { event_id: legacyId, tenant: 'acme', app: 'shop', node: '', container_id: '', ts: hour, period: 'hour', meter: 'log_bytes', unit: 'byte', quantity: total, dimensions: {} } }]);
  await eventually('the old row stored', async () => ((await ch.query(`SELECT 1 FROM ${ch.table('usage')} FINAL WHERE event_id = {id:String}`, { id: legacyId })).length === 1 ? true : undefined));

  const usage = startUsage({ bus, ch, logger: ns.logger, registry: createRegistry(false), config: { intervalSeconds: 3600, lookbackHours: 1 } });
  await usage.runOnce();
  await usage.stop();

  type Row = { node: string; meter: string; q: number };
  const perNode = await eventually('usage rows per node, the old one 0', async () => {
    const rows = await ch.query<Row>(`SELECT toString(node) AS node, toString(meter) AS meter, sum(quantity) AS q FROM ${ch.table('usage')} FINAL WHERE ${app} GROUP BY node, meter ORDER BY node, meter`);
    const legacy = rows.find((r) => r.node === '' && r.meter === 'log_bytes');
    return legacy && Number(legacy.q) === 0 && NODES.every((n) => rows.some((r) => r.node === n && r.meter === 'container_seconds')) ? rows : undefined;
  });
  const q = (node: string, meter: string) => Number(perNode.find((r) => r.node === node && r.meter === meter)?.q ?? 0);
  for (const n of NODES) {
    assert.equal(q(n, 'log_bytes'), logBytes(n), `${n}: its log bytes`);
    assert.equal(q(n, 'requests'), REQUESTS, `${n}: its requests`);
    assert.ok(q(n, 'container_seconds') > 0, `${n}: its replica's seconds`);
  }
  assert.deepEqual(new Set(perNode.map((r) => r.node)), new Set(['', ...NODES]), 'rows of the two nodes (and the old row, at 0), none of the processor\'s node');
  const [sum] = await ch.query<{ q: number }>(`SELECT sum(quantity) AS q FROM ${ch.table('usage')} FINAL WHERE ${app} AND meter = 'log_bytes'`);
  assert.equal(Number(sum!.q), total, 'the app\'s log bytes once, not once more for the old row');
  const records = (await readAll('usage')).filter((r) => r.tenant === 'acme' && r.app === 'shop' && r.node !== '');
  assert.deepEqual(new Set(records.map((r) => r.node)), new Set(NODES), 'usage records name the node the usage happened on');
});

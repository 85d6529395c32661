import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { HttpRequest, LifecycleEvent, RouteSet, Upstream } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { ConfigError } from '../lib/config.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector, type Collector } from '../ingest/collector.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { loadRoutesConfig, type HealthPolicy } from '../processors/routes/config.js';
import { RouteTable, routeTarget, serverName, type TablePolicy } from '../processors/routes/table.js';
import { haproxyConfig, startLoadBalancer, startRouteApplier, type LoadBalancer } from '../processors/routes/haproxy.js';
import { upstreamServerName, type RouteApplier } from '../processors/routes/applier.js';
import { HaproxyRuntimeApi, inMaintenance, parseServersState } from '../processors/routes/runtime-api.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';
import { getWithHost } from './helpers/http.js';

// ---------------------------------------------------------------------------------
// The route table alone: plain functions over events, the time passed in.

const P = 'lm.';
const HEALTH: HealthPolicy = { errorRate: 0.5, minRequests: 5, windowMs: 10_000, probationMs: 1000, maxProbationMs: 8000 };
const POLICY: TablePolicy = { labelPrefix: P, wildcardAddress: '127.0.0.1', health: HEALTH };
const cid = (n: number) => `${n.toString(16).padStart(12, 'c')}${'0'.repeat(52)}`;

interface LifeOpts {
  ts?: number;
  host?: string;
  port?: number;
  tenant?: string;
  health?: string;
  signal?: string;
  actor?: string;
  ports?: LifecycleEvent['ports'];
}

function life(id: string, action: string, o: LifeOpts = {}): LifecycleEvent {
  const tenant = o.tenant ?? 'acme';
  return {
    event_id: `${id}-${action}-${o.ts ?? 0}`,
    tenant,
    app: 'shop',
    node: 'n1',
    container_id: id,
    container_name: id.slice(0, 6),
    ts: o.ts ?? 1000,
    action,
    actor: o.actor ?? 'docker',
    exit_code: null,
    health: o.health ?? null,
    image: BASE_IMAGE,
    labels: { [`${P}tenant`]: tenant, [`${P}app`]: 'shop', [`${P}lb-host`]: o.host ?? 'shop.test', [`${P}lb-port`]: '80' },
    networks: [],
    ports: o.ports ?? (o.port === undefined ? [] : [{ container_port: 80, protocol: 'tcp', host_ip: '127.0.0.1', host_port: o.port }]),
    limits: { nano_cpus: 0, memory_bytes: 0, pids: 0 },
    message: null,
    attributes: o.signal ? { signal: o.signal } : {},
  };
}

function req(id: string, status: number, ts: number, via?: 'haproxy'): HttpRequest {
  return {
    event_id: `h-${id}-${ts}-${status}`,
    tenant: via ? 'platform' : 'acme',
    app: via ? 'lb' : 'shop',
    node: 'n1',
    container_id: via ? 'ffffffffffff0000' : id,
    ts,
    source_event_id: '',
    format: via ?? 'nginx-combined',
    host: 'shop.test',
    method: 'GET',
    path: '/',
    status,
    bytes: 1,
    request_time_ms: 1,
    upstream_time_ms: 1,
    queue_time_ms: null,
    backend_queue: null,
    server_queue: null,
    backend: via ? 'be_slot_0' : null,
    server: via ? serverName(id) : null,
    client_ip: null,
  };
}

/** Flushes and acknowledges, as the processor does after Kafka acked. */
function publish(t: RouteTable, now = 0): RouteSet[] {
  const sets = t.flush(now);
  t.published(sets);
  return sets;
}

const ids = (sets: readonly { upstreams: Upstream[] }[]) => sets.map((s) => s.upstreams.map((u) => u.container_id));

describe('route table (pure)', () => {
  test('upstream address and port from published ports and labels', () => {
    const e = life(cid(1), 'start', {
      ports: [
        { container_port: 80, protocol: 'tcp', host_ip: '::', host_port: 40001 },
        { container_port: 80, protocol: 'tcp', host_ip: '0.0.0.0', host_port: 40000 },
        { container_port: 9090, protocol: 'tcp', host_ip: '127.0.0.1', host_port: 40002 },
      ],
    });
    assert.deepEqual(routeTarget(e, POLICY), { host: 'shop.test', address: '127.0.0.1', port: 40000 });
    const noLabel = { ...e, labels: { ...e.labels, [`${P}lb-port`]: '' } };
    assert.deepEqual(routeTarget(noLabel, POLICY), { host: 'shop.test', address: null, port: null, problem: 'several published ports and no lb-port label' });
    const single = { ...noLabel, ports: [{ container_port: 3000, protocol: 'tcp', host_ip: '10.1.2.3', host_port: 41000 }] };
    assert.deepEqual(routeTarget(single, POLICY), { host: 'shop.test', address: '10.1.2.3', port: 41000 });
    assert.deepEqual(routeTarget({ ...e, labels: {} }, POLICY), { host: null, problem: 'no_lb_host' });
    assert.deepEqual(routeTarget({ ...e, labels: { [`${P}lb-host`]: 'Shop.TEST.' } }, POLICY).host, 'shop.test');
    assert.deepEqual(routeTarget({ ...e, labels: { [`${P}lb-host`]: 'bad host;' } }, POLICY), { host: null, problem: 'bad_lb_host' });
  });

  test('start adds, die/kill/destroy remove, a reload signal does not, versions grow by one per change', () => {
    const t = new RouteTable(POLICY, 'n1');
    const [a, b] = [cid(1), cid(2)];
    t.applyLifecycle(life(a, 'create'));
    assert.deepEqual(publish(t), [], 'create alone routes nothing');
    t.applyLifecycle(life(a, 'start', { port: 40001 }));
    t.applyLifecycle(life(b, 'start', { port: 40002 }));
    let sets = publish(t);
    assert.deepEqual(ids(sets), [[a, b]]);
    assert.equal(sets[0]!.version, 1);
    assert.deepEqual(sets[0]!.upstreams[0], { container_id: a, address: '127.0.0.1', port: 40001 });
    t.applyLifecycle(life(b, 'kill', { signal: '1' }));
    assert.deepEqual(publish(t), [], 'SIGHUP is a reload, not an exit');
    t.applyLifecycle(life(b, 'kill', { signal: '15' }));
    sets = publish(t);
    assert.deepEqual(ids(sets), [[a]]);
    assert.equal(sets[0]!.version, 2);
    t.applyLifecycle(life(b, 'die'));
    t.applyLifecycle(life(b, 'stop'));
    t.applyLifecycle(life(b, 'destroy'));
    assert.deepEqual(publish(t), [], 'already out');
    t.applyLifecycle(life(a, 'die'));
    sets = publish(t);
    assert.deepEqual(ids(sets), [[]], 'an empty set is published too');
    assert.equal(sets[0]!.version, 3);
  });

  test('Docker health: unhealthy out until healthy; a drained replica stays out until it starts again', () => {
    const t = new RouteTable(POLICY, 'n1');
    const a = cid(1);
    t.applyLifecycle(life(a, 'start', { port: 40001 }));
    publish(t);
    t.applyLifecycle(life(a, 'health_status', { health: 'unhealthy', port: 40001 }));
    assert.deepEqual(ids(publish(t)), [[]]);
    t.applyLifecycle(life(a, 'health_status', { health: 'healthy', port: 40001 }));
    assert.deepEqual(ids(publish(t)), [[a]]);
    t.applyLifecycle(life(a, 'drain', { actor: 'scaler' }));
    const drained = publish(t);
    assert.deepEqual(ids(drained), [[]]);
    assert.match(drained[0]!.reason, /drain/);
    t.applyLifecycle(life(a, 'health_status', { health: 'healthy', port: 40001 }));
    assert.deepEqual(publish(t), [], 'healthy does not undo a drain');
    t.applyLifecycle(life(a, 'start', { port: 40005 }));
    const back = publish(t);
    assert.deepEqual(back[0]!.upstreams, [{ container_id: a, address: '127.0.0.1', port: 40005 }], 'a new start routes again, on its new port');
  });

  test('sustained 5xx: out after the threshold, back on probation after probationMs, out again for twice as long, reset by a healthy window', () => {
    const t = new RouteTable(POLICY, 'n1');
    const [a, b] = [cid(1), cid(2)];
    t.applyLifecycle(life(a, 'start', { port: 40001, ts: 1000 }));
    t.applyLifecycle(life(b, 'start', { port: 40002, ts: 1000 }));
    publish(t);
    // 4 errors are not yet "sustained" (minRequests 5); HAProxy's log names the server.
    for (let i = 0; i < 4; i++) t.applyHttp(req(a, 504, 2000 + i, 'haproxy'), 5000);
    assert.deepEqual(publish(t, 5000), []);
    t.applyHttp(req(a, 200, 2004), 5000);
    assert.deepEqual(ids(publish(t, 5000)), [[b]], '4/5 errors ≥ 50 %: out');
    assert.equal(t.member(a)!.http.state, 'ejected');
    assert.equal(t.nextDeadline(), 6000);
    // Late lines from before the ejection are not held against it again.
    for (let i = 0; i < 10; i++) t.applyHttp(req(a, 504, 4000 + i, 'haproxy'), 5100);
    t.tick(5999);
    assert.deepEqual(publish(t, 5999), []);
    t.tick(6000);
    assert.deepEqual(ids(publish(t, 6000)), [[a, b]], 'back on probation');
    for (let i = 0; i < 5; i++) t.applyHttp(req(a, 500, 6001 + i, 'haproxy'), 6100);
    assert.deepEqual(ids(publish(t, 6100)), [[b]], 'fails again: out again');
    assert.equal(t.member(a)!.http.strikes, 2);
    assert.equal(t.nextDeadline(), 6100 + 2000, 'twice probationMs');
    t.tick(8100);
    assert.deepEqual(ids(publish(t, 8100)), [[a, b]]);
    for (let i = 0; i < 5; i++) t.applyHttp(req(a, 200, 8200 + i), 8300);
    assert.deepEqual(t.member(a)!.http, { state: 'ok', since: 8100, until: 0, strikes: 0 }, 'healthy window on probation: strikes forgotten');
    assert.deepEqual(publish(t, 8300), []);
  });

  test('an ejected upstream seen answering well in its own access log comes back before its time', () => {
    const t = new RouteTable({ ...POLICY, health: { ...HEALTH, probationMs: 60_000 } }, 'n1');
    const a = cid(1);
    t.applyLifecycle(life(a, 'start', { port: 40001, ts: 0 }));
    publish(t);
    for (let i = 0; i < 5; i++) t.applyHttp(req(a, 503, 100 + i), 200);
    assert.deepEqual(ids(publish(t, 200)), [[]]);
    for (let i = 0; i < 5; i++) t.applyHttp(req(a, 200, 300 + i), 400);
    assert.deepEqual(ids(publish(t, 400)), [[a]]);
    assert.equal(t.member(a)!.http.state, 'probation');
  });

  test("another tenant's container cannot join a host", () => {
    const t = new RouteTable(POLICY, 'n1');
    t.applyLifecycle(life(cid(1), 'start', { port: 40001 }));
    t.applyLifecycle(life(cid(2), 'start', { port: 40002, tenant: 'mallory' }));
    assert.deepEqual(ids(publish(t)), [[cid(1)]]);
    assert.deepEqual(t.drainNotices().map((n) => n.kind), ['foreign_tenant']);
  });

  test('restart: versions continue from the topic; a snapshot keeps members that are out', () => {
    const t = new RouteTable(POLICY, 'n1');
    t.seed({ ...baseSet('shop.test', 41), upstreams: [{ container_id: cid(1), address: '127.0.0.1', port: 40001 }] });
    assert.deepEqual(publish(t), [], 'the seeded set is what the table has');
    t.applyLifecycle(life(cid(2), 'start', { port: 40002 }));
    for (let i = 0; i < 5; i++) t.applyHttp(req(cid(1), 502, 2000 + i), 3000);
    const sets = publish(t, 3000);
    assert.equal(sets[0]!.version, 42);
    assert.deepEqual(ids(sets), [[cid(2)]]);
    // Restart: snapshot + topic. The ejected member is known and comes back on time.
    const again = RouteTable.fromSnapshot(POLICY, 'n1', JSON.parse(JSON.stringify(t.snapshot())) as ReturnType<RouteTable['snapshot']>);
    again.seed(sets[0]!);
    assert.deepEqual(publish(again, 3000), []);
    again.tick(3000 + HEALTH.probationMs);
    const back = publish(again, 3000 + HEALTH.probationMs);
    assert.deepEqual(ids(back), [[cid(1), cid(2)]]);
    assert.equal(back[0]!.version, 43);
    // Without a snapshot the topic alone still gives the version floor.
    const fresh = new RouteTable(POLICY, 'n1');
    fresh.seed(back[0]!);
    fresh.applyLifecycle(life(cid(2), 'die'));
    assert.equal(publish(fresh)[0]!.version, 44);
  });

  const containers = [cid(1), cid(2), cid(3), cid(4)];
  const hostOf = (c: number) => (c < 2 ? 'a.test' : 'b.test');
  type Op =
    | { k: 'life'; c: number; action: string; health?: string; signal?: string; port?: number }
    | { k: 'http'; c: number; status: number; haproxy: boolean }
    | { k: 'time'; ms: number };
  const lifeOp = fc.oneof(
    fc.record({ k: fc.constant('life' as const), c: fc.nat(3), action: fc.constantFrom('start', 'restart', 'die', 'stop', 'destroy', 'pause', 'unpause', 'drain', 'create'), port: fc.integer({ min: 40000, max: 40003 }) }),
    fc.record({ k: fc.constant('life' as const), c: fc.nat(3), action: fc.constant('kill'), signal: fc.constantFrom('1', '9', '15', 'SIGHUP') }),
    fc.record({ k: fc.constant('life' as const), c: fc.nat(3), action: fc.constant('health_status'), health: fc.constantFrom('healthy', 'unhealthy'), port: fc.integer({ min: 40000, max: 40003 }) }),
  );
  const anyOp: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: lifeOp },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('http' as const), c: fc.nat(3), status: fc.constantFrom(200, 200, 404, 500, 504), haproxy: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('time' as const), ms: fc.integer({ min: 1, max: 3000 }) }) },
  );

  function run(t: RouteTable, ops: readonly Op[], clock: { now: number }, onSets: (sets: RouteSet[]) => void): void {
    for (const op of ops) {
      if (op.k === 'time') {
        clock.now += op.ms;
        t.tick(clock.now);
      } else if (op.k === 'http') {
        clock.now += 1;
        t.applyHttp(req(containers[op.c]!, op.status, clock.now, op.haproxy ? 'haproxy' : undefined), clock.now);
      } else {
        clock.now += 1;
        const opts: LifeOpts = { ts: clock.now, host: hostOf(op.c) };
        if (op.health) opts.health = op.health;
        if (op.signal) opts.signal = op.signal;
        if (op.port !== undefined) opts.port = op.port;
        t.applyLifecycle(life(containers[op.c]!, op.action, opts));
      }
      onSets(publish(t, clock.now));
    }
  }

  test('property: versions only grow, each published set is a change, and nothing stopped, paused, unhealthy, drained or ejected is routed', () => {
    fc.assert(
      fc.property(fc.array(anyOp, { maxLength: 120 }), (ops) => {
        const t = new RouteTable(POLICY, 'n1');
        const clock = { now: 10_000 };
        const last = new Map<string, RouteSet>();
        // Reference model of the lifecycle flags alone.
        const model = new Map<number, { running: boolean; paused: boolean; unhealthy: boolean; drained: boolean }>();
        const seen: Op[] = [];
        run(t, ops, clock, (sets) => {
          const op = seen.length < ops.length ? ops[seen.length]! : undefined;
          if (op?.k === 'life') {
            const cur = model.get(op.c) ?? { running: false, paused: false, unhealthy: false, drained: false };
            if (op.action === 'start' || op.action === 'restart') Object.assign(cur, { running: true, paused: false, unhealthy: false, drained: false });
            if (op.action === 'die' || op.action === 'stop' || (op.action === 'kill' && op.signal !== '1' && op.signal !== 'SIGHUP')) cur.running = false;
            if (op.action === 'pause') cur.paused = true;
            if (op.action === 'unpause') Object.assign(cur, { running: true, paused: false });
            if (op.action === 'drain') cur.drained = true;
            if (op.action === 'health_status') Object.assign(cur, { running: true, unhealthy: op.health === 'unhealthy' });
            if (op.action === 'destroy') model.delete(op.c);
            else model.set(op.c, cur);
          }
          seen.push(op!);
          for (const s of sets) {
            const prev = last.get(s.host);
            assert.equal(s.version, (prev?.version ?? 0) + 1, 'versions grow by one per publish');
            if (prev) assert.notDeepEqual(s.upstreams, prev.upstreams, 'a set is published only when it changed');
            last.set(s.host, s);
          }
          for (const h of t.current()) {
            assert.deepEqual(h.upstreams, t.live(h.host), 'nothing left unpublished');
            for (const u of h.upstreams) {
              const c = containers.indexOf(u.container_id);
              const s = model.get(c);
              assert.ok(s && s.running && !s.paused && !s.unhealthy && !s.drained, `${c} routed while ${JSON.stringify(s)}`);
              assert.notEqual(t.member(u.container_id)!.http.state, 'ejected');
            }
          }
          // Every container the model says is up and not ejected is routed.
          for (const [c, s] of model) {
            const m = t.member(containers[c]!);
            if (s.running && !s.paused && !s.unhealthy && !s.drained && m && m.http.state !== 'ejected' && m.port !== null) {
              assert.ok(t.live(hostOf(c)).some((u) => u.container_id === containers[c]), `${c} should be routed`);
            }
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  test('property: lifecycle events delivered again (a redelivered batch) publish nothing', () => {
    fc.assert(
      fc.property(fc.array(lifeOp, { minLength: 1, maxLength: 60 }), fc.nat(), (ops, cut) => {
        const t = new RouteTable(POLICY, 'n1');
        const clock = { now: 0 };
        run(t, ops, clock, () => undefined);
        const before = t.current();
        const replayed: RouteSet[] = [];
        run(t, ops.slice(cut % ops.length), { now: 0 }, (sets) => replayed.push(...sets));
        // Intermediate states of the replay may differ (published then), but the end state is the same.
        const after = new Map(t.current().map((h) => [h.host, h.upstreams] as const));
        for (const h of before) assert.deepEqual(after.get(h.host), h.upstreams);
        for (const s of replayed) assert.ok(s.version > (before.find((h) => h.host === s.host)?.version ?? 0));
      }),
      { numRuns: 300 },
    );
  });

  test('property: a snapshot taken at any point restores the same table', () => {
    fc.assert(
      fc.property(fc.array(anyOp, { maxLength: 80 }), (ops) => {
        const t = new RouteTable(POLICY, 'n1');
        const clock = { now: 10_000 };
        run(t, ops, clock, () => undefined);
        const copy = RouteTable.fromSnapshot(POLICY, 'n1', JSON.parse(JSON.stringify(t.snapshot())) as ReturnType<RouteTable['snapshot']>);
        assert.deepEqual(copy.current(), t.current());
        assert.deepEqual(copy.nextDeadline(), t.nextDeadline());
        assert.deepEqual(publish(copy, clock.now), []);
      }),
      { numRuns: 200 },
    );
  });

  test('config: defaults, LOGMETER_LB_BIND, every problem at once', () => {
    const d = loadRoutesConfig({}, {});
    assert.equal(d.lb.bind, '127.0.0.1:8080');
    assert.equal(d.health.errorRate, 0.5);
    assert.equal(loadRoutesConfig({}, { LOGMETER_LB_BIND: '127.0.0.1:9999' }).lb.bind, '127.0.0.1:9999');
    assert.throws(
      () => loadRoutesConfig({ health: { errorRate: 2 }, lb: { backendSlots: 0 }, nope: 1 }, { LOGMETER_LB_BIND: 'nowhere' }),
      (err: unknown) => err instanceof ConfigError && err.problems.length === 4 && err.problems.some((p) => p.startsWith('LOGMETER_LB_BIND')),
    );
  });

  test('HAProxy config and runtime API answers', () => {
    const cfg = haproxyConfig({ bind: '127.0.0.1:8080', adminSocket: '/d/admin.sock', mapFile: '/d/hosts.map', backendSlots: 3, connectTimeoutMs: 2000, idleTimeoutMs: 30_000, retries: 2 });
    assert.match(cfg, /stats socket \/d\/admin.sock mode 600 level admin expose-fd listeners/);
    assert.match(cfg, /log stdout format raw local0/);
    assert.match(cfg, /bind 127\.0\.0\.1:8080/);
    assert.match(cfg, /capture request header Host len/);
    assert.match(cfg, /use_backend %\[req\.hdr\(host\),field\(1,:\),lower,map\(\/d\/hosts\.map,be_default\)\]/);
    assert.equal(cfg.match(/^backend be_slot_\d+\n {2}balance roundrobin$/gm)?.length, 3);
    const state = parseServersState(
      '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n4 be_slot_0 1 abc 127.0.0.1 2 1 1 1 0 1 0 0 0 0 0 0 - 9 - 0 0 - - 0\n\n',
    );
    assert.deepEqual(state, [{ backend: 'be_slot_0', name: 'abc', address: '127.0.0.1', port: 9, opState: 2, adminState: 1 }]);
    assert.ok(inMaintenance(state[0]!));
    assert.equal(upstreamServerName({ container_id: cid(7), address: '127.0.0.1', port: 1 }), cid(7).slice(0, 12));
  });
});

function baseSet(host: string, version: number): RouteSet {
  return { event_id: `r-${host}-${version}`, tenant: 'acme', app: 'shop', node: 'n1', container_id: '', ts: 0, host, version, upstreams: [], reason: 'test' };
}

// ---------------------------------------------------------------------------------
// The whole path on the real services: Docker events → collector → Kafka lifecycle →
// route processor → routes topic → applier → HAProxy (in a container, host network);
// HAProxy's own log → collector → access-log parser → http topic → route processor.

describe('routes through a real HAProxy', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const registry = createRegistry(false);
  let bus: ReturnType<typeof busFor>;
  let collector: Collector | undefined;
  let parser: { stop(): Promise<void> } | undefined;
  let processor: RouteProcessor | undefined;
  let lb: LoadBalancer | undefined;
  let applier: RouteApplier | undefined;
  let lbPort = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  const applierConfig = { checkIntervalMs: 200, drainTimeoutMs: 1000, catchUpTimeoutMs: 20_000 };

  before(async () => {
    const codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
    collector = createCollector({
      cfg: collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600 }),
      node: 'test-node',
      stateDir: path.join(ns.dataDir, 'collector'),
      docker,
      bus,
      codec,
      logger: ns.logger,
      registry,
    });
    await collector.start();
    parser = await startAccessLogParser({ bus, logger: ns.logger, registry });
    processor = await startRouteProcessor({
      bus,
      logger: ns.logger,
      registry,
      node: 'test-node',
      stateDir: path.join(ns.dataDir, 'routes'),
      config: { labelPrefix: prefix, health: { errorRate: 0.5, minRequests: 5, windowMs: 5000, probationMs: 1500, maxProbationMs: 10_000 } },
    });
    lbPort = await freePort();
    lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 16 });
    applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, logger: ns.logger, registry, config: applierConfig });
    await applier.ready;
  });

  after(async () => {
    agent.destroy();
    for (const stop of [() => applier?.stop(), () => processor?.stop(), () => parser?.stop(), () => collector?.stop(), () => lb?.close()]) {
      await Promise.resolve()
        .then(stop)
        .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
    }
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });

  /** A GET through HAProxy with the given Host header. */
  const get = (host: string, pathname = '/', timeoutMs = 3000) => getWithHost({ port: lbPort, host, path: pathname, agent, timeoutMs });

  /**
   * busybox httpd on port 80, published on 127.0.0.1: `/` names the container,
   * `/cgi-bin/app` answers 504 while /tmp/fail exists, `/cgi-bin/heal` removes it.
   */
  async function startApp(host: string, opts: { fail?: boolean } = {}): Promise<Docker.Container> {
    const cgi = [
      '#!/bin/sh',
      'if [ -f /tmp/fail ]; then',
      "  printf 'HTTP/1.1 504 Gateway Timeout\\r\\nContent-Type: text/plain\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nfail\\n'",
      'else',
      "  printf 'Content-Type: text/plain\\r\\n\\r\\n'",
      '  hostname',
      'fi',
    ].join('\n');
    const heal = ['#!/bin/sh', 'rm -f /tmp/fail', "printf 'Content-Type: text/plain\\r\\n\\r\\nhealed\\n'"].join('\n');
    const c = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: [
        'sh',
        '-c',
        `printf '%s\\n' "$CGI" > /www/cgi-bin/app && printf '%s\\n' "$HEAL" > /www/cgi-bin/heal && chmod +x /www/cgi-bin/* && hostname > /www/index.html && ${opts.fail ? 'touch /tmp/fail && ' : ''}exec httpd -f -p 80 -h /www`,
      ],
      Env: [`CGI=${cgi}`, `HEAL=${heal}`],
      Labels: { 'logmeter.test': 'true', [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'web', [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    });
    await c.start();
    return c;
  }

  /** A GET straight to a container's published port, past HAProxy. (A detached `docker exec` would leave a socket open.) */
  async function direct(c: Docker.Container, pathname: string): Promise<number> {
    const port = Number((await c.inspect()).NetworkSettings.Ports['80/tcp']?.[0]?.HostPort);
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: pathname, agent: false, timeout: 3000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
  }

  const short = (c: Docker.Container) => c.id.slice(0, 12);
  const has = (c: Docker.Container) => (r: { upstreams: Upstream[] }) => r.upstreams.some((u) => u.container_id === c.id);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  interface Sample {
    start: number;
    end: number;
    status: number;
    body: string;
    error?: string;
  }

  /** Sequential requests in `loops` parallel loops until `until()` says stop (bounded in count and time). */
  function stream(host: string, pathname: string, until: () => boolean, o: { loops?: number; gapMs?: number; max?: number; maxMs?: number } = {}): Promise<Sample[]> {
    const out: Sample[] = [];
    const deadline = Date.now() + (o.maxMs ?? 60_000);
    const one = async () => {
      while (!until() && out.length < (o.max ?? 20_000) && Date.now() < deadline) {
        const start = Date.now();
        try {
          const r = await get(host, pathname, 2000);
          out.push({ start, end: Date.now(), ...r });
        } catch (err) {
          out.push({ start, end: Date.now(), status: 0, body: '', error: err instanceof Error ? err.message : String(err) });
        }
        if (o.gapMs) await sleep(o.gapMs);
      }
    };
    return Promise.all(Array.from({ length: o.loops ?? 1 }, one)).then(() => out);
  }

  /** HAProxy's routed servers (not in maintenance) per host, and the processor's published sets. */
  async function haproxyVsTable(): Promise<{ haproxy: Record<string, string[]>; table: Record<string, string[]>; strays: string[] }> {
    const api = new HaproxyRuntimeApi(lb!.adminSocket);
    const map = await api.showMap(lb!.mapFile);
    const servers = await api.serversState();
    const haproxy: Record<string, string[]> = {};
    const mappedBackends = new Set<string>();
    for (const [host, backend] of map) {
      if (host.includes(':')) continue; // the applier's restart marker
      mappedBackends.add(backend);
      const live = servers.filter((s) => s.backend === backend && !inMaintenance(s)).map((s) => `${s.name}@${s.address}:${s.port}`);
      if (live.length > 0) haproxy[host] = live.sort();
    }
    const strays = servers.filter((s) => !mappedBackends.has(s.backend) && !inMaintenance(s)).map((s) => `${s.backend}/${s.name}`);
    const table: Record<string, string[]> = {};
    for (const h of processor!.table.current()) {
      if (h.upstreams.length > 0) table[h.host] = h.upstreams.map((u) => `${upstreamServerName(u)}@${u.address}:${u.port}`).sort();
    }
    return { haproxy, table, strays };
  }

  async function converged(what: string, timeoutMs = 30_000): Promise<void> {
    let last: unknown;
    await eventually(
      what,
      async () => {
        const s = await haproxyVsTable();
        last = s;
        const sorted = (o: Record<string, string[]>) => JSON.stringify(Object.entries(o).sort(([x], [y]) => (x < y ? -1 : 1)));
        return sorted(s.haproxy) === sorted(s.table) && s.strays.length === 0 ? true : undefined;
      },
      timeoutMs,
    ).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}: ${JSON.stringify(last)}`);
    });
  }

  const startTests: Array<{ host: string; c: Docker.Container }> = [];

  test('a started container is reached through HAProxy by its Host; start → route live is measured', { timeout: 180_000 }, async (t) => {
    const timings: Array<{ c: Docker.Container; host: string; firstOk: number; published?: number; applied?: number }> = [];
    const published = new Map<string, number>();
    const offPublished = processor!.onPublished((sets) => {
      for (const s of sets) if (s.upstreams.length > 0 && !published.has(s.host)) published.set(s.host, s.ts);
    });
    const applied = new Map<string, number>();
    const offApplied = applier!.onApplied((r) => {
      if (r.upstreams.length > 0 && !applied.has(r.host)) applied.set(r.host, r.appliedAt);
    });
    try {
      // The first one is cold (consumers just joined, connections not warm): shown apart.
      for (let i = 0; i < 6; i++) {
        const host = `app-${ns.id}-${i}.test`;
        const c = await startApp(host);
        let r = await get(host);
        const end = Date.now() + 30_000;
        while (!(r.status === 200 && r.body === short(c))) {
          assert.ok(Date.now() < end, `no answer from ${short(c)} through HAProxy: last ${r.status} ${r.body}`);
          await sleep(2);
          r = await get(host);
        }
        timings.push({ c, host, firstOk: Date.now(), published: published.get(host), applied: applied.get(host) });
        startTests.push({ host, c });
      }
    } finally {
      offPublished();
      offApplied();
    }
    // The Docker start event's time, as the collector put it on the lifecycle topic.
    const starts = await collect(bus, 'lifecycle', (evs) => timings.every((x) => evs.some((e) => e.container_id === x.c.id && e.action === 'start')));
    const ms: number[] = [];
    for (const [i, x] of timings.entries()) {
      const ts = starts.find((e) => e.container_id === x.c.id && e.action === 'start')!.ts;
      if (i > 0) ms.push(x.firstOk - ts);
      const step = (v: number | undefined) => (v === undefined ? '?' : `+${v - ts} ms`);
      t.diagnostic(`start → first 200 through HAProxy: ${x.firstOk - ts} ms (route set published ${step(x.published)}, applied to HAProxy ${step(x.applied)})${i === 0 ? ' [cold: first after start-up]' : ''}`);
    }
    const sorted = [...ms].sort((a, b) => a - b);
    t.diagnostic(`start → route live, ${ms.length} warm starts: median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms`);
    // An unknown host is answered by HAProxy itself.
    assert.equal((await get(`nobody-${ns.id}.test`)).status, 503);
  });

  test('a container killed under a steady request stream: once the route update is applied, no request fails', { timeout: 180_000 }, async (t) => {
    const host = `kill-${ns.id}.test`;
    const a = await startApp(host);
    const b = await startApp(host);
    await applier!.waitFor(host, (r) => has(a)(r) && has(b)(r));
    await eventually('both containers answer', async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add((await get(host)).body);
      return seen.has(short(a)) && seen.has(short(b)) ? true : undefined;
    });
    let appliedAt = Number.POSITIVE_INFINITY;
    let stopAt = Number.POSITIVE_INFINITY;
    const running = stream(host, '/', () => Date.now() > stopAt, { loops: 2, max: 20_000, maxMs: 60_000 });
    await sleep(500);
    const killedAt = Date.now();
    await a.kill();
    const applied = await applier!.waitFor(host, (r) => !has(a)(r) && has(b)(r));
    appliedAt = applied.appliedAt;
    stopAt = appliedAt + 2000;
    const samples = await running;
    const afterApply = samples.filter((s) => s.start >= appliedAt);
    const failedAfter = afterApply.filter((s) => s.status !== 200 || s.body !== short(b));
    const failedBefore = samples.filter((s) => s.start < appliedAt && s.status !== 200);
    t.diagnostic(
      `kill → applied ${appliedAt - killedAt} ms (version ${applied.version}); ${samples.length} requests, ${afterApply.length} after the update, ${failedBefore.length} failed before it, ${failedAfter.length} after`,
    );
    assert.ok(afterApply.length >= 20, `only ${afterApply.length} requests after the update`);
    assert.deepEqual(failedAfter, [], 'no request fails once the route update is applied');
  });

  test('an upstream answering 504 is taken out of rotation and returns when it answers 200 again', { timeout: 180_000 }, async (t) => {
    const host = `flaky-${ns.id}.test`;
    const good = await startApp(host);
    const bad = await startApp(host, { fail: true });
    await applier!.waitFor(host, (r) => has(good)(r) && has(bad)(r));
    let stop = false;
    const running = stream(host, '/cgi-bin/app', () => stop, { gapMs: 10, max: 20_000, maxMs: 90_000 });
    try {
      const t0 = Date.now();
      const out = await applier!.waitFor(host, (r) => !has(bad)(r) && has(good)(r), 45_000);
      t.diagnostic(`504s → taken out and applied in ${out.appliedAt - t0} ms (version ${out.version})`);
      assert.equal(processor!.table.member(bad.id)!.http.state, 'ejected');
      assert.equal(await direct(bad, '/cgi-bin/heal'), 200);
      const back = await applier!.waitFor(host, (r) => has(bad)(r) && has(good)(r), 30_000);
      t.diagnostic(`back in rotation ${back.appliedAt - out.appliedAt} ms after it was taken out (version ${back.version})`);
      await eventually('a 200 from the recovered upstream', async () => ((await get(host, '/cgi-bin/app')).body === short(bad) ? true : undefined), 10_000);
      await sleep(3000);
      stop = true;
      const samples = await running;
      const whileOut = samples.filter((s) => s.start >= out.appliedAt && s.end < back.appliedAt);
      assert.ok(whileOut.length > 0);
      assert.deepEqual(whileOut.filter((s) => s.status !== 200 || s.body !== short(good)), [], 'only the healthy upstream answers while the other is out');
      const afterBack = samples.filter((s) => s.start >= back.appliedAt);
      assert.deepEqual(afterBack.filter((s) => s.status !== 200), [], 'no error once it is back');
      assert.ok(afterBack.some((s) => s.body === short(bad)), 'the recovered upstream serves again');
      assert.notEqual(processor!.table.member(bad.id)!.http.state, 'ejected');
      assert.ok(has(bad)(applier!.applied().get(host)!), 'still in rotation');
    } finally {
      stop = true;
      await running;
    }
  });

  test('the applier restarted while routes change, then HAProxy restarted: HAProxy ends equal to the route table', { timeout: 240_000 }, async (t) => {
    await converged('HAProxy equal to the table before the restart');
    await applier!.stop();
    applier = undefined;
    // Changes while no applier runs: a new host, a host emptied, a host grown.
    const newHost = `late-${ns.id}.test`;
    const n1 = await startApp(newHost);
    const emptied = startTests[0]!;
    await emptied.c.kill();
    const grown = startTests[1]!;
    const g2 = await startApp(grown.host);
    await eventually('the processor published the changes', async () => {
      const cur = new Map(processor!.table.current().map((h) => [h.host, h.upstreams] as const));
      return cur.get(newHost)?.length === 1 && cur.get(emptied.host)?.length === 0 && cur.get(grown.host)?.length === 2 ? true : undefined;
    });
    // A new applier, with one more change while it reads the topic.
    const starting = startRouteApplier({ bus, adminSocket: lb!.adminSocket, logger: ns.logger, registry, config: applierConfig });
    const n2 = await startApp(newHost);
    applier = await starting;
    await applier.ready;
    await applier.waitFor(newHost, (r) => has(n1)(r) && has(n2)(r));
    await converged('HAProxy equal to the table after the applier restart');
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add((await get(newHost)).body);
    assert.deepEqual([...answers].sort(), [short(n1), short(n2)].sort());
    assert.equal((await get(emptied.host)).status, 503);
    const g = new Set<string>();
    for (let i = 0; i < 6; i++) g.add((await get(grown.host)).body);
    assert.deepEqual([...g].sort(), [short(grown.c), short(g2)].sort());
    // Removed servers are deleted (not left in maintenance) and an emptied host's backend is given back.
    const api = new HaproxyRuntimeApi(lb!.adminSocket);
    await eventually('removed servers deleted, emptied host unmapped', async () => {
      const inMaint = (await api.serversState()).filter(inMaintenance);
      return inMaint.length === 0 && !(await api.showMap(lb!.mapFile)).has(emptied.host) ? true : undefined;
    });

    // HAProxy restarted: it comes back with no routes; the applier notices and restores them.
    const restartedAt = Date.now();
    await lb!.restart();
    await converged('HAProxy equal to the table after its restart');
    t.diagnostic(`HAProxy restart → routes restored in ${Date.now() - restartedAt} ms`);
    assert.equal((await get(newHost)).status, 200);
    assert.equal((await get(grown.host)).status, 200);
  });

  test('the route processor restarted without its snapshot continues versions from the routes topic', { timeout: 120_000 }, async () => {
    const { host } = startTests[2]!;
    const before = processor!.table.current().find((h) => h.host === host)!;
    await processor!.stop();
    processor = undefined;
    processor = await startRouteProcessor({
      bus,
      logger: ns.logger,
      registry,
      node: 'test-node',
      stateDir: path.join(ns.dataDir, 'routes-without-snapshot'),
      config: { labelPrefix: prefix },
    });
    const seeded = processor.table.current().find((h) => h.host === host)!;
    assert.equal(seeded.version, before.version);
    assert.deepEqual(seeded.upstreams, before.upstreams);
    const c = await startApp(host);
    const r = await applier!.waitFor(host, has(c));
    assert.equal(r.version, before.version + 1);
    assert.equal(r.upstreams.length, before.upstreams.length + 1);
  });
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

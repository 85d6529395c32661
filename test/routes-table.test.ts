/**
 * The route table alone (processors/routes/table.ts) and the routes config: plain
 * functions over events, the time passed in; no service.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { HttpRequest, LifecycleEvent, RouteSet, Upstream } from '../schemas/events.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { ConfigError } from '../lib/errors.js';
import { loadRoutesConfig, type HealthPolicy } from '../processors/routes/config.js';
import { RouteTable, routeTarget, serverName, type TablePolicy } from '../processors/routes/table.js';
import { routesSummary } from '../app/pipeline.js';

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
    const [a, b] = [cid(1), cid(2)];
    t.applyLifecycle(life(a, 'start', { port: 40001, ts: 0 }));
    t.applyLifecycle(life(b, 'start', { port: 40002, ts: 0 }));
    publish(t);
    for (let i = 0; i < 5; i++) t.applyHttp(req(a, 503, 100 + i), 200);
    assert.deepEqual(ids(publish(t, 200)), [[b]]);
    for (let i = 0; i < 5; i++) t.applyHttp(req(a, 200, 300 + i), 400);
    assert.deepEqual(ids(publish(t, 400)), [[a, b]]);
    assert.equal(t.member(a)!.http.state, 'probation');
  });

  test("a host's last upstream in rotation is never taken out for 5xx (a new app answering 502 while it starts); it is once another one serves", () => {
    const t = new RouteTable(POLICY, 'n1');
    const [a, b] = [cid(1), cid(2)];
    t.applyLifecycle(life(a, 'start', { port: 40001, ts: 1000 }));
    assert.deepEqual(ids(publish(t, 1000)), [[a]]);
    // Its app not listening yet: HAProxy answers 502 naming its server, ten times.
    for (let i = 0; i < 10; i++) t.applyHttp(req(a, 502, 1001 + i, 'haproxy'), 1100);
    assert.deepEqual(publish(t, 1100), [], 'still routed: out, it would only turn 502 into 503');
    assert.equal(t.member(a)!.http.state, 'ok');
    t.applyHttp(req(a, 200, 1020, 'haproxy'), 1100);
    assert.equal(t.member(a)!.http.state, 'ok');
    // A second upstream serves: the failing one goes out now.
    t.applyLifecycle(life(b, 'start', { port: 40002, ts: 1200 }));
    assert.deepEqual(ids(publish(t, 1200)), [[a, b]]);
    for (let i = 0; i < 12; i++) t.applyHttp(req(a, 502, 1300 + i, 'haproxy'), 1400);
    assert.deepEqual(ids(publish(t, 1400)), [[b]]);
    assert.equal(t.member(a)!.http.state, 'ejected');
    // b failing too, as the last one in rotation: it stays.
    for (let i = 0; i < 10; i++) t.applyHttp(req(b, 500, 1401 + i, 'haproxy'), 1500);
    assert.deepEqual(publish(t, 1500), []);
    assert.equal(t.member(b)!.http.state, 'ok');
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

  test('idle hosts: named after the grace (none running, nothing published), forgotten for good, back at version 1 when a container starts again', () => {
    const t = new RouteTable({ ...POLICY, emptyHostGraceMs: 1000 }, 'n1');
    const [a, b, c] = [cid(1), cid(2), cid(3)];
    t.applyLifecycle(life(a, 'start', { port: 40001, host: 'gone.test', ts: 100 }));
    t.applyLifecycle(life(b, 'start', { port: 40002, host: 'paused.test', ts: 100 }));
    t.applyLifecycle(life(c, 'start', { port: 40003, host: 'keep.test', ts: 100 }));
    publish(t, 100);
    assert.deepEqual(t.expired(100_000), [], 'every host has an upstream');
    t.applyLifecycle(life(a, 'die', { host: 'gone.test', ts: 5000 }));
    t.applyLifecycle(life(b, 'pause', { host: 'paused.test', ts: 5000 }));
    const empties = publish(t, 5000);
    assert.deepEqual(empties.map((s) => [s.host, s.upstreams.length]).sort(), [['gone.test', 0], ['paused.test', 0]]);
    assert.equal(t.nextDeadline(), 6000, 'the idle host is due when its grace is over');
    assert.deepEqual(t.expired(5999), [], 'within the grace');
    assert.deepEqual(t.expired(6000), ['gone.test'], 'a paused container keeps its host');
    // Not forgotten until the caller says the tombstone is acknowledged.
    assert.deepEqual(t.expired(6001), ['gone.test']);
    const kept = t.snapshot();
    t.forget(['gone.test']);
    assert.deepEqual(t.current().map((h) => h.host).sort(), ['keep.test', 'paused.test']);
    assert.equal(t.member(a), undefined, 'its stopped container is forgotten with it');
    assert.deepEqual(t.expired(1e9), [], 'paused.test: still a running (paused) container');
    // A snapshot older than the tombstone brings the host back; the tombstone read by the seed drops it again.
    const restored = RouteTable.fromSnapshot({ ...POLICY, emptyHostGraceMs: 1000 }, 'n1', JSON.parse(JSON.stringify(kept)) as typeof kept);
    assert.deepEqual(restored.current().find((h) => h.host === 'gone.test')?.version, 2);
    restored.forget(['gone.test']);
    assert.deepEqual(restored.current(), t.current());
    assert.equal(restored.member(a), undefined);
    // The app starts again on the same host: a new host, from version 1.
    t.applyLifecycle(life(cid(4), 'start', { port: 40004, host: 'gone.test', ts: 7000 }));
    const again = publish(t, 7000);
    assert.deepEqual(again.map((s) => [s.host, s.version, s.upstreams.length]), [['gone.test', 1, 1]]);
    // A host seen idle again starts a new grace; a container starting within it cancels it.
    t.applyLifecycle(life(cid(4), 'stop', { host: 'gone.test', ts: 8000 }));
    publish(t, 8000);
    t.applyLifecycle(life(cid(4), 'start', { port: 40004, host: 'gone.test', ts: 8500 }));
    publish(t, 8500);
    assert.deepEqual(t.expired(20_000), []);
    assert.equal(new RouteTable(POLICY, 'n1').expired(1e12).length, 0, 'no grace configured: never');
  });

  test('idle hosts: one known only from a container that never published a port is named after the grace too, counted from when it was first seen idle', () => {
    const t = new RouteTable({ ...POLICY, emptyHostGraceMs: 1000 }, 'n1');
    t.applyLifecycle(life(cid(1), 'create', { host: 'never.test' }));
    assert.deepEqual(publish(t, 0), []);
    assert.deepEqual(t.expired(50_000), [], 'first seen idle now');
    assert.deepEqual(t.expired(50_999), []);
    assert.deepEqual(t.expired(51_000), ['never.test']);
  });

  test('the routes line of the live summary: active hosts, the rest counted', () => {
    const h = (host: string, n: number) => ({ host, version: 3, upstreams: Array.from({ length: n }, () => ({})) });
    assert.equal(routesSummary([]), 'routes: none yet');
    assert.equal(routesSummary([h('a.test', 2), h('b.test', 0), h('c.test', 0)]), 'routes: a.test v3 2 upstream(s) (+2 without upstreams)');
    assert.equal(routesSummary([h('b.test', 0)]), 'routes: no active host (+1 without upstreams)');
    const many = Array.from({ length: 12 }, (_, i) => h(`h${i}.test`, 1));
    assert.equal(routesSummary(many), `routes: ${many.slice(0, 10).map((x) => `${x.host} v3 1 upstream(s)`).join(', ')}, 2 more active`);
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
    assert.equal(d.emptyHostGraceSeconds, 600);
    assert.equal(loadRoutesConfig({}, { LOGMETER_LB_BIND: '127.0.0.1:9999' }).lb.bind, '127.0.0.1:9999');
    assert.throws(
      () => loadRoutesConfig({ health: { errorRate: 2 }, lb: { backendSlots: 0 }, nope: 1 }, { LOGMETER_LB_BIND: 'nowhere' }),
      (err: unknown) => err instanceof ConfigError && err.problems.length === 4 && err.problems.some((p) => p.startsWith('LOGMETER_LB_BIND')),
    );
  });
});

function baseSet(host: string, version: number): RouteSet {
  return { event_id: `r-${host}-${version}`, tenant: 'acme', app: 'shop', node: 'n1', container_id: '', ts: 0, host, version, upstreams: [], reason: 'test' };
}

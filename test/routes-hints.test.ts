/**
 * Start hints as plain logic: the route table's preview of a start (processors/routes/
 * table.ts `preview`) and the applier's book of hints (processors/routes/hints.ts). No
 * service; the real path is test/routes-start-hints.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type Docker from 'dockerode';
import type { LifecycleEvent, RouteSet, Upstream } from '../schemas/events.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { RouteTable, type TablePolicy } from '../processors/routes/table.js';
import { HintBook, decided, type HintContext, type HintOutcome, type RouteHint } from '../processors/routes/hints.js';
import { startFactsAtCreate } from '../processors/routes/start-hints.js';

const P = 'lm.';
const POLICY: TablePolicy = { labelPrefix: P, wildcardAddress: '127.0.0.1', health: { errorRate: 0.5, minRequests: 5, windowMs: 10_000, probationMs: 1000, maxProbationMs: 8000 } };
const cid = (n: number) => `${n.toString(16).padStart(12, 'c')}${'0'.repeat(52)}`;

function life(id: string, action: string, o: { ts: number; host: string; tenant: string; port?: number }): LifecycleEvent {
  return {
    event_id: `${id}-${action}-${o.ts}`,
    tenant: o.tenant,
    app: 'shop',
    node: 'n1',
    container_id: id,
    container_name: id.slice(0, 6),
    ts: o.ts,
    action,
    actor: 'docker',
    exit_code: null,
    health: null,
    image: BASE_IMAGE,
    labels: { [`${P}tenant`]: o.tenant, [`${P}app`]: 'shop', [`${P}lb-host`]: o.host, [`${P}lb-port`]: '80' },
    networks: [],
    ports: o.port === undefined ? [] : [{ container_port: 80, protocol: 'tcp', host_ip: '127.0.0.1', host_port: o.port }],
    limits: { nano_cpus: 0, memory_bytes: 0, pids: 0 },
    message: null,
    attributes: {},
  };
}

describe('RouteTable.preview', () => {
  // A container's labels never change: its tenant and lb-host follow from its number (containers 4-7 are another tenant's, on the same hosts).
  type Op = { c: number; action: string; port: number | undefined; publish: boolean };
  const op: fc.Arbitrary<Op> = fc.record({
    c: fc.nat(7),
    action: fc.constantFrom('start', 'start', 'restart', 'die', 'stop', 'destroy', 'pause', 'unpause', 'drain', 'create'),
    port: fc.option(fc.integer({ min: 40000, max: 40003 }), { nil: undefined }),
    publish: fc.boolean(),
  });
  const hostOf = (c: number) => ['a.test', 'b.test', 'not a host!'][c % 3]!;
  const event = (o: Op, ts: number) => life(cid(o.c), o.action, { ts, host: hostOf(o.c), tenant: o.c < 4 ? 'acme' : 'evil', ...(o.port === undefined ? {} : { port: o.port }) });

  test('property: a start is previewed exactly when applying it puts the container in its host set (with that upstream and the last published version), unless the table applied a later event of it; the table is not changed', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), op, fc.boolean(), (ops, last, late) => {
        const t = new RouteTable(POLICY, 'n1');
        let ts = 1000;
        for (const o of ops) {
          t.applyLifecycle(event(o, ++ts));
          if (o.publish) t.published(t.flush(ts));
        }
        // A start seen late carries a time before events the table has applied.
        const start = event({ ...last, action: 'start' }, late ? 1000 : ++ts);
        const before = JSON.stringify(t.snapshot());
        const p = t.preview(start);
        assert.equal(JSON.stringify(t.snapshot()), before, 'preview changed the table');
        const seen = t.member(start.container_id)?.seen;
        const stale = seen !== undefined && seen > start.ts;
        const host = t.member(start.container_id)?.host ?? start.labels[`${P}lb-host`]!;
        const version = t.version(host) ?? 0;
        t.applyLifecycle(start);
        const live = stale ? undefined : t.live(host).find((u) => u.container_id === start.container_id);
        assert.deepEqual(p ? { host: p.host, upstream: p.upstream, version: p.version } : undefined, live ? { host, upstream: live, version } : undefined);
        if (p) assert.equal(p.tenant, start.tenant);
      }),
      { numRuns: 400 },
    );
  });

  test("another tenant's container on a claimed host is not previewed; a non-start is not previewed", () => {
    const t = new RouteTable(POLICY, 'n1');
    t.applyLifecycle(life(cid(1), 'start', { ts: 1, host: 'a.test', tenant: 'acme', port: 40000 }));
    t.published(t.flush(1));
    assert.equal(t.preview(life(cid(2), 'start', { ts: 2, host: 'a.test', tenant: 'evil', port: 40001 })), undefined);
    assert.equal(t.preview(life(cid(2), 'restart', { ts: 2, host: 'a.test', tenant: 'acme', port: 40001 })), undefined);
    assert.equal(t.preview(life(cid(2), 'start', { ts: 2, host: 'a.test', tenant: 'acme' })), undefined, 'no published port');
    // A start seen late, after the table had its die, brings nothing back; a start after a create does.
    t.applyLifecycle(life(cid(1), 'die', { ts: 3, host: 'a.test', tenant: 'acme' }));
    assert.equal(t.preview(life(cid(1), 'start', { ts: 1, host: 'a.test', tenant: 'acme', port: 40000 })), undefined);
    t.applyLifecycle(life(cid(3), 'create', { ts: 4, host: 'a.test', tenant: 'acme' }));
    assert.equal(t.preview(life(cid(3), 'start', { ts: 5, host: 'a.test', tenant: 'acme', port: 40003 }))?.upstream.port, 40003);
    assert.deepEqual(t.preview(life(cid(2), 'start', { ts: 2, host: 'a.test', tenant: 'acme', port: 40001 })), {
      host: 'a.test',
      tenant: 'acme',
      app: 'shop',
      upstream: { container_id: cid(2), address: '127.0.0.1', port: 40001 },
      version: 1,
    });
  });
});

describe('HintBook', () => {
  const up = (n: number, port = 40000 + n): Upstream => ({ container_id: cid(n), address: '127.0.0.1', port });
  const set = (host: string, version: number, upstreams: Upstream[]): RouteSet => ({ event_id: `${host}-${version}`, tenant: 'acme', app: 'shop', node: 'n1', container_id: '', ts: 0, host, version, upstreams, reason: '' });
  const hint = (host: string, n: number, version = 0): RouteHint => ({ host, upstream: up(n), version });
  function book(confirmMs = 1000) {
    const counts: Record<string, number> = {};
    const b = new HintBook(confirmMs, (o: HintOutcome, n = 1) => void (counts[o] = (counts[o] ?? 0) + n));
    return { b, counts };
  }
  function ctx(o: Partial<HintContext> = {}): HintContext {
    return { desired: new Map(), mapped: new Map(), applied: () => [], draining: new Map(), slots: ['be_slot_0', 'be_slot_1', 'be_slot_2'], strays: new Set(), mapFile: '/m/hosts.map', ...o };
  }
  const lines = (plans: ReturnType<HintBook['plan']>) => plans.map((p) => p.steps.map((s) => s.line));

  test('decided: a newer set, or one that lists the upstream, decides', () => {
    const desired = new Map([['a.test', set('a.test', 3, [up(1)])]]);
    assert.equal(decided(hint('a.test', 1, 3), desired), true);
    assert.equal(decided(hint('a.test', 2, 2), desired), true);
    assert.equal(decided(hint('a.test', 2, 3), desired), false);
    assert.equal(decided(hint('b.test', 2, 0), desired), false);
  });

  test('a new host: add, enable and its map entry in one round trip, in a free slot; a mapped host: no map entry', () => {
    const { b } = book();
    b.add(hint('new.test', 1));
    b.add(hint('old.test', 2, 4));
    const plans = b.plan(ctx({ mapped: new Map([['old.test', 'be_slot_0']]), desired: new Map([['old.test', set('old.test', 4, [up(3)])]]) }));
    assert.deepEqual(lines(plans), [
      [`add server be_slot_1/${cid(1).slice(0, 12)} 127.0.0.1:40001`, `enable server be_slot_1/${cid(1).slice(0, 12)}`, 'add map /m/hosts.map new.test be_slot_1'],
      [`add server be_slot_0/${cid(2).slice(0, 12)} 127.0.0.1:40002`, `enable server be_slot_0/${cid(2).slice(0, 12)}`],
    ]);
    assert.equal(b.pending, false);
  });

  test('two new hosts in one pass get two slots', () => {
    const { b } = book();
    b.add(hint('x.test', 1));
    b.add(hint('y.test', 2));
    assert.deepEqual(
      b.plan(ctx()).map((p) => [p.host, p.backend]),
      [
        ['x.test', 'be_slot_0'],
        ['y.test', 'be_slot_1'],
      ],
    );
  });

  test('left to the set: a server of that name applied, draining or hinted, a slot to read first, no free slot, a decided hint', () => {
    const { b, counts } = book();
    const name = cid(1).slice(0, 12);
    b.add(hint('a.test', 1));
    assert.deepEqual(b.plan(ctx({ mapped: new Map([['a.test', 'be_slot_0']]), applied: () => [up(1)] })), []);
    b.add(hint('a.test', 1));
    assert.deepEqual(b.plan(ctx({ mapped: new Map([['a.test', 'be_slot_0']]), draining: new Map([[`be_slot_0/${name}`, { backend: 'be_slot_0' }]]) })), []);
    b.add(hint('n.test', 1));
    assert.deepEqual(b.plan(ctx({ slots: ['be_slot_0'], strays: new Set(['be_slot_0']) })), [], 'the only slot may hold servers: read first, so left to the set');
    b.add(hint('n.test', 1));
    assert.deepEqual(b.plan(ctx({ slots: ['be_slot_0'], mapped: new Map([['z.test', 'be_slot_0']]) })), []);
    b.add(hint('a.test', 1, 1));
    assert.deepEqual(b.plan(ctx({ desired: new Map([['a.test', set('a.test', 2, [])]]) })), []);
    // Hinted already and not settled: a second hint of the same server waits for the set.
    b.add(hint('h.test', 5));
    const [p] = b.plan(ctx());
    b.note(p!, 0);
    b.add(hint('h.test', 5));
    assert.deepEqual(b.plan(ctx({ mapped: new Map([['h.test', p!.backend]]) })), []);
    assert.equal(counts.skipped, 6);
  });

  test('settled by the next reconcile of the host: confirmed when the set lists it, expired otherwise; overdue after confirmMs; retracted when its container ends', () => {
    const { b, counts } = book(1000);
    b.add(hint('a.test', 1));
    b.add(hint('b.test', 2));
    const plans = b.plan(ctx());
    for (const p of plans) b.note(p, 5000);
    assert.equal(b.unsettled, 2);
    assert.equal(b.nextDeadline(), 6000);
    assert.deepEqual(b.overdue(5999), []);
    b.settle('a.test', set('a.test', 1, [up(1)]));
    assert.deepEqual(counts, { confirmed: 1 });
    // Past the deadline: named once and settled as expired (a reconcile that cannot run does not bring it back).
    assert.deepEqual(b.overdue(6000), ['b.test']);
    assert.deepEqual(b.overdue(7000), []);
    assert.deepEqual(counts, { confirmed: 1, expired: 1 });
    assert.equal(b.unsettled, 0);
    assert.equal(b.nextDeadline(), Infinity);
    b.add(hint('c.test', 4));
    for (const p of b.plan(ctx())) b.note(p, 0);
    b.settle('c.test', set('c.test', 1, [up(3)]));
    assert.deepEqual(counts, { confirmed: 1, expired: 2 });
    // Its container ended before a set came: retracted at once, named for a reconcile, once.
    b.add(hint('d.test', 6));
    b.add(hint('d.test', 7));
    for (const p of b.plan(ctx())) b.note(p, 0);
    assert.deepEqual(b.retract(cid(6)), ['d.test']);
    assert.deepEqual(b.retract(cid(6)), []);
    assert.equal(b.unsettled, 1);
    assert.deepEqual(counts, { confirmed: 1, expired: 2, retracted: 1 });
  });
});

describe('startFactsAtCreate', () => {
  const info = (bindings: Record<string, Array<{ HostIp?: string; HostPort?: string }> | null>) =>
    ({
      Id: 'c'.repeat(64),
      Name: '/web-1',
      Image: 'sha256:x',
      Config: { Image: BASE_IMAGE, Labels: { 'logmeter.tenant': 'acme' }, Tty: false },
      State: { Running: false, Pid: 0, StartedAt: '0001-01-01T00:00:00Z', FinishedAt: '0001-01-01T00:00:00Z' },
      HostConfig: { PortBindings: bindings },
      NetworkSettings: { Ports: {}, Networks: {} },
    }) as unknown as Docker.ContainerInspectInfo;

  test('explicit host address and port: the facts the start will have, running', () => {
    const f = startFactsAtCreate(info({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '18080' }], '53/udp': [{ HostIp: '10.0.0.2', HostPort: '5353' }] }));
    assert.ok(f);
    assert.equal(f.running, true);
    assert.deepEqual(f.labels, { 'logmeter.tenant': 'acme' });
    assert.deepEqual(f.ports, [
      { container_port: 80, protocol: 'tcp', host_ip: '127.0.0.1', host_port: 18080 },
      { container_port: 53, protocol: 'udp', host_ip: '10.0.0.2', host_port: 5353 },
    ]);
  });

  test('anything Docker decides only at the start: none (the start is inspected)', () => {
    assert.equal(startFactsAtCreate(info({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] })), undefined, 'ephemeral port');
    assert.equal(startFactsAtCreate(info({ '80/tcp': [{ HostIp: '', HostPort: '8080' }] })), undefined, "the daemon's default address");
    assert.equal(startFactsAtCreate(info({ '80/tcp': [{ HostPort: '8080' }] })), undefined, 'no address');
    assert.equal(startFactsAtCreate(info({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }], '81/tcp': [{ HostIp: '127.0.0.1', HostPort: '0' }] })), undefined, 'one binding of several not fixed');
    assert.equal(startFactsAtCreate(info({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '70000' }] })), undefined, 'not a port');
    assert.equal(startFactsAtCreate(info({})), undefined, 'nothing published');
    assert.equal(startFactsAtCreate(info({ '80/tcp': null })), undefined, 'an exposed port with no binding');
  });
});

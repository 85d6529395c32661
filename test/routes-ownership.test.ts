/**
 * processors/routes/ownership.ts without Kafka: who publishes a host across joins and
 * rebalances, the read-back of a gained partition, another instance's sets, the lifecycle
 * catch-up, the instance name file, and the table's adopt().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LifecycleEvent, RouteSet } from '../schemas/events.js';
import { CatchUp, Ownership, SentSets, instanceName, routeGroups, takeOverPlan } from '../processors/routes/ownership.js';
import { RouteTable } from '../processors/routes/table.js';
import { loadRoutesConfig } from '../processors/routes/config.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

/** Hosts `p<N>.test` are on partition N. */
const partitionOf = (host: string) => Number(/^p(\d+)/.exec(host)![1]);
const set = (host: string, version: number, ids: string[] = []): RouteSet => ({
  event_id: `routes-${host}-${version}`,
  tenant: 'acme',
  app: 'web',
  node: 'n',
  container_id: '',
  ts: 1000 + version,
  host,
  version,
  upstreams: ids.map((container_id, i) => ({ container_id, address: '127.0.0.1', port: 30_000 + i })),
  reason: 'test',
});

test('nothing is published before the partition is read back; a rebalance stops everything until the join', () => {
  const o = new Ownership(partitionOf);
  assert.equal(o.owns('p0.test'), false);
  assert.equal(o.othersOwn('p1.test'), false, 'before the first join no host is known to be another one\'s');
  o.revoked([]);
  const done = o.assigned([
    { partition: 0, start: 0n, end: 3n },
    { partition: 1, start: 5n, end: 5n },
  ]);
  assert.deepEqual(done.map((r) => r.partition), [1], 'an empty partition is read back at once');
  assert.equal(o.owns('p0.test'), false, 'still reading back');
  assert.equal(o.othersOwn('p0.test'), false);
  assert.equal(o.othersOwn('p2.test'), true);
  assert.equal(o.complete(done[0]!), true);
  assert.equal(o.owns('p1.test'), true);

  assert.equal(o.read(0, 'p0.test', set('p0.test', 1)), 'reading');
  assert.equal(o.committed(0, 2n), undefined, 'not at its end yet');
  o.read(0, 'p0.test', set('p0.test', 2));
  o.read(0, 'p0b.test', null);
  const r = o.committed(0, 3n)!;
  assert.deepEqual([...r.seen.keys()], ['p0.test', 'p0b.test']);
  assert.equal(r.seen.get('p0.test')!.version, 2);

  o.rebalance();
  assert.equal(o.owns('p1.test'), false, 'a rebalance stops at once');
  assert.equal(o.othersOwn('p2.test'), false, 'nor is anything known to be another one\'s');
  o.revoked([0]);
  assert.equal(o.complete(r), false, 'a read-back of a revoked partition is not taken');
  assert.equal(o.owns('p0.test'), false);
  assert.equal(o.owns('p1.test'), true, 'a partition kept is published again after the join');
  assert.equal(o.read(1, 'p1.test', set('p1.test', 4)), 'owned');
  assert.equal(o.read(3, 'p3.test', set('p3.test', 4)), 'other');
  o.close();
  assert.equal(o.owns('p1.test'), false, 'a stopping instance publishes nothing');
  assert.deepEqual(o.view(), { owned: [1], reading: [], rebalancing: false, closed: true });
});

test('a read-back continues each host from the topic: sets adopted, a tombstone or nothing from 0 (the host is not forgotten)', () => {
  const r = { partition: 0, end: 9n, seen: new Map<string, RouteSet | null>([['p0a.test', set('p0a.test', 7, ['c1'])], ['p0b.test', null]]) };
  const plan = takeOverPlan(r, ['p0a.test', 'p0b.test', 'p0c.test', 'p1.test'], partitionOf);
  assert.deepEqual(plan, [{ host: 'p0a.test', adopt: r.seen.get('p0a.test') }, { host: 'p0b.test', adopt: null }, { host: 'p0c.test', adopt: null }]);
});

test('adopt(): the next version follows the topic, members stay as lifecycle made them', () => {
  const routes = loadRoutesConfig({}, {});
  const t = new RouteTable({ labelPrefix: 'logmeter.', wildcardAddress: '127.0.0.1', health: routes.health }, 'n');
  const start: LifecycleEvent = { ...SAMPLE_EVENTS.lifecycle, action: 'start', container_id: 'c1aaaaaaaaaaaaaa', identity: { log_format: 'nginx-combined', lb_host: 'p0.test', lb_port: 80, size: 'small' } };
  t.applyLifecycle(start);
  const mine = t.flush(1)[0]!;
  assert.equal(mine.version, 1);
  // Another instance had published it up to version 5 with another upstream.
  t.adopt('p0.test', set('p0.test', 5, ['zz']));
  assert.equal(t.version('p0.test'), 5);
  const next = t.flush(2);
  assert.equal(next.length, 1);
  assert.equal(next[0]!.version, 6);
  assert.deepEqual(next[0]!.upstreams.map((u) => u.container_id), ['c1aaaaaaaaaaaaaa'], 'the live set, not the adopted one');
  t.published(next);
  t.adopt('p0.test', set('p0.test', 6, ['c1aaaaaaaaaaaaaa']));
  assert.deepEqual(t.flush(3).map((s) => s.upstreams.length), [1], 'adopted with other ports: published again');
  t.adopt('p0.test', null);
  assert.equal(t.version('p0.test'), 0, 'nothing on the topic: from 0');
  assert.equal(t.version('nowhere.test'), undefined);
  t.adopt('nowhere.test', null);
  assert.equal(t.version('nowhere.test'), undefined, 'a host neither known nor on the topic stays unknown');
  assert.deepEqual(t.flush(4, () => false), [], 'only the hosts `mine` accepts');
});

test("another instance's sets are told from this one's", () => {
  const sent = new SentSets(2);
  const a = set('p0.test', 1);
  const b = set('p0.test', 2);
  sent.add([a, b]);
  assert.equal(sent.ours({ ...a }), true);
  assert.equal(sent.ours({ ...a }), false, 'each is recognised once');
  assert.equal(sent.ours({ ...b, node: 'other' }), false);
  sent.add([set('p1.test', 1), set('p2.test', 1)]);
  assert.equal(sent.ours(b), false, 'the oldest dropped past the bound');
});

test('lifecycle caught up: every partition committed to where it ended at start', () => {
  const c = new CatchUp(
    [
      { partition: 0, low: '0', high: '10' },
      { partition: 1, low: '4', high: '4' },
      { partition: 2, low: '0', high: '7' },
      { partition: 3, low: '2', high: '9' },
    ],
    [
      { partition: 0, offset: '-1' },
      { partition: 2, offset: '7' },
      { partition: 3, offset: '5' },
    ],
  );
  assert.deepEqual(c.left(), { 0: '10', 3: '9' });
  c.committed(0, 10n);
  assert.equal(c.done(), false);
  c.committed(3, 8n);
  assert.equal(c.done(), false);
  c.committed(3, 9n);
  assert.equal(c.done(), true);
});

test('the instance name is made once and kept; groups follow it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'routes-instance-'));
  try {
    const name = instanceName(dir);
    assert.match(name, /^[a-z0-9][a-z0-9_-]*-[0-9a-f]{6}$/);
    assert.equal(instanceName(dir), name);
    assert.equal(readFileSync(path.join(dir, 'instance'), 'utf8'), `${name}\n`);
    assert.deepEqual(routeGroups('routes', name), { owners: 'routes', lifecycle: `routes.lifecycle.${name}`, http: `routes-http.${name}` });
    writeFileSync(path.join(dir, 'instance'), '../x');
    assert.throws(() => instanceName(dir), /not an instance name/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Tenant fairness in the collector, without services: the sender's queue order
 * (ingest/fair-queue.ts), the node budget's shares (ingest/ratelimit.ts) and the
 * per-tenant pause of the readers (Sender.fullFor). No timing: a clock is injected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FairQueue } from '../ingest/fair-queue.js';
import { NodeBudget, TenantLimiter, maxMinShares } from '../ingest/ratelimit.js';
import { EVENT_OVERHEAD_BYTES, Sender, type Outgoing } from '../ingest/sender.js';
import { collectorConfigSchema, nodeBudget } from '../ingest/config.js';
import { createLogger } from '../lib/logger.js';

const item = (tenant: string | undefined, n: number, bytes = 100) => ({ tenant, n, value: Buffer.alloc(bytes) });

test('a quiet tenant queued behind a backlog of 10,000 loud events goes out in the next batch', () => {
  const q = new FairQueue<ReturnType<typeof item>>(1024);
  for (let i = 0; i < 10_000; i++) q.push(item('loud', i));
  q.push(item('quiet', 0));
  assert.equal(q.length, 10_001);
  assert.equal(q.bytes, 10_001 * 100);
  const first = q.take(4096);
  assert.deepEqual(first.filter((x) => x.tenant === 'quiet').map((x) => x.n), [0]);
  assert.equal(first.reduce((a, x) => a + x.value.length, 0), 4000, 'the batch is still filled with the backlog');
  // The backlog keeps its order and nothing is lost.
  const loud = first.filter((x) => x.tenant === 'loud').map((x) => x.n);
  for (let b = q.take(4096); b.length > 0; b = q.take(4096)) loud.push(...b.map((x) => x.n));
  assert.deepEqual(loud, Array.from({ length: 10_000 }, (_, i) => i));
  assert.equal(q.length, 0);
  assert.equal(q.bytes, 0);
  assert.equal(q.activeLanes, 0);
});

test('five loud tenants and the node\'s own events: every lane with something queued is in every batch', () => {
  const q = new FairQueue<ReturnType<typeof item>>(1000);
  for (const t of ['l1', 'l2', 'l3', 'l4', 'l5']) for (let i = 0; i < 2000; i++) q.push(item(t, i));
  q.push(item(undefined, 0));
  q.push(item('quiet', 0));
  // One round: five quanta and the two single events.
  const b = q.take(5 * 1000 + 200);
  assert.deepEqual(new Set(b.map((x) => x.tenant)), new Set(['l1', 'l2', 'l3', 'l4', 'l5', undefined, 'quiet']));
  // Equal quanta: each loud tenant sent the same number of bytes.
  const per = (t: string) => b.filter((x) => x.tenant === t).length;
  assert.deepEqual(['l1', 'l2', 'l3', 'l4', 'l5'].map(per), [10, 10, 10, 10, 10]);
});

test('a line longer than the batch still goes out, alone', () => {
  const q = new FairQueue<ReturnType<typeof item>>(1024);
  q.push(item('big', 0, 100_000));
  q.push(item('big', 1, 10));
  assert.deepEqual(q.take(4096).map((x) => x.n), [0]);
  assert.deepEqual(q.take(4096).map((x) => x.n), [1]);
});

test('property: per-tenant order kept, nothing lost or repeated, every active lane served in every large enough batch', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.record({ push: fc.integer({ min: 0, max: 4 }), bytes: fc.integer({ min: 1, max: 512 }) }), fc.record({ take: fc.integer({ min: 1, max: 20_000 }) })), { maxLength: 300 }),
      (ops) => {
        const quantum = 512;
        const q = new FairQueue<{ tenant: string; n: number; value: Buffer }>(quantum);
        const next = [0, 0, 0, 0, 0];
        const seen: number[][] = [[], [], [], [], []];
        let bytes = 0;
        let count = 0;
        const drain = (max: number) => {
          const active = q.activeLanes;
          const b = q.take(max);
          if (count > 0) assert.ok(b.length > 0);
          if (max >= active * 2 * quantum) assert.equal(new Set(b.map((x) => x.tenant)).size, active, 'every active lane served');
          for (const x of b) {
            seen[Number(x.tenant)]!.push(x.n);
            bytes -= x.value.length;
            count--;
          }
        };
        for (const op of ops) {
          if ('push' in op) {
            q.push({ tenant: String(op.push), n: next[op.push]!++, value: Buffer.alloc(op.bytes) });
            bytes += op.bytes;
            count++;
          } else drain(op.take);
          assert.equal(q.bytes, bytes);
          assert.equal(q.length, count);
        }
        while (q.length > 0) drain(4096);
        seen.forEach((s, t) => assert.deepEqual(s, Array.from({ length: next[t]! }, (_, i) => i)));
      },
    ),
  );
});

test('overShare: a tenant may hold its share of the bound, counted among the tenants with something queued', () => {
  const q = new FairQueue<ReturnType<typeof item>>();
  for (let i = 0; i < 100; i++) q.push(item('loud', i));
  assert.equal(q.queuedBytes('loud'), 10_000);
  assert.ok(q.overShare('loud', 10_000), 'alone, all of it');
  assert.ok(!q.overShare('loud', 10_001));
  assert.ok(!q.overShare('quiet', 10_000), 'nothing queued: under its half');
  assert.ok(!q.overShare('loud', 20_000), 'alone, loud may hold all of it');
  q.push(item('quiet', 0));
  assert.ok(!q.overShare('quiet', 10_000));
  assert.ok(q.overShare('loud', 20_000));
  assert.ok(!q.overShare('loud', 20_001));
});

test('max-min shares: small demands are met, the rest split evenly, never more than the capacity', () => {
  const shares = maxMinShares(new Map([['quiet', 10], ['a', 9000], ['b', 20_000], ['c', 3000]]), 16_000);
  assert.deepEqual(Object.fromEntries(shares), { quiet: 10, c: 3000, a: 6495, b: 6495 });
  assert.deepEqual(Object.fromEntries(maxMinShares(new Map([['x', 5], ['y', 7]]), 100)), { x: 5, y: 7 });
  assert.deepEqual(Object.fromEntries(maxMinShares(new Map([['x', Infinity], ['y', Infinity]]), 100)), { x: 50, y: 50 });
});

test('node budget: a flood gets what a quiet tenant leaves; the quiet tenant loses nothing', () => {
  let now = 0;
  const budget = new NodeBudget({ linesPerSecond: 1000, bytesPerSecond: 1e9 }, 1, () => now);
  const passed = { loud: 0, quiet: 0 };
  const offered = { loud: 0, quiet: 0 };
  // 20 s in 1 ms steps: loud offers 5 lines/ms (5000/s), quiet one line every 100 ms (10/s).
  for (now = 0; now < 20_000; now++) {
    for (let i = 0; i < 5; i++) {
      offered.loud++;
      if (budget.allow('loud', 100)) passed.loud++;
    }
    if (now % 100 === 0) {
      offered.quiet++;
      if (budget.allow('quiet', 100)) passed.quiet++;
    }
  }
  assert.equal(passed.quiet, offered.quiet, 'every quiet line passes');
  assert.equal(offered.quiet, 200);
  // Loud: a burst of one second at the whole budget, then what quiet leaves (990/s) over 19 s, give or take a window.
  assert.ok(passed.loud >= 1000 + 19 * 990 - 300 && passed.loud <= 1000 + 19 * 1000 + 300, `loud passed ${passed.loud}`);
  assert.equal(budget.sending, 2);
  // Quiet's demand is measured over 250 ms windows: 2 or 3 lines, 8 or 12 lines/s.
  assert.ok([988, 992].includes(Math.round(budget.share('loud').linesPerSecond)), `loud's share ${budget.share('loud').linesPerSecond}`);
  assert.equal(budget.share('quiet').linesPerSecond, 500, 'quiet may grow to an equal share at once');
});

test('node budget: five floods share it evenly; a tenant gone quiet is forgotten', () => {
  let now = 0;
  const budget = new NodeBudget({ linesPerSecond: 1000, bytesPerSecond: 1e9 }, 1, () => now);
  const passed = new Map<string, number>();
  for (now = 0; now < 10_000; now++) for (const t of ['a', 'b', 'c', 'd', 'e']) for (let i = 0; i < 2; i++) if (budget.allow(t, 10)) passed.set(t, (passed.get(t) ?? 0) + 1);
  for (const t of ['a', 'b', 'c', 'd', 'e']) {
    const n = passed.get(t)!;
    // One second of burst at a fifth, then a fifth of 1000/s for 10 s.
    assert.ok(n >= 2000 - 100 && n <= 2200 + 100, `${t} passed ${n}`);
  }
  now += 3000;
  budget.allow('a', 10);
  now += 300;
  budget.allow('a', 10);
  assert.equal(budget.sending, 1);
  assert.equal(budget.share('a').linesPerSecond, 1000);
});

test('limiter: the tenant\'s own limit first (rate_limited), then its share of the node (node_budget)', () => {
  const now = 0;
  const limiter = new TenantLimiter({ linesPerSecond: 100, bytesPerSecond: 1e9, burstSeconds: 1, tenants: { big: { linesPerSecond: 10_000 } }, node: { linesPerSecond: 1000, bytesPerSecond: 1e9, burstSeconds: 1 } }, () => now);
  const reasons = new Map<string, number>();
  for (let i = 0; i < 150; i++) {
    const r = limiter.check('small', 10);
    reasons.set(r?.reason ?? 'ok', (reasons.get(r?.reason ?? 'ok') ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(reasons), { ok: 100, rate_limited: 50 });
  reasons.clear();
  for (let i = 0; i < 2000; i++) {
    const r = limiter.check('big', 10);
    reasons.set(r?.reason ?? 'ok', (reasons.get(r?.reason ?? 'ok') ?? 0) + 1);
  }
  // Two tenants sending: big's share starts at half the node's 1000/s, with one second of burst.
  assert.deepEqual(Object.fromEntries(reasons), { ok: 500, node_budget: 1500 });
  assert.match(limiter.check('big', 10)?.detail ?? '', /over its fair share of this node \(500 lines\/s .* of 1000 lines\/s .* shared among 2 tenants sending\)/);
});

test('config: per-tenant defaults are half the node budget; the node budget follows lifted tenant limits', () => {
  const cfg = collectorConfigSchema.parse({});
  assert.equal(cfg.rateLimit.linesPerSecond, 1500);
  assert.equal(cfg.rateLimit.bytesPerSecond, 768 * 1024);
  assert.deepEqual(nodeBudget(cfg.rateLimit), { linesPerSecond: 3000, bytesPerSecond: 1536 * 1024, burstSeconds: 2 });
  assert.deepEqual(nodeBudget({ linesPerSecond: 1e9, bytesPerSecond: 1e12 }), { linesPerSecond: 1e9, bytesPerSecond: 1e12, burstSeconds: 2 });
  const set = collectorConfigSchema.parse({ rateLimit: { node: { linesPerSecond: 5000 } } });
  assert.deepEqual(nodeBudget(set.rateLimit), { linesPerSecond: 5000, bytesPerSecond: 1536 * 1024, burstSeconds: 2 });
});

test('sender: with the buffer full of a flood, only the flooding tenant\'s readers wait', async () => {
  let release: () => void = () => {};
  const published: Outgoing[][] = [];
  const sender = new Sender(
    async (batches) => {
      published.push(batches.flatMap((b) => b.messages));
      await new Promise<void>((r) => (release = r));
    },
    // Values only (no per-event overhead), so the shares below are round numbers of events.
    { batchBytes: 1000, lingerMs: 1_000_000, maxBufferedBytes: 10_000, eventOverheadBytes: 0 },
    createLogger('silent'),
  );
  const msg = (tenant: string, n: number): Outgoing => ({ topic: 't', key: tenant, tenant, value: Buffer.alloc(100), n });
  for (let i = 0; i < 100; i++) sender.enqueue(msg('loud', i));
  // The first batch is in flight (and held); 9,000 bytes of loud wait.
  assert.equal(published.length, 1);
  assert.ok(sender.full);
  assert.ok(sender.fullFor('loud'));
  assert.ok(!sender.fullFor('quiet'), 'a quiet tenant may still read');
  let loudResumed = false;
  void sender.capacity('loud').then(() => (loudResumed = true));
  await sender.capacity('quiet');
  sender.enqueue(msg('quiet', 0));
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(published.length, 2);
  assert.deepEqual(published[1]!.filter((m) => m.tenant === 'quiet').map((m) => m.n), [0], 'the quiet line is in the first batch after the held one');
  assert.ok(loudResumed, 'loud resumes once it is under its share');
  let finished = false;
  const done = sender.flush().then(() => (finished = true));
  while (!finished) {
    release();
    await new Promise((r) => setImmediate(r));
  }
  await done;
  assert.equal(published.flat().length, 101);
});

test('queue accounting: each event is charged its value and the per-event overhead; the order is by value bytes only', () => {
  const q = new FairQueue<ReturnType<typeof item>>(1000, 256);
  for (let i = 0; i < 10; i++) q.push(item('a', i, 100));
  q.push(item(undefined, 0, 40));
  assert.equal(q.chargeOf(item('a', 0, 100)), 356);
  assert.equal(q.bytes, 10 * 356 + 296);
  assert.equal(q.queuedBytes('a'), 3560);
  assert.equal(q.queuedBytes(undefined), 296);
  // A batch of 500 value bytes: the same events as without the overhead (DRR by value bytes).
  const plain = new FairQueue<ReturnType<typeof item>>(1000);
  for (let i = 0; i < 10; i++) plain.push(item('a', i, 100));
  plain.push(item(undefined, 0, 40));
  const b = q.take(500);
  assert.deepEqual(b.map((x) => [x.tenant, x.n]), plain.take(500).map((x) => [x.tenant, x.n]));
  assert.deepEqual(b.map((x) => x.n), [0, 1, 2, 3, 4]);
  assert.equal(q.bytes, 5 * 356 + 296);
  assert.equal(q.queuedBytes('a'), 5 * 356);
  for (let t = q.take(10_000); t.length > 0; t = q.take(10_000));
  assert.equal(q.bytes, 0);
  assert.equal(q.length, 0);
});

test('sender: the bound counts values plus the per-event overhead, queued and in flight; readers wait at exactly the bound', async () => {
  assert.equal(EVENT_OVERHEAD_BYTES, 256);
  let release: () => void = () => {};
  const published: Outgoing[][] = [];
  // 100 B values, charged 356 B each: the bound of 35,600 B is reached at exactly the 100th event.
  const sender = new Sender(
    async (batches) => {
      published.push(batches.flatMap((b) => b.messages));
      await new Promise<void>((r) => (release = r));
    },
    { batchBytes: 1000, lingerMs: 1_000_000, maxBufferedBytes: 100 * 356 },
    createLogger('silent'),
  );
  const msg = (n: number): Outgoing => ({ topic: 't', key: 'k', tenant: 'acme', value: Buffer.alloc(100), n });
  for (let i = 0; i < 9; i++) sender.enqueue(msg(i));
  assert.equal(published.length, 0, '900 value bytes: under one batch, nothing sent yet');
  assert.equal(sender.buffered, 9 * 356);
  sender.enqueue(msg(9));
  // 1,000 value bytes fill a batch (the charge does not): 10 events in flight, held.
  assert.equal(published.length, 1);
  assert.equal(published[0]!.length, 10);
  assert.equal(sender.buffered, 10 * 356);
  assert.equal(sender.bufferedEvents, 10);
  for (let i = 10; i < 99; i++) sender.enqueue(msg(i));
  assert.equal(sender.buffered, 99 * 356);
  assert.ok(!sender.full, '99 events: under the bound');
  assert.ok(!sender.fullFor('acme'));
  sender.enqueue(msg(99));
  assert.equal(sender.buffered, 100 * 356);
  assert.equal(sender.peakBuffered, 100 * 356);
  assert.equal(sender.bufferedEvents, 100);
  assert.ok(sender.full, '100 events of 100 B: at the bound (values alone would be 10,000 B, far under it)');
  assert.ok(sender.fullFor('acme'));
  let resumed = false;
  const waiting = sender.capacity('acme').then(() => (resumed = true));
  // The held batch is acknowledged: its 10 events' charge leaves, the next batch goes in flight.
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(published.length, 2);
  assert.equal(published[1]!.map((m) => m.n).join(','), '10,11,12,13,14,15,16,17,18,19');
  assert.equal(sender.buffered, 90 * 356);
  await waiting;
  assert.ok(resumed);
  let finished = false;
  const done = sender.flush().then(() => (finished = true));
  while (!finished) {
    release();
    await new Promise((r) => setImmediate(r));
  }
  await done;
  assert.equal(published.flat().length, 100);
  assert.equal(sender.buffered, 0);
  assert.equal(sender.bufferedEvents, 0);
});

/**
 * When the log sink's fair batcher (processors/log-sink/fair-batcher.ts) starts an insert
 * (issue 20): as soon as rows wait, at most one start per `minGapMs` (sinkBatchMs / 5),
 * never in the turn of the `add()`. So the partitions of one fetch, handed over in one
 * turn, share an insert, and a quiet partition's rows go into the very next insert after
 * a flood's busy one.
 *
 * The scenarios run on the embedded engine, each insert held until the test lets it go and
 * recorded by event id. The spacing of the starts is a property over scripts of adds and
 * insert durations, on a clock the test moves and an insert that only records. No
 * wall-clock threshold anywhere: every wait is for an event.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FairBatcher, type BatchClock } from '../processors/log-sink/fair-batcher.js';
import { LOG_TSV } from '../processors/log-sink/rows.js';
import type { RowEncoder } from '../lib/clickhouse/tsv.js';
import { openClickHouseMigrated } from '../lib/runtime.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { LogLine } from '../schemas/events.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { namespace } from './helpers/env.js';
import { deferred } from './helpers/deferred.js';
import { encodedColumn, encodedText, tapInserts } from './helpers/clickhouse-tap.js';

const ns = namespace();
const ch = await openClickHouseMigrated(ns.config, ns.logger);
after(async () => {
  await ch.close();
  ns.cleanup();
});

/** Lets every pending promise callback run (one macrotask later). */
const settled = () => new Promise<void>((r) => setImmediate(r));

const lines = (tenant: string, container: string, n: number): LogLine[] =>
  Array.from({ length: n }, (_, seq) => {
    const text = `${tenant} ${container} line ${seq}`;
    return { ...SAMPLE_EVENTS.logs, event_id: `${container}-${seq}`, tenant, app: tenant, container_id: container, seq, ts: Date.now(), line: Buffer.from(text), original_length: text.length, invalid_utf8: false };
  });
const ids = (rows: readonly LogLine[]) => rows.map((r) => r.event_id);

interface HeldInsert {
  ids: string[];
  release(): void;
  done: boolean;
}

/** The real engine; every insert into `logs` is recorded (event ids) and waits until the test releases it. */
class HeldInserts {
  readonly inserts: HeldInsert[] = [];
  readonly ch: ClickHouse;
  private open = false;
  private readonly wakers: Array<() => void> = [];

  constructor(real: ClickHouse) {
    this.ch = tapInserts(real, {
      insertEncoded: async (table, enc) => {
        // The event ids hold no character TSV escapes.
        const gate = deferred();
        const rec: HeldInsert = { ids: encodedColumn(enc, 'event_id'), release: () => gate.resolve(), done: false };
        this.inserts.push(rec);
        for (const wake of this.wakers.splice(0)) wake();
        if (!this.open) await gate.promise;
        await real.insertEncoded(table, enc);
        rec.done = true;
      },
    });
  }

  /** The `n`-th insert (from 0), once it has started. */
  async started(n: number): Promise<HeldInsert> {
    const limit = Date.now() + 60_000;
    while (this.inserts.length <= n) {
      assert.ok(Date.now() < limit, `insert ${n} never started (${this.inserts.length} did)`);
      const woken = deferred();
      this.wakers.push(() => woken.resolve());
      const t = setTimeout(() => woken.resolve(), 1000);
      await woken.promise;
      clearTimeout(t);
    }
    return this.inserts[n]!;
  }

  /** Releases every held insert and lets the later ones through. */
  openAll(): void {
    this.open = true;
    for (const i of this.inserts) i.release();
  }
}

async function storedCount(prefix: string): Promise<{ n: number; ids: number }> {
  const [row] = await ch.query<{ n: string; ids: string }>(`SELECT count() AS n, uniqExact(event_id) AS ids FROM ${ch.table('logs')} FINAL WHERE startsWith(container_id, {p:String})`, { p: prefix });
  return { n: Number(row!.n), ids: Number(row!.ids) };
}

test('rows of a quiet partition added while a flood\'s insert is busy go into the very next insert; nothing lost or doubled', async () => {
  const h = new HeldInserts(ch);
  const b = new FairBatcher<LogLine>(h.ch, 'logs', LOG_TSV, { maxRows: 2000, maxMs: 5 }, { tenantOf: (r) => r.tenant });
  const prefix = `${ns.id}-a-`;
  const loud = lines('loud', `${prefix}loud`, 10_000);
  const quiet = lines('quiet', `${prefix}quiet`, 3);

  const loudDone = b.add(loud);
  const first = await h.started(0);
  assert.deepEqual(first.ids, ids(loud.slice(0, 2000)));
  // The flood's insert is busy; a quiet partition's fetch hands over its lines meanwhile.
  let doneWhenQuietResolved = -1;
  const quietDone = b.add(quiet).then(() => void (doneWhenQuietResolved = h.inserts.filter((i) => i.done).length));
  first.release();
  const second = await h.started(1);
  assert.deepEqual(second.ids.filter((id) => id.startsWith(`${prefix}quiet`)), ids(quiet), 'every quiet line in the next insert');
  assert.equal(second.ids.length, 2000);
  h.openAll();
  await Promise.all([loudDone, quietDone]);

  assert.equal(doneWhenQuietResolved, 2, 'the quiet add() resolves once the second insert is done');
  assert.deepEqual(h.inserts.map((i) => i.ids.length), [2000, 2000, 2000, 2000, 2000, 3]);
  assert.deepEqual(h.inserts.flatMap((i) => i.ids).filter((id) => id.startsWith(`${prefix}loud`)), ids(loud), 'the flood in its order, once');
  assert.equal(b.pending, 0);
  assert.deepEqual(await storedCount(prefix), { n: 10_003, ids: 10_003 });
});

test('adds in one turn from several partitions share one insert, also while an insert is busy', async () => {
  const h = new HeldInserts(ch);
  const b = new FairBatcher<LogLine>(h.ch, 'logs', LOG_TSV, { maxRows: 50_000, maxMs: 5 }, { tenantOf: (r) => r.tenant });
  const prefix = `${ns.id}-b-`;
  /** Six partitions' handlers, as kafkajs runs them for one fetch: one after another in a promise chain, one turn. */
  const fetch = async (round: number) => {
    const rows: LogLine[][] = [];
    const done: Array<Promise<void>> = [];
    for (let p = 0; p < 6; p++) {
      rows.push(lines(p % 2 === 0 ? 'loud' : 'quiet', `${prefix}r${round}p${p}`, 100 * (p + 1)));
      done.push(b.add(rows[p]!));
      await Promise.resolve();
    }
    return { ids: rows.flatMap(ids), done };
  };

  const one = await fetch(1);
  const first = await h.started(0);
  assert.deepEqual([...first.ids].sort(), [...one.ids].sort(), 'the first fetch in one insert');
  // While that insert is busy, the next fetch's partitions hand over their rows in one turn.
  const two = await fetch(2);
  first.release();
  const second = await h.started(1);
  assert.deepEqual([...second.ids].sort(), [...two.ids].sort(), 'the second fetch in the next insert');
  h.openAll();
  await Promise.all([...one.done, ...two.done]);
  assert.equal(h.inserts.length, 2);
  assert.deepEqual(await storedCount(prefix), { n: 4200, ids: 4200 });
});

/** A clock the test moves: timers fire in time order, each at its own time, only while `advance` runs. */
class TestClock implements BatchClock {
  t = 0;
  private timers: Array<{ at: number; fn: () => void }> = [];

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): void {
    this.timers.push({ at: this.t + Math.max(0, ms), fn });
  }

  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.reduce<{ at: number; fn: () => void } | undefined>((a, x) => (x.at <= end && (!a || x.at < a.at) ? x : a), undefined);
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = next.at;
      next.fn();
      await settled();
    }
    this.t = end;
  }
}

interface Row {
  tenant: string;
  add: number;
  seq: number;
}

/** Only what the batcher calls: `insert` (rows as objects), recorded and held until `finish`. */
function recordingInsert(onInsert: (rows: readonly Row[]) => Promise<void>): ClickHouse {
  const unused = () => Promise.reject(new Error('not used by the batcher'));
  return {
    client: undefined as unknown as ClickHouse['client'],
    mode: 'embedded',
    database: 'test',
    table: (name) => name,
    query: unused,
    insert: (_table, rows) => onInsert(rows as unknown as Row[]),
    insertEncoded: unused,
    command: unused,
    ping: unused,
    close: () => Promise.resolve(),
  };
}

test('insert starts: never closer than minGapMs, never later than the gap and a free engine allow, never in the add()\'s turn (property, test clock)', async () => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), tenant: fc.integer({ min: 0, max: 3 }), rows: fc.integer({ min: 1, max: 40 }) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 60 }) }),
    fc.record({ kind: fc.constant('finish' as const) }),
  );
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 60 }), fc.array(step, { maxLength: 60 }), async (gap, maxRows, script) => {
      const clock = new TestClock();
      const starts: Array<{ at: number; readyAt: number; rows: readonly Row[] }> = [];
      const running: Array<() => void> = [];
      const finished = new Set<number>();
      /** Since when rows wait with no insert running (undefined: not so now). */
      let readyAt: number | undefined;
      const b = new FairBatcher<Row>(
        recordingInsert((rows) => {
          assert.notEqual(readyAt, undefined, 'an insert starts only when rows wait and none runs');
          starts.push({ at: clock.now(), readyAt: readyAt!, rows });
          readyAt = undefined;
          const d = deferred();
          const n = starts.length - 1;
          running.push(() => {
            finished.add(n);
            d.resolve();
          });
          return d.promise;
        }),
        't',
        undefined,
        { maxRows, maxMs: gap * 5 },
        { tenantOf: (r) => String(r.tenant), clock },
      );
      const note = () => {
        if (readyAt === undefined && b.pending > 0 && running.length === 0) readyAt = clock.now();
      };
      const adds: Array<{ n: number; resolved: boolean }> = [];
      const problems: unknown[] = [];
      const add = (tenant: number, n: number) => {
        const k = adds.length;
        adds.push({ n, resolved: false });
        const before = starts.length;
        b.add(Array.from({ length: n }, (_, seq) => ({ tenant: `t${tenant}`, add: k, seq }))).then(
          () => {
            // Resolved only after every insert that holds its rows is done, with all of them in.
            const holding = starts.map((s, i) => ({ i, n: s.rows.filter((r) => r.add === k).length })).filter((x) => x.n > 0);
            if (holding.reduce((a, x) => a + x.n, 0) !== n) problems.push(`add ${k} resolved with rows not inserted`);
            for (const x of holding) if (!finished.has(x.i)) problems.push(`add ${k} resolved before insert ${x.i} was done`);
            adds[k]!.resolved = true;
          },
          (err: unknown) => problems.push(err),
        );
        assert.equal(starts.length, before, 'no insert starts in the turn of the add()');
        note();
      };
      const finish = async () => {
        running.shift()?.();
        await settled();
        note();
      };

      for (const s of script) {
        if (s.kind === 'add') add(s.tenant, s.rows);
        else if (s.kind === 'finish') await finish();
        else await clock.advance(s.ms);
      }
      // Drain: every insert finishes, time moves on until nothing waits.
      while (b.pending > 0 || running.length > 0) {
        await finish();
        await clock.advance(gap);
      }
      await settled();

      starts.forEach((s, i) => {
        assert.ok(s.rows.length >= 1 && s.rows.length <= maxRows, `insert ${i}: ${s.rows.length} rows`);
        const earliest = i === 0 ? s.readyAt : Math.max(s.readyAt, starts[i - 1]!.at + gap);
        assert.equal(s.at, earliest, `insert ${i} starts at ${s.at}: ready at ${s.readyAt}, previous at ${starts[i - 1]?.at}, gap ${gap}`);
      });
      assert.deepEqual(problems, []);
      assert.ok(adds.every((a) => a.resolved), 'every add() resolved');
      // Nothing lost or doubled; each tenant's rows in the order they were added.
      const inserted = starts.flatMap((s) => s.rows);
      assert.equal(inserted.length, adds.reduce((a, x) => a + x.n, 0));
      for (const tenant of new Set(inserted.map((r) => r.tenant))) {
        const order = inserted.filter((r) => r.tenant === tenant).map((r) => [r.add, r.seq] as const);
        const sorted = [...order].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
        assert.deepEqual(order, sorted, `tenant ${tenant} in order`);
      }
    }),
    { numRuns: 200 },
  );
});

test('a failed insert rejects only the batches with rows in it; a row that cannot be written rejects only its own batch', async () => {
  type R = { tenant: string; id: string; bad?: boolean };
  const encoder: RowEncoder<R> = {
    columns: ['id'],
    write(r, w) {
      if (r.bad) throw new Error('cannot write this row');
      w.text(r.id).endRow();
    },
  };
  const inserts: string[][] = [];
  const outcome = deferred();
  let fail = true;
  const fake: ClickHouse = {
    ...recordingInsert(() => Promise.reject(new Error('not used'))),
    insertEncoded: async (_table, enc) => {
      inserts.push(encodedText(enc).split('\n').slice(0, enc.rows));
      if (inserts.length === 1) await outcome.promise;
      if (fail) {
        fail = false;
        throw new Error('connection reset');
      }
    },
  };
  const b = new FairBatcher<R>(fake, 'logs', encoder, { maxRows: 4, maxMs: 5 }, { tenantOf: (r) => r.tenant });
  const rows = (tenant: string, n: number, bad = -1): R[] => Array.from({ length: n }, (_, k) => ({ tenant, id: `${tenant}${k}`, ...(k === bad ? { bad: true } : {}) }));
  const result = (p: Promise<void>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');

  const a = result(b.add(rows('a', 6)));
  const c = result(b.add(rows('c', 1)));
  while (inserts.length === 0) await settled();
  assert.deepEqual(inserts[0], ['a0', 'a1', 'a2', 'c0']);
  // Added while the failing insert runs: not in it.
  const d = result(b.add(rows('d', 2)));
  const e = result(b.add(rows('e', 3, 1)));
  outcome.resolve();
  assert.deepEqual(await Promise.all([a, c, d, e]), ['clickhouse_insert_failed', 'clickhouse_insert_failed', 'ok', 'row_not_encodable']);
  // a's other rows were withdrawn (the consumer sends the batch again); e's rows never went in.
  assert.deepEqual(inserts.slice(1), [['d0', 'd1']]);
  assert.equal(b.pending, 0);
});

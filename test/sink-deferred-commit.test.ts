/**
 * Commits that trail the handler (`deferCommit`, lib/bus/deferred-commit.ts) on the real
 * broker: the handler gets a partition's next batches while the work of the earlier ones
 * is pending and nothing is committed; commits come in offset order once the work is
 * done; a failed piece of work commits nothing more and its messages come again (handled
 * synchronously then). And through the real sink and embedded chDB: a sink stopped
 * between queueing rows and inserting them has committed nothing, and the next sink
 * stores every line exactly once.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor, openClickHouseMigrated } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import type { LogLine } from '../schemas/events.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';
import { encodedColumn, tapInserts } from './helpers/clickhouse-tap.js';
import { deferred } from './helpers/deferred.js';

const ns = namespace({ LOGMETER_LOG_LEVEL: 'warn' });
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const ch = await openClickHouseMigrated(ns.config, ns.logger);
after(async () => {
  await bus.close();
  await ch.close();
  ns.cleanup();
});

const line = (id: string, container: string, seq: number): LogLine => ({
  ...SAMPLE_EVENTS.logs,
  event_id: id,
  container_id: container,
  seq,
  ts: Date.parse('2026-12-05T03:00:00Z') + seq,
  line: Buffer.from(`line ${id}`),
  original_length: 6 + id.length,
  invalid_utf8: false,
});

/** The group's committed offsets on the logs topic, by partition (`-1`: none). */
async function committed(group: string): Promise<Map<number, bigint>> {
  const offsets = await bus.committedOffsets(group, bus.topic('logs'));
  return new Map(offsets.map((o) => [o.partition, BigInt(o.offset)]));
}

test('deferred commits on Kafka: next batches while the work waits, nothing committed; in-order commits when done; a failed piece commits nothing more and its messages come again', async () => {
  await bus.ensureTopics();
  const container = 'd'.repeat(64);
  const partition = bus.partitionForKey(container, ns.config.kafka.partitions);
  interface Part {
    offsets: bigint[];
    deferred: boolean;
    work: ReturnType<typeof deferred<void>>;
  }
  const parts: Part[] = [];
  const commits: bigint[] = [];
  const sub = await bus.subscribe({
    group: `${ns.id}-bus`,
    topics: ['logs'],
    handle: (msgs, ctx) => {
      const work = deferred();
      const part: Part = { offsets: msgs.map((m) => BigInt(m.offset)), deferred: ctx.deferCommit(work.promise), work };
      parts.push(part);
      // Not deferred (re-reading after a failure): the work is done here, synchronously.
      if (!part.deferred) work.resolve();
      return part.deferred ? Promise.resolve() : work.promise;
    },
    onCommitted: (_topic, p, next) => {
      assert.equal(p, partition);
      commits.push(next);
    },
  });
  try {
    // Three batches, each published once the handler returned from the one before: the
    // handler gets them while the work of every earlier one is still pending.
    for (let b = 0; b < 3; b++) {
      await bus.publish('logs', Array.from({ length: 10 }, (_, i) => ({ event: line(`bus-${b}-${i}`, container, b * 10 + i) })));
      await eventually(`batch ${b} handed to the handler`, () => Promise.resolve(parts.flatMap((p) => p.offsets).length === (b + 1) * 10 ? true : undefined));
    }
    assert.deepEqual(
      parts.flatMap((p) => p.offsets),
      Array.from({ length: 30 }, (_, i) => BigInt(i)),
    );
    assert.ok(parts.every((p) => p.deferred));
    assert.deepEqual(commits, [], 'nothing committed while the work waits');
    assert.equal((await committed(sub.group)).get(partition) ?? -1n, -1n);

    // The part holding offset 10–19 done before the one holding 0–9: one commit, at 20.
    const at = (offset: bigint) => parts.find((p) => p.offsets.includes(offset))!;
    at(10n).work.resolve();
    at(0n).work.resolve();
    await eventually('commit of 0–19', () => Promise.resolve(commits.length > 0 ? true : undefined));
    assert.deepEqual(commits, [20n]);

    // The work of 20–29 fails: nothing more is committed; the consumer reads again from 20,
    // synchronously this time, and commits that once the work is done.
    const before = parts.length;
    at(20n).work.reject(new Error('insert failed'));
    await eventually('20–29 read again and committed', () => Promise.resolve(commits.at(-1) === 30n ? true : undefined), 60_000);
    const again = parts.slice(before);
    assert.deepEqual(
      again.flatMap((p) => p.offsets),
      Array.from({ length: 10 }, (_, i) => BigInt(20 + i)),
    );
    assert.ok(again.every((p) => !p.deferred), 'handled synchronously after the failure');
    assert.deepEqual(commits, [20n, 30n]);
    assert.equal((await committed(sub.group)).get(partition), 30n);
  } finally {
    await sub.stop();
  }
});

test('the sink stopped between queueing rows and inserting them has committed nothing; the next sink stores every line exactly once', async () => {
  await bus.ensureTopics();
  const group = `${ns.id}-sink`;
  const N = 1200;
  const containers = Array.from({ length: 12 }, (_, c) => `${String(c).padStart(2, '0')}`.repeat(32));
  const events = Array.from({ length: N }, (_, i) => line(`sink-${i}`, containers[i % containers.length]!, i));
  for (let i = 0; i < N; i += 300) await bus.publish('logs', events.slice(i, i + 300).map((event) => ({ event })));

  // First sink: every insert into logs is recorded and never completes until the sink is
  // stopped; then it fails (the process is gone before its insert).
  const held: string[][] = [];
  const dead = deferred();
  const first = tapInserts(ch, {
    insertEncoded: async (table, enc) => {
      if (table !== 'logs') return ch.insertEncoded(table, enc);
      held.push(encodedColumn(enc, 'event_id'));
      await dead.promise;
    },
  });
  const sub1 = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: first, logger: ns.logger, registry: createRegistry(false), group });
  try {
    await eventually('a logs insert made by the first sink', () => Promise.resolve(held.length > 0 ? true : undefined), 60_000);
  } finally {
    // The stop waits for the queued inserts (kafkajs-deferral.ts drain): they fail meanwhile.
    const stopped = sub1.stop();
    dead.reject(new Error('the sink process is gone'));
    await stopped;
  }
  const logsGroup = `${ns.config.kafka.topicPrefix}${group}.logs`;
  const after1 = await committed(logsGroup);
  assert.deepEqual([...after1.values()].filter((o) => o >= 0n), [], 'no offset committed: none of its inserts succeeded');
  assert.equal(await ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('logs')} WHERE startsWith(event_id, 'sink-')`).then((r) => Number(r[0]!.n)), 0);

  // Second sink, same group, real inserts: every line again, once.
  const sub2 = await startLogSink({ config: logSinkConfig(ns.config), bus, ch, logger: ns.logger, registry: createRegistry(false), group });
  try {
    await eventually(
      'every line stored',
      async () => {
        const [r] = await ch.query<{ n: number; u: number }>(`SELECT count() AS n, uniqExact(event_id) AS u FROM ${ch.table('logs')} FINAL WHERE startsWith(event_id, 'sink-')`);
        return Number(r!.n) === N ? r : undefined;
      },
      60_000,
    );
    const ends = await bus.endOffsets(bus.topic('logs'));
    await eventually('offsets committed to the end', async () => {
      const c = await committed(logsGroup);
      return ends.every((e) => (c.get(e.partition) ?? -1n) === BigInt(e.high) || BigInt(e.high) === 0n) ? true : undefined;
    });
  } finally {
    await sub2.stop();
  }
  const ids = await ch.query<{ event_id: string }>(`SELECT event_id FROM ${ch.table('logs')} FINAL WHERE startsWith(event_id, 'sink-') ORDER BY event_id`);
  assert.deepEqual(
    ids.map((r) => r.event_id),
    events.map((e) => e.event_id).sort(),
  );
  const [u] = await ch.query<{ n: number }>(`SELECT uniqExact(event_id) AS n FROM ${ch.table('logs')} FINAL WHERE startsWith(event_id, 'sink-')`);
  assert.equal(Number(u!.n), N);
});

test('a failed insert of the sink commits nothing: the insert after it finds no offset committed, and every line is stored once', async () => {
  await bus.ensureTopics();
  const group = `${ns.id}-fail`;
  const logsGroup = `${ns.config.kafka.topicPrefix}${group}.logs`;
  const N = 600;
  const containers = Array.from({ length: 6 }, (_, c) => `f${c}`.repeat(32));
  const events = Array.from({ length: N }, (_, i) => line(`fail-${i}`, containers[i % containers.length]!, i));
  for (let i = 0; i < N; i += 300) await bus.publish('logs', events.slice(i, i + 300).map((event) => ({ event })));
  // The first logs insert fails (a transient error); at each later one, the group's offsets
  // are read before it runs.
  const inserts: Array<{ ids: number; committed: bigint[] }> = [];
  const tapped = tapInserts(ch, {
    insertEncoded: async (table, enc) => {
      if (table !== 'logs') return ch.insertEncoded(table, enc);
      const ids = encodedColumn(enc, 'event_id').filter((id) => id.startsWith('fail-')).length;
      inserts.push({ ids, committed: [...(await committed(logsGroup)).values()].filter((o) => o >= 0n) });
      if (inserts.length === 1) throw new Error('connection reset by peer');
      await ch.insertEncoded(table, enc);
    },
  });
  const sub = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: tapped, logger: ns.logger, registry: createRegistry(false), group });
  try {
    await eventually(
      'every line stored',
      async () => {
        const [r] = await ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('logs')} FINAL WHERE startsWith(event_id, 'fail-')`);
        return Number(r!.n) === N ? true : undefined;
      },
      90_000,
    );
  } finally {
    await sub.stop();
  }
  assert.ok(inserts[0]!.ids > 0);
  assert.deepEqual(inserts[0]!.committed, []);
  assert.deepEqual(inserts[1]!.committed, [], 'nothing committed between the failed insert and the next');
  const ids = await ch.query<{ event_id: string }>(`SELECT event_id FROM ${ch.table('logs')} FINAL WHERE startsWith(event_id, 'fail-') ORDER BY event_id`);
  assert.deepEqual(
    ids.map((r) => r.event_id),
    events.map((e) => e.event_id).sort(),
  );
});

test('stop waits for the rows still queued: their insert ends before stop returns, and their offsets are committed (nothing to read again)', async () => {
  await bus.ensureTopics();
  const group = `${ns.id}-stop`;
  const N = 600;
  const containers = Array.from({ length: 6 }, (_, c) => `${String(c + 20).padStart(2, '0')}`.repeat(32));
  const events = Array.from({ length: N }, (_, i) => line(`stop-${i}`, containers[i % containers.length]!, i));
  const ends0 = new Map((await bus.endOffsets(bus.topic('logs'))).map((e) => [e.partition, BigInt(e.high)]));
  await bus.publish('logs', events.map((event) => ({ event })));
  const ends = await bus.endOffsets(bus.topic('logs'));
  // Inserts into logs are held until released, and counted while they run.
  const release = deferred();
  let held = 0;
  let running = 0;
  const order: string[] = [];
  const tap = tapInserts(ch, {
    insertEncoded: async (table, enc) => {
      if (table !== 'logs') return ch.insertEncoded(table, enc);
      held++;
      running++;
      try {
        await release.promise;
        await ch.insertEncoded(table, enc);
      } finally {
        running--;
        if (running === 0) order.push('inserts done');
      }
    },
  });
  const sub = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: tap, logger: ns.logger, registry: createRegistry(false), group });
  const logsGroup = `${ns.config.kafka.topicPrefix}${group}.logs`;
  await eventually('a logs insert held', () => Promise.resolve(held > 0 ? true : undefined), 60_000);
  const stopped = sub.stop().then(() => order.push('stop returned'));
  release.resolve();
  await stopped;
  assert.equal(running, 0, 'no insert runs after stop returned (ClickHouse may be closed then)');
  assert.deepEqual(order.slice(-1), ['stop returned']);
  // Every line this sink took was inserted and committed. The group read the topic from its
  // start (earlier tests' lines first): per partition, the committed offset past `ends0` counts this test's lines.
  const stored = await ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('logs')} FINAL WHERE startsWith(event_id, 'stop-')`).then((r) => Number(r[0]!.n));
  assert.ok(stored > 0);
  const c = await committed(logsGroup);
  const past = (p: number) => {
    const n = (c.get(p) ?? -1n) - (ends0.get(p) ?? 0n);
    return n > 0n ? Number(n) : 0;
  };
  const committedLines = ends.reduce((n, e) => n + past(e.partition), 0);
  assert.equal(committedLines, stored, 'each stored line committed, nothing committed that is not stored');
});

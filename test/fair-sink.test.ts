/**
 * Tenant fairness between Kafka and ClickHouse (issue 20), on the real broker and the
 * embedded engine: a loud tenant's backlog of 24,000 lines waits in the logs topic, on
 * every partition, while no sink runs; a quiet tenant's lines come after it, one on every
 * partition. The sink starts and its first insert into `logs` holds every quiet line,
 * although the backlog fills twelve inserts and sits in front of each quiet line in its
 * own partition (a batcher that inserts what each partition's fetch holds, in turn, has
 * the quiet lines of one partition only in its first insert). Every line of both is
 * inserted exactly once. No timing threshold: the inserts are recorded as the sink makes
 * them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor, openClickHouseMigrated } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import type { LogLine } from '../schemas/events.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';
import { encodedColumn } from './helpers/clickhouse-tap.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const ch = await openClickHouseMigrated(ns.config, ns.logger);
after(async () => {
  await bus.close();
  await ch.close();
  ns.cleanup();
});

/** The real client, with every insert into `logs` recorded (event ids, in insert order). */
function recording(real: ClickHouse, inserts: string[][]): ClickHouse {
  return {
    client: real.client,
    mode: real.mode,
    database: real.database,
    table: (name) => real.table(name),
    query: (sql, params) => real.query(sql, params),
    insert: async (table, rows, columns) => {
      if (table === 'logs') inserts.push(rows.map((r) => String(r.event_id)));
      await real.insert(table, rows, columns);
    },
    insertEncoded: async (table, enc) => {
      if (table === 'logs') {
        // TabSeparated rows or binary columns (embedded); event ids hold no character TSV escapes.
        inserts.push(encodedColumn(enc, 'event_id'));
      }
      await real.insertEncoded(table, enc);
    },
    command: (sql, params) => real.command(sql, params),
    ping: () => real.ping(),
    close: () => real.close(),
  };
}

test('after a pause, the sink\'s first insert holds every quiet tenant line queued behind a loud backlog of 24,000 lines on every partition; every line is stored once', async () => {
  await bus.ensureTopics();
  const topic = bus.topic('logs');
  const partitions = ns.config.kafka.partitions;
  const line = (tenant: string, container: string, seq: number): LogLine => {
    // Lines that compress like real ones (a hex tail), not like padding.
    const text = `${tenant} ${container} line ${seq} ${randomBytes(24).toString('hex')}`;
    return { ...SAMPLE_EVENTS.logs, event_id: `${container}-${seq}`, tenant, app: tenant, container_id: container, seq, ts: Date.now(), line: Buffer.from(text), original_length: text.length, invalid_utf8: false };
  };

  // One loud container per partition (containers are the keys; tried until every partition
  // has one). Every container tried has its line 0 on Kafka; the backlog continues the ones kept.
  const loudOn = new Map<number, string>();
  let tried = 0;
  while (loudOn.size < partitions) {
    assert.ok(tried < 200, 'containers for every partition');
    const id = `${ns.id}-loud-${tried++}`;
    await bus.publish('logs', [{ event: line('loud', id, 0) }]);
    const p = bus.partitionOf(topic, id);
    assert.notEqual(p, undefined);
    if (!loudOn.has(p!)) loudOn.set(p!, id);
  }
  const PER_CONTAINER = 4000;
  for (const id of loudOn.values()) {
    for (let from = 1; from < PER_CONTAINER; from += 1000) {
      const upTo = Math.min(PER_CONTAINER, from + 1000);
      await bus.publish('logs', Array.from({ length: upTo - from }, (_, k) => ({ event: line('loud', id, from + k) })));
    }
  }
  // The quiet tenant's lines, after the backlog: from containers tried until it has one on
  // every partition, so each of its lines waits behind loud lines in its own partition.
  const quietIds: string[] = [];
  const quietOn = new Set<number>();
  while (quietOn.size < partitions) {
    assert.ok(quietIds.length < 200, 'quiet containers for every partition');
    const id = `${ns.id}-quiet-${quietIds.length}`;
    quietIds.push(id);
    await bus.publish('logs', [{ event: line('quiet', id, 0) }]);
    quietOn.add(bus.partitionOf(topic, id)!);
  }
  const loudLines = loudOn.size * PER_CONTAINER + (tried - loudOn.size);
  const expected = loudLines + quietIds.length;

  // The sink starts on the backlog: inserts of at most 2,000 rows, so the flood needs twelve of them.
  const inserts: string[][] = [];
  const config = { ...logSinkConfig(ns.config), batchRows: 2000 };
  const sink = await startLogSink({ config, bus, ch: recording(ch, inserts), logger: ns.logger, registry: createRegistry(false) });
  try {
    await eventually('every line inserted', async () => (inserts.reduce((n, r) => n + r.length, 0) >= expected ? true : undefined), 180_000);
  } finally {
    await sink.stop();
  }

  const first = new Set(inserts[0]);
  assert.deepEqual(quietIds.filter((id) => !first.has(`${id}-0`)), [], 'every quiet line is in the first insert');
  assert.ok(inserts.length >= 12, `${inserts.length} inserts`);
  const all = inserts.flat();
  assert.equal(all.length, expected, 'no row inserted twice');
  assert.equal(new Set(all).size, expected);
  const [row] = await ch.query<{ n: string; ids: string; quiet: string }>(
    `SELECT count() AS n, uniqExact(event_id) AS ids, countIf(tenant = 'quiet') AS quiet FROM ${ch.table('logs')} FINAL WHERE startsWith(container_id, {p:String})`,
    { p: `${ns.id}-` },
  );
  assert.deepEqual({ n: Number(row!.n), ids: Number(row!.ids), quiet: Number(row!.quiet) }, { n: expected, ids: expected, quiet: quietIds.length });
});

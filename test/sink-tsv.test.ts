/**
 * The log sink's insert formats: hostile lines through the real sink (Kafka → startLogSink
 * → embedded chDB, which takes binary columns: sink-columns.test.ts) read back byte for byte,
 * every column equal to the JSONEachRow rows of `logRow`, and the batcher's contract with
 * an encoder (resolves after the insert; rows that cannot be encoded leave nothing behind).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { clickHouseOn, openClickHouse, withDatabase } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { TableBatcher } from '../lib/clickhouse/batcher.js';
import { TsvWriter, type RowEncoder } from '../lib/clickhouse/tsv.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { LOG_COLUMNS, LOG_TSV, logRow } from '../processors/log-sink/rows.js';
import { logSinkConfig } from '../app/pipeline.js';
import { eventually, namespace } from './helpers/env.js';
import { COLUMNS, HOSTILE, hostileEvents, type Row } from './helpers/hostile-lines.js';

const ns = namespace({ LOGMETER_LOG_LEVEL: 'warn' });
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
after(async () => {
  await bus.close();
  await ch.close();
  ns.cleanup();
});


test('hostile lines through the real sink (Kafka → its embedded insert, binary columns → chDB) read back byte for byte', async () => {
  await bus.ensureTopics();
  const db = withDatabase(ch, `${ns.id}_sink`);
  await ch.command(`CREATE DATABASE IF NOT EXISTS ${db.database}`);
  await migrate(db, ns.logger);
  const events = hostileEvents('h');
  // One event per publish: the long line is a message of its own.
  for (const e of events) await bus.publish('logs', [{ event: e }]);
  const sub = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: db, logger: ns.logger, registry: createRegistry(false), group: `${ns.id}-tsv` });
  let rows: Row[] = [];
  try {
    await eventually('every hostile line written', async () => {
      rows = await db.query<Row>(`SELECT ${COLUMNS} FROM ${db.table('logs')} FINAL ORDER BY seq`);
      return rows.length === events.length ? rows : undefined;
    }, 60_000);
  } finally {
    await sub.stop();
  }
  for (const [i, [name, line]] of HOSTILE.entries()) {
    const r = rows[i]!;
    assert.equal(r.event_id, `h-${i}`, name);
    assert.equal(r.line_hex, line.toString('hex').toUpperCase(), `${name}: the line's bytes`);
  }
  assert.equal(rows[0]!.container_name, 'web\t1\n\\x00');
  // Every column equals what the JSONEachRow rows of logRow give, in another database.
  const ref = withDatabase(ch, `${ns.id}_json`);
  await ch.command(`CREATE DATABASE IF NOT EXISTS ${ref.database}`);
  await migrate(ref, ns.logger);
  await ref.insert('logs', events.map(logRow), LOG_COLUMNS);
  assert.deepEqual(rows, await ref.query<Row>(`SELECT ${COLUMNS} FROM ${ref.table('logs')} FINAL ORDER BY seq`));
});

test('the TabSeparated body is valid UTF-8 whatever the bytes, and names only the escapes ClickHouse reads', () => {
  const w = new TsvWriter(16);
  for (const e of hostileEvents('w')) LOG_TSV.write(e, w);
  const body = w.bytes();
  assert.equal(w.rows, HOSTILE.length);
  assert.equal(Buffer.from(body.toString('utf8'), 'utf8').equals(body), true, 'survives a UTF-8 decode unchanged');
  // One line feed per row, 16 tabs per row: no raw separator inside a field.
  assert.equal(body.filter((b) => b === 0x0a).length, HOSTILE.length);
  assert.equal(body.filter((b) => b === 0x09).length, HOSTILE.length * (LOG_TSV.columns.length - 1));
  assert.equal(body.includes(0x00), false);
  assert.equal(body.includes(0x0d), false);
  w.reset();
  w.epochMs(1_764_842_400_007).tab().epochMs(5).tab().epochMs(-1).tab().int(42).tab().bool(true).tab().text('a\tb').tab().binary(Buffer.from([0xff, 0x5c])).endRow();
  assert.equal(w.bytes().toString('latin1'), '1764842400.007\t0.005\t-0.001\t42\ttrue\ta\\tb\t\\xFF\\\\\n');
});

test('batcher with an encoder: add() resolves after the insert; a row that cannot be encoded rejects its add() and leaves the others intact', async () => {
  await ch.command(`CREATE DATABASE IF NOT EXISTS ${ch.database}`);
  await ch.command(`CREATE TABLE IF NOT EXISTS ${ch.table('encoded')} (src String, n UInt32, s String) ENGINE = MergeTree ORDER BY (src, n)`);
  const enc: RowEncoder<{ src: string; n: number; s: string | undefined }> = {
    columns: ['src', 'n', 's'],
    write(r, w) {
      w.text(r.src).tab().int(r.n).tab();
      if (r.s === undefined) throw new Error(`row ${r.n} has no s`);
      w.text(r.s).endRow();
    },
  };
  const inserts: number[] = [];
  const b = new TableBatcher(ch, 'encoded', enc, { maxRows: 3, maxMs: 3_600_000, minGapMs: 0 }, (n) => inserts.push(n));
  const count = async () => Number((await ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('encoded')}`))[0]!.n);
  // Half a row written, then refused: nothing of it stays in the buffer.
  await assert.rejects(b.add([{ src: 'a', n: 0, s: 'x' }, { src: 'a', n: 1, s: undefined }], 'a'), /row 1 has no s/);
  await b.add([{ src: 'a', n: 2, s: 'y\tz' }, { src: 'a', n: 3, s: '' }, { src: 'a', n: 4, s: '\\' }], 'a');
  assert.deepEqual(inserts, [3]);
  assert.equal(await count(), 3, 'visible when add() resolved');
  assert.deepEqual(await ch.query(`SELECT n, s FROM ${ch.table('encoded')} ORDER BY n`), [
    { n: 2, s: 'y\tz' },
    { n: 3, s: '' },
    { n: 4, s: '\\' },
  ]);
  // The buffer is reused for the next batch: the earlier bytes are not sent again.
  await b.add([{ src: 'b', n: 0, s: 'p' }, { src: 'b', n: 1, s: 'q' }, { src: 'b', n: 2, s: 'r' }], 'b');
  assert.deepEqual(inserts, [3, 3]);
  assert.equal(await count(), 6);
});

test('the same body through @clickhouse/client insert (the server path; here a wrapped embedded client) reads back byte for byte', async () => {
  const db = withDatabase(ch, `${ns.id}_client`);
  await ch.command(`CREATE DATABASE IF NOT EXISTS ${db.database}`);
  await migrate(db, ns.logger);
  // A wrapped client is not the embedded one openClickHouse made: insertEncoded sends the
  // bytes as the TabSeparated body of client.insert, as it does to a server.
  const wrapped = clickHouseOn(() => new Proxy(ch.client, {}), 'embedded', db.database, () => Promise.resolve());
  const w = new TsvWriter();
  const events = hostileEvents('c');
  for (const e of events) LOG_TSV.write(e, w);
  await wrapped.insertEncoded('logs', { columns: LOG_TSV.columns, body: w.bytes(), rows: w.rows });
  const rows = await db.query<Row>(`SELECT ${COLUMNS} FROM ${db.table('logs')} FINAL ORDER BY seq`);
  assert.deepEqual(
    rows.map((r) => r.line_hex),
    HOSTILE.map(([, line]) => line.toString('hex').toUpperCase()),
  );
});

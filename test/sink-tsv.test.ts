/**
 * The log sink's insert format (TabSeparated bytes, lib/clickhouse/tsv.ts): hostile lines
 * through the real sink (Kafka → startLogSink → embedded chDB) read back byte for byte,
 * every column equal to the JSONEachRow rows of `logRow`, and the batcher's contract with
 * an encoder (resolves after the insert; rows that cannot be encoded leave nothing behind).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LogLine } from '../schemas/events.js';
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

const ns = namespace({ LOGMETER_LOG_LEVEL: 'warn' });
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
after(async () => {
  await bus.close();
  await ch.close();
  ns.cleanup();
});

const all256 = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
/** 512 KiB of every byte value, in a fixed pseudo-random order. */
const long = Buffer.alloc(512 * 1024);
for (let i = 0, x = 7; i < long.length; i++) {
  x = (x * 1103515245 + 12345) >>> 0;
  long[i] = x >>> 24;
}
const HOSTILE: Array<[name: string, line: Buffer]> = [
  ['tabs and newlines', Buffer.from('a\tb\nc\r\nd\t\t\n')],
  ['backslashes', Buffer.from('\\ \\\\ \\t \\n \\N \\0 \\x41 \\xZZ \\')],
  ['only \\N', Buffer.from('\\N')],
  ['NUL bytes', Buffer.from([0x61, 0x00, 0x62, 0x00, 0x00])],
  ['invalid UTF-8', Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0x20, 0x80, 0xc3, 0x28, 0xe2, 0x82, 0x09, 0xf0, 0x9f, 0x98])],
  ['overlong and surrogate encodings', Buffer.from([0xc0, 0xaf, 0xe0, 0x80, 0xaf, 0xed, 0xa0, 0x80, 0x5c])],
  ['valid UTF-8, several scripts and an emoji', Buffer.from('Grüße, 日本語, مرحبا, 😀\t\\é')],
  ['HTML and script', Buffer.from('<script>alert("x")</script><img src=x onerror=alert(1)>&amp;')],
  ['ANSI escape sequences', Buffer.from('\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J')],
  ['SQL and JSON look-alikes', Buffer.from(`'); DROP TABLE logs; -- {"a":"\\u0000"} \`x\``)],
  ['every byte value', all256],
  ['empty', Buffer.alloc(0)],
  ['ends with a backslash', Buffer.from('trailing\\')],
  ['512 KiB of random bytes', long],
];
const T0 = Date.parse('2026-12-04T10:00:00.000Z');
const CONTAINER = 'c'.repeat(64);

function hostileEvents(tag: string): LogLine[] {
  return HOSTILE.map(([name, line], i) => ({
    event_id: `${tag}-${i}`,
    tenant: 'acme',
    app: 'shop',
    node: 'node-t',
    container_id: CONTAINER,
    // Other string columns carry escapes too.
    container_name: i === 0 ? 'web\t1\n\\x00' : `web-${i}`,
    ts: T0 + i * 1001 + 7,
    ts_nanos: (i * 7919) % 1_000_000,
    seq: i,
    stream: i % 2 === 0 ? 'stdout' : 'stderr',
    tty: i % 3 === 0,
    line,
    original_length: line.length + i,
    truncated: name.startsWith('512'),
    invalid_utf8: name.includes('invalid'),
    log_format: i === 7 ? 'nginx-combined' : null,
  }));
}

const COLUMNS = 'event_id, tenant, app, node, container_id, container_name, toUnixTimestamp64Milli(ts) AS ts, ts_nanos, seq, stream, tty, hex(line) AS line_hex, original_length, truncated, invalid_utf8, log_format, kind';
type Row = Record<string, unknown> & { event_id: string; line_hex: string };

test('hostile lines through the real sink (Kafka → TabSeparated insert → chDB) read back byte for byte', async () => {
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

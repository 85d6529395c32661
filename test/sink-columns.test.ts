/**
 * The log sink's embedded insert format, binary columns (lib/clickhouse/columnar.ts,
 * rows.ts LOG_COLUMNAR): hostile lines read back byte for byte with every column equal to
 * the TabSeparated insert of the same events; the writer's layout (offsets, bit-packed
 * booleans past one word, 64-bit values, negative times, reuse after reset); and the
 * server path (a client that is not the embedded one) keeping TabSeparated through the
 * real sink.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { clickHouseOn, columnarInserts, openClickHouse, withDatabase, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { ColumnarWriter } from '../lib/clickhouse/columnar.js';
import { TsvWriter } from '../lib/clickhouse/tsv.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { LOG_COLUMNAR, LOG_TSV } from '../processors/log-sink/rows.js';
import { logSinkConfig } from '../app/pipeline.js';
import { eventually, namespace } from './helpers/env.js';
import { tapInserts } from './helpers/clickhouse-tap.js';
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

async function database(suffix: string): Promise<ClickHouse> {
  const db = withDatabase(ch, `${ns.id}_${suffix}`);
  await ch.command(`CREATE DATABASE IF NOT EXISTS ${db.database}`);
  await migrate(db, ns.logger);
  return db;
}

test('hostile lines as binary columns read back byte for byte, every column equal to the TabSeparated insert of the same events', async () => {
  assert.equal(columnarInserts(ch), true, 'the embedded engine takes binary columns');
  const cols = await database('cols');
  const tsv = await database('tsv');
  const events = hostileEvents('b');
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (const e of events) LOG_COLUMNAR.write(e, w);
  await cols.insertEncoded('logs', { format: 'columns', columns: w.columns, writer: w, rows: w.rows });
  const t = new TsvWriter();
  for (const e of events) LOG_TSV.write(e, t);
  await tsv.insertEncoded('logs', { columns: LOG_TSV.columns, body: t.bytes(), rows: t.rows });

  const rows = await cols.query<Row>(`SELECT ${COLUMNS} FROM ${cols.table('logs')} FINAL ORDER BY seq`);
  assert.equal(rows.length, HOSTILE.length);
  for (const [i, [name, line]] of HOSTILE.entries()) {
    assert.equal(rows[i]!.event_id, `b-${i}`, name);
    assert.equal(rows[i]!.line_hex, line.toString('hex').toUpperCase(), `${name}: the line's bytes`);
  }
  assert.equal(rows[0]!.container_name, 'web\t1\n\\x00');
  assert.deepEqual(rows, await tsv.query<Row>(`SELECT ${COLUMNS} FROM ${tsv.table('logs')} FINAL ORDER BY seq`));
});

test('the column writer: offsets, booleans past 32 rows, values over 2^32, negative times, and nothing of a batch left after reset', async () => {
  const db = withDatabase(ch, `${ns.id}_writer`);
  await ch.command(`CREATE DATABASE IF NOT EXISTS ${db.database}`);
  await ch.command(`CREATE TABLE ${db.table('w')} (n UInt32, s String, b Bool, big UInt64, t DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY n`);
  const w = new ColumnarWriter([
    { name: 'n', type: 'u32' },
    { name: 's', type: 'bytes' },
    { name: 'b', type: 'bool' },
    { name: 'big', type: 'u64' },
    { name: 't', type: 'ms' },
  ]);
  const insert = () => db.insertEncoded('w', { format: 'columns', columns: w.columns, writer: w, rows: w.rows });
  // A first batch that is reset before its insert: none of it may reach the table.
  w.u32(0, 999).text(1, 'gone').bool(2, true).u64(3, 1).ms(4, 0).endRow();
  w.reset();
  const big = 2 ** 52 + 12345;
  for (let n = 0; n < 70; n++) w.u32(0, n).text(1, n % 7 === 0 ? '' : `s${n}é`).bool(2, n % 3 === 0).u64(3, big + n).ms(4, -1500 + n).endRow();
  await insert();
  const rows = await db.query<{ n: number; s: string; b: boolean; big: string | number; t: string | number }>(
    `SELECT n, s, b, toString(big) AS big, toString(toUnixTimestamp64Milli(t)) AS t FROM ${db.table('w')} ORDER BY n`,
  );
  assert.equal(rows.length, 70);
  for (const [n, r] of rows.entries()) {
    assert.deepEqual(r, { n, s: n % 7 === 0 ? '' : `s${n}é`, b: n % 3 === 0, big: String(big + n), t: String(-1500 + n) });
  }
  // Reused for the next batch: booleans cleared, offsets from zero.
  w.reset();
  w.u32(0, 100).text(1, 'x').bool(2, false).u64(3, 0).ms(4, 0).endRow();
  await insert();
  assert.deepEqual(await db.query(`SELECT n, s, b FROM ${db.table('w')} WHERE n >= 99 ORDER BY n`), [{ n: 100, s: 'x', b: false }]);
});

test('a client that is not the embedded one (the server path) gets TabSeparated from the real sink, hostile lines byte for byte', async () => {
  await bus.ensureTopics();
  const db = await database('server');
  // A wrapped client, as a server's: no binary columns; every logs insert recorded by format.
  const wrapped = clickHouseOn(() => new Proxy(ch.client, {}), 'embedded', db.database, () => Promise.resolve());
  assert.equal(columnarInserts(wrapped), false);
  const formats: string[] = [];
  const tapped = tapInserts(wrapped, {
    insertEncoded: async (table, enc) => {
      if (table === 'logs') formats.push('format' in enc ? enc.format : 'TabSeparated');
      await wrapped.insertEncoded(table, enc);
    },
  });
  const events = hostileEvents('s');
  for (const e of events) await bus.publish('logs', [{ event: e }]);
  const sub = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: tapped, logger: ns.logger, registry: createRegistry(false), group: `${ns.id}-server` });
  let rows: Row[] = [];
  try {
    await eventually(
      'every hostile line written',
      async () => {
        rows = await db.query<Row>(`SELECT ${COLUMNS} FROM ${db.table('logs')} FINAL WHERE startsWith(event_id, 's-') ORDER BY seq`);
        return rows.length === events.length ? rows : undefined;
      },
      60_000,
    );
  } finally {
    await sub.stop();
  }
  assert.ok(formats.length > 0 && formats.every((f) => f === 'TabSeparated'), `formats: ${formats.join(',')}`);
  assert.deepEqual(
    rows.map((r) => r.line_hex),
    HOSTILE.map(([, line]) => line.toString('hex').toUpperCase()),
  );
});

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openClickHouse } from '../lib/clickhouse/client.js';
import { SQL_DIR, loadMigrations, migrate, splitStatements } from '../lib/clickhouse/migrate.js';
import { assertReadOnly } from '../lib/clickhouse/readonly.js';
import { readOnlyQuery } from '../lib/clickhouse/query.js';
import { TableBatcher } from '../lib/clickhouse/batcher.js';
import { cli, namespace } from './helpers/env.js';

const ns = namespace();
const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
after(async () => {
  await ch.close();
  ns.cleanup();
});

test('migrations apply twice without error, recorded once each', async () => {
  const first = await migrate(ch, ns.logger);
  const all = loadMigrations(SQL_DIR, ns.id).map((m) => m.version);
  assert.deepEqual(first.applied, all);
  const second = await migrate(ch, ns.logger);
  assert.deepEqual(second.applied, []);
  assert.deepEqual(second.skipped, all);
  // The statements themselves are idempotent too (a run cut between a statement and its record).
  for (const m of loadMigrations(SQL_DIR, ns.id)) for (const s of m.statements) await ch.client.command({ query: s });
  const rs = await ch.client.query({ query: `SELECT count() AS n FROM ${ns.id}.schema_migrations FINAL`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ n: all.length }]);
});

test('a migration edited after it was applied is refused', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'logmeter-sql-'));
  cpSync(SQL_DIR, dir, { recursive: true });
  const first = loadMigrations(dir, ns.id)[0]!;
  const file = path.join(dir, `${String(first.version).padStart(3, '0')}_${first.name}.sql`);
  writeFileSync(file, `-- edited\nCREATE TABLE IF NOT EXISTS \${database}.other (x UInt8) ENGINE = Memory;\n`);
  await assert.rejects(migrate(ch, ns.logger, dir), /was changed after it was applied/);
});

test('insert and query through the embedded ClickHouse, values bound not spliced', async () => {
  await migrate(ch, ns.logger);
  const row = (offset: number, reason: string) => ({
    event_id: `dl-${offset}`,
    node: 'n1',
    ts: 1_764_000_000_000 + offset,
    source_topic: 'logmeter.logs',
    source_partition: 2,
    source_offset: offset,
    source_timestamp: 1_764_000_000_000,
    consumer_group: 'g',
    key: null,
    payload: 'raw',
    error_code: 'bad_magic_byte',
    reason,
  });
  const tricky = `it's a "quote" \\ backslash'); DROP TABLE x; --`;
  await ch.client.insert({ table: ch.table('dead_letters'), values: [row(10, 'plain'), row(11, tricky), row(10, 'plain')], format: 'JSONEachRow' });
  const rs = await ch.client.query({
    query: `SELECT source_offset, reason FROM ${ch.table('dead_letters')} FINAL WHERE reason = {reason:String} ORDER BY source_offset`,
    query_params: { reason: tricky },
    format: 'JSONEachRow',
  });
  assert.deepEqual(await rs.json(), [{ source_offset: 11, reason: tricky }]);
  const all = await ch.client.query({ query: `SELECT count() AS n FROM ${ch.table('dead_letters')} FINAL`, format: 'JSONEachRow' });
  assert.deepEqual(await all.json(), [{ n: 2 }], 'the duplicate dead letter (same event_id) is one row');
});

test('read-only guard: SELECT, SHOW, DESCRIBE pass; writes and stacked statements do not', async () => {
  for (const ok of ['SELECT 1', '  select 1;', 'WITH 1 AS x SELECT x', 'SHOW TABLES', 'DESCRIBE TABLE t', "SELECT ';' AS semi", '-- note\nSELECT 2', '/* c */ SELECT 3']) assert.doesNotThrow(() => assertReadOnly(ok), ok);
  assert.doesNotThrow(() => assertReadOnly("SELECT 'INTO OUTFILE' AS s"));
  for (const bad of ["SELECT 1 INTO OUTFILE '/tmp/x'", 'INSERT INTO t VALUES (1)', 'DROP TABLE t', 'SELECT 1; DROP TABLE t', 'ALTER TABLE t DELETE WHERE 1', '', '   ;  ', 'OPTIMIZE TABLE t', '/* SELECT */ TRUNCATE t', 'SYSTEM SHUTDOWN']) assert.throws(() => assertReadOnly(bad), /refused|empty/, bad);
  assert.equal((await readOnlyQuery(ch, 'SELECT 1 AS one')).trim(), '{"one":1}');
  // An operator query leaves the shared embedded session writable for the pipeline.
  await ch.client.command({ query: `CREATE TABLE IF NOT EXISTS ${ns.id}.after_sql (a UInt8) ENGINE = Memory` });
  await ch.client.insert({ table: `${ns.id}.after_sql`, values: [{ a: 1 }], format: 'JSONEachRow' });
});

test('splitStatements keeps multi-line statements and drops comment lines', () => {
  assert.deepEqual(splitStatements('-- a\nCREATE X\n  (a);\n\nCREATE Y;\n'), ['CREATE X\n  (a)', 'CREATE Y']);
});

test('logmeter sql refuses an INSERT with a clear message and prints SELECT rows as JSON lines', async () => {
  const own = namespace();
  try {
    const refused = await cli(['sql', `INSERT INTO ${own.id}.dead_letters (event_id) VALUES ('x')`], own.env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /refused: only SELECT, SHOW and DESCRIBE statements are allowed \(got INSERT\)/);
    const rows = await cli(['sql', '--direct', 'SELECT number AS n, toString(number) AS s FROM system.numbers LIMIT 3'], own.env);
    assert.equal(rows.code, 0, rows.stderr);
    assert.equal(rows.stdout, '{"n":0,"s":"0"}\n{"n":1,"s":"1"}\n{"n":2,"s":"2"}\n');
  } finally {
    own.cleanup();
  }
});

test('batcher: inserts at maxRows; before maxMs once every active source waits; one insert per batch, rows exact', async () => {
  await migrate(ch, ns.logger);
  await ch.client.command({ query: `CREATE TABLE IF NOT EXISTS ${ns.id}.batched (src String, n UInt32) ENGINE = MergeTree ORDER BY (src, n)` });
  const inserts: number[] = [];
  // maxMs is far beyond the test's timeout: an insert can only come from rows or waiting sources.
  const b = new TableBatcher(ch, 'batched', undefined, { maxRows: 1000, maxMs: 3_600_000, minGapMs: 0 }, (n) => inserts.push(n));
  const rows = (src: string, from: number, count: number) => Array.from({ length: count }, (_, i) => ({ src, n: from + i }));
  // At maxRows, whatever the sources.
  await b.add(rows('a', 0, 1000), 'a');
  assert.deepEqual(inserts, [1000]);
  // a was active a moment ago and is not waiting: b's rows wait for it (or for maxMs)…
  let bDone = false;
  const pb = b.add(rows('b', 0, 5), 'b').then(() => (bDone = true));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(bDone, false);
  assert.deepEqual(inserts, [1000]);
  // …and once a waits too, no more rows can come: one insert takes both.
  await Promise.all([pb, b.add(rows('a', 1000, 10), 'a')]);
  assert.deepEqual(inserts, [1000, 15]);
  const rs = await ch.client.query({ query: `SELECT src, count() AS c FROM ${ns.id}.batched GROUP BY src ORDER BY src`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ src: 'a', c: 1010 }, { src: 'b', c: 5 }]);
});

/**
 * Operator SQL stays inside logmeter's tables (issue 12): every escape attempt of
 * test/helpers/escapes.ts is refused with `sql_refused`, through `POST /api/v1/admin/sql`
 * of a real API server and through `logmeter sql --direct` (the CLI's own process runs
 * the guard), and a canary file outside the data directory never shows in an answer.
 * Also: limits, the audit trail, and the shared session still writable afterwards.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openClickHouse, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { runOperatorSql } from '../lib/clickhouse/operator-sql.js';
import { createRegistry } from '../lib/metrics.js';
import { startApi, type ApiServer } from '../api/server.js';
import { cli, namespace } from './helpers/env.js';
import { escapeAttempts } from './helpers/escapes.js';

const ADMIN = `admin-${randomBytes(16).toString('hex')}`;
const ns = namespace({ LOGMETER_ADMIN_TOKEN: ADMIN });
const canaryDir = mkdtempSync(path.join(tmpdir(), 'logmeter-canary-'));
const SECRET = `canary-${randomBytes(16).toString('hex')}`;
const CANARY = path.join(canaryDir, 'secret.txt');
let ch: ClickHouse;
let api: ApiServer;

before(async () => {
  writeFileSync(CANARY, `${SECRET}\n`);
  ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  await migrate(ch, ns.logger);
  api = await startApi({ config: ns.config, ch, logger: ns.logger, registry: createRegistry(false) });
});
after(async () => {
  await api?.close();
  await ch?.close();
  ns.cleanup();
  rmSync(canaryDir, { recursive: true, force: true });
});

async function viaHttp(query: string, token = ADMIN): Promise<{ status: number; text: string }> {
  const r = await fetch(`${api.address}/api/v1/admin/sql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
  return { status: r.status, text: await r.text() };
}

const ATTEMPTS = escapeAttempts(CANARY, ns.id);

test(`${ATTEMPTS.length} escape attempts through POST /api/v1/admin/sql: each refused with sql_refused, the canary never read, each audited`, async () => {
  assert.ok(ATTEMPTS.length >= 25);
  const failures: string[] = [];
  for (const [name, sql] of ATTEMPTS) {
    const r = await viaHttp(sql);
    let code: unknown;
    try {
      code = (JSON.parse(r.text) as { code?: unknown }).code;
    } catch {
      /* not JSON: a failure below */
    }
    if (r.status !== 400 || code !== 'sql_refused') failures.push(`${name}: ${r.status} ${r.text.slice(0, 200)}`);
    if (r.text.includes(SECRET)) failures.push(`${name}: CANARY IN ANSWER`);
  }
  assert.deepEqual(failures, []);
  const audit = await ch.query<{ n: number; who: string }>(`SELECT count() AS n, any(who) AS who FROM ${ch.table('audit')} WHERE via = 'http' AND outcome = 'refused'`);
  assert.deepEqual(audit, [{ n: ATTEMPTS.length, who: 'admin@127.0.0.1' }]);
  const leaked = await ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('audit')} WHERE position(reason, {s:String}) > 0`, { s: SECRET });
  assert.deepEqual(leaked, [{ n: 0 }], 'no refusal reason holds the canary either');
});

test(`the same ${ATTEMPTS.length} attempts through logmeter sql --direct: each refused, the canary never printed`, async () => {
  // Each CLI run opens its own store (a fresh data directory): the CLI process itself runs the guard.
  const failures: string[] = [];
  const queue = [...ATTEMPTS];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [name, sql] = next;
      const dataDir = mkdtempSync(path.join(tmpdir(), `logmeter-${ns.id}-cli-`));
      try {
        const r = await cli(['sql', '--direct', sql], { ...ns.env, LOGMETER_DATA_DIR: dataDir });
        // The refusal, and its audit line (pino, warn: the CLI logs to stderr).
        if (r.code !== 1 || !/logmeter: refused/.test(r.stderr) || !/"audit":true.*"outcome":"refused"/.test(r.stderr)) failures.push(`${name}: exit ${r.code} ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 300)}`);
        if (r.stdout.includes(SECRET) || r.stderr.includes(SECRET)) failures.push(`${name}: CANARY IN OUTPUT`);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  assert.deepEqual(failures, []);
});

test("allowed: logmeter's tables, SHOW/DESCRIBE/EXPLAIN of them, CTEs, numbers(); rows audited", async () => {
  const ok = async (sql: string) => {
    const r = await viaHttp(sql);
    assert.equal(r.status, 200, `${sql}: ${r.text}`);
    return r.text;
  };
  assert.equal(await ok('SELECT 1 AS one'), '{"one":1}\n');
  assert.equal(await ok(`WITH w AS (SELECT version FROM ${ns.id}.schema_migrations) SELECT count() > 0 AS any FROM w`), '{"any":1}\n');
  assert.match(await ok(`SHOW TABLES FROM ${ns.id}`), /"name":"audit"/);
  assert.match(await ok(`DESCRIBE ${ns.id}.audit`), /"name":"statement"/);
  assert.match(await ok(`EXPLAIN SELECT * FROM ${ns.id}.audit`), /explain/);
  assert.equal(await ok('SELECT sum(number) AS s FROM numbers(4)'), '{"s":6}\n');
  const rows = await ch.query<{ rows: number }>(`SELECT rows FROM ${ch.table('audit')} WHERE outcome = 'ok' AND statement = 'SELECT sum(number) AS s FROM numbers(4)'`);
  assert.deepEqual(rows, [{ rows: 1 }]);
});

test('limits: rows, time and memory caps answer sql_limit; the shared session still inserts afterwards', async () => {
  const big = await viaHttp('SELECT number FROM numbers(200000)');
  assert.equal(big.status, 400);
  assert.match(big.text, /max_result_rows.*"code":"sql_limit"/);
  const ctx = { who: 'test', via: 'cli' as const, logger: ns.logger };
  await assert.rejects(runOperatorSql(ch, 'SELECT count() FROM numbers(100000000000)', { ...ctx, limits: { maxExecutionSeconds: 1 } }), { code: 'sql_limit', message: /max_execution_time/ });
  await assert.rejects(runOperatorSql(ch, 'SELECT groupArray(number) FROM numbers(100000000)', { ...ctx, limits: { maxMemoryBytes: 50_000_000 } }), { code: 'sql_limit', message: /max_memory_usage/ });
  // The limits and readonly live on the operator's own connection: the process's session is untouched.
  assert.deepEqual(await ch.query(`SELECT getSetting('readonly') AS r, getSetting('max_result_rows') AS m`), [{ r: 0, m: 0 }]);
  await ch.command(`CREATE TABLE IF NOT EXISTS ${ch.table('after_operator')} (a UInt8) ENGINE = Memory`);
  await ch.insert('after_operator', [{ a: 1 }]);
  assert.deepEqual(await ch.query(`SELECT count() AS n FROM ${ch.table('after_operator')}`), [{ n: 1 }]);
});

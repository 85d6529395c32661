/**
 * The commands over the API: `logmeter logs` through the running process or directly,
 * and `logmeter api` as a process of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runLogs } from '../cli/logs.js';
import { eventually, namespace } from './helpers/env.js';
import { ADMIN, GLOBEX_NEWEST_FIRST, LOGS, LOG_COLUMNS, TOKENS, apiFixture, at, closedPort, logRow, script, type LogFixture } from './helpers/api.js';

const { ns, server, insertLogs } = apiFixture();

test('logmeter logs through the running process: oldest to newest, filters, tail limit', async () => {
  const cfg = { ...ns.config, http: { listen: server().address.replace(/^http:\/\//, '') } };
  const run = async (opts: Parameters<typeof runLogs>[1]) => {
    let out = '';
    await runLogs(cfg, opts, (s) => (out += s));
    return out;
  };
  assert.equal(
    await run({ tenant: 'acme', app: 'web', grep: "' or 1=1" }),
    `${at(3000)} acme/web web-1 stdout: user said ' OR 1=1 -- and "; DROP TABLE logs; -- then left\n`,
  );
  assert.equal(
    await run({ tenant: 'acme', container: 'web-1', limit: '3' }),
    [`${at(7000)} acme/web web-1 stdout: progress 1000 items`, `${at(8000)} acme/web web-1 stdout: ran SELECT * FROM logs WHERE 1=1`, `${at(9000)} acme/web web-1 operation: die exit_code=3`, ''].join('\n'),
  );
  const all = await run({ tenant: 'globex', limit: '1000' });
  assert.deepEqual(
    all.trimEnd().split('\n').map((l) => l.slice(l.indexOf(': ') + 2)),
    [...GLOBEX_NEWEST_FIRST].reverse().map(([, line]) => line),
  );
  await assert.rejects(run({ tenant: 'acme', kind: 'trace' }), /^LogmeterError: kind: Invalid option/);
  await assert.rejects(run({ tenant: 'acme', since: 'a while' }), /--since: expected a duration ago/);
  await assert.rejects(run({ tenant: 'acme', limit: '0' }), /--limit: expected a positive integer/);
});

test('logmeter logs --follow prints new rows once, late ones within the grace window too', async () => {
  const cfg = { ...ns.config, http: { listen: server().address.replace(/^http:\/\//, '') } };
  const tenant = 'hooli';
  const now = Date.now();
  const line = (id: string, ms: number): LogFixture => ({ id, tenant, app: 'app', container: 'c-1', ms, stream: 'stdout', kind: 'debug', line: `line ${id}` });
  await insertLogs([line('h-1', now - 60_000), line('h-2', now - 30_000), line('h-3', now - 20_000)]);
  let out = '';
  const stop = new AbortController();
  const running = runLogs(cfg, { tenant, limit: '2', follow: true }, (s) => (out += s), stop.signal);
  try {
    await eventually('the tail', async () => (out.includes('line h-3') ? true : undefined));
    await insertLogs([line('h-4', Date.now())]);
    await eventually('a new line', async () => (out.includes('line h-4') ? true : undefined));
    // Redelivered, and a line that reached ClickHouse late, stamped before the newest printed one.
    await insertLogs([line('h-4', Date.now()), line('h-5', Date.now() - 2000), line('h-6', Date.now() + 1)]);
    await eventually('the late line', async () => (out.includes('line h-5') && out.includes('line h-6') ? true : undefined));
    // Two more polls, which must not print anything again.
    await new Promise((r) => setTimeout(r, 2500));
  } finally {
    stop.abort();
    await running;
  }
  const printed = out.trimEnd().split('\n').map((l) => l.slice(l.lastIndexOf(' ') + 1));
  assert.deepEqual(printed.slice(0, 3), ['h-2', 'h-3', 'h-4'], 'h-1 is older than the tail of two and never printed');
  assert.deepEqual(new Set(printed.slice(3)), new Set(['h-5', 'h-6']));
  assert.equal(printed.length, 5, `each line once:\n${out}`);
});

test('logmeter logs reads ClickHouse directly when no process answers', async () => {
  const own = namespace({ LOGMETER_HTTP: `127.0.0.1:${await closedPort()}` });
  try {
    // It stores two lines, then runs the command, which finds no process on LOGMETER_HTTP.
    const run = script(
      `
      import { Command } from 'commander';
      import { loadConfig } from './app/config.ts';
      import { createLogger } from './lib/logger.ts';
      import { clickHouseOptions, openClickHouse } from './lib/clickhouse/client.ts';
      import { migrate } from './lib/clickhouse/migrate.ts';
      import { logsCommand } from './cli/logs.ts';
      const config = () => loadConfig({ env: process.env });
      const ch = openClickHouse(clickHouseOptions(config(), createLogger('warn', 2)));
      await migrate(ch, createLogger('warn', 2));
      await ch.insert('logs', ${JSON.stringify([logRow(LOGS[2]!), logRow(LOGS[10]!)])}, ${JSON.stringify(LOG_COLUMNS)});
      await ch.close();
      const program = new Command().exitOverride();
      logsCommand(program, config);
      await program.parseAsync(['node', 'logmeter', 'logs', '--tenant', 'acme', '--grep', "' OR 1=1 --"]);
    `,
      own.env,
    );
    assert.equal(await run.exited, 0, run.output());
    assert.equal(run.output(), `${at(3000)} acme/web web-1 stdout: user said ' OR 1=1 -- and "; DROP TABLE logs; -- then left\n`);
  } finally {
    own.cleanup();
  }
});

test('logmeter api serves the API, /healthz and the operator SQL route, and stops cleanly on SIGTERM', async () => {
  const port = await closedPort();
  const own = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_API_TOKENS: `acme:${TOKENS.acme}`, LOGMETER_ADMIN_TOKEN: ADMIN });
  const run = script(
    `
    import { Command } from 'commander';
    import { loadConfig } from './app/config.ts';
    import { apiCommand } from './cli/api.ts';
    const program = new Command().exitOverride();
    apiCommand(program, () => loadConfig({ env: process.env }));
    await program.parseAsync(['node', 'logmeter', 'api']);
  `,
    own.env,
  );
  try {
    await eventually('logmeter api up', async () => (run.output().includes('"msg":"logmeter api up"') ? true : undefined), 60_000);
    const base = `http://127.0.0.1:${port}`;
    const health = await fetch(`${base}/healthz`);
    assert.deepEqual(await health.json(), { status: 'ok', checks: { clickhouse: 'ok' } });
    const logs = await fetch(`${base}/api/v1/logs`, { headers: { authorization: `Bearer ${TOKENS.acme}` } });
    assert.deepEqual({ status: logs.status, body: await logs.json() }, { status: 200, body: { items: [], next_cursor: null } });
    assert.equal((await fetch(`${base}/api/v1/logs`)).status, 401);
    const sql = await fetch(`${base}/api/v1/admin/sql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify({ query: `SELECT count() AS n FROM ${own.id}.logs` }),
    });
    assert.equal(await sql.text(), '{"n":0}\n');
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.output());
    assert.match(run.output(), /"msg":"stopped"/);
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
    own.cleanup();
  }
});

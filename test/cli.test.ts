import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dockerClient } from '../lib/docker.js';
import { DEMO_LABEL } from '../app/demo.js';
import { PROCESSORS } from '../app/pipeline.js';
import { SQL_DIR, loadMigrations } from '../lib/clickhouse/migrate.js';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, cli, cliBackground, eventually, namespace, freePort } from './helpers/env.js';
import { escapeControls, formatLine } from '../cli/logs.js';


test('logmeter up --demo starts, serves /healthz, /metrics and sql, and stops cleanly on SIGTERM', async () => {
  const port = await freePort();
  const ns = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_LB_BIND: `127.0.0.1:${await freePort()}` });
  const docker = dockerClient(ns.config.docker.host);
  const demoFilter = { filters: JSON.stringify({ label: [`${DEMO_LABEL}=true`] }) };
  const up = cliBackground(['up', '--demo'], ns.env);
  try {
    await up.waitFor(/"msg":"logmeter up"/, 120_000);

    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as { status: string; checks: Record<string, string>; details?: { collector?: { dockerEvents?: { phase?: string }; followers?: Record<string, { count: number }> } } };
    assert.deepEqual({ status: body.status, checks: body.checks }, { status: 'ok', checks: { kafka: 'ok', consumers: 'ok', clickhouse: 'ok', collector: 'ok', routes: 'ok' } });
    // The collector's details say phases and counts, never a tenant or a container (no token needed for /healthz).
    // The events stream is open: read, or an event handled at this moment (the demo's containers start; the collector's thread runs meanwhile).
    assert.ok(['reading', 'handling'].includes(body.details?.collector?.dockerEvents?.phase ?? ''), JSON.stringify(body.details?.collector?.dockerEvents));
    assert.ok(Object.values(body.details?.collector?.followers ?? {}).every((f) => Number.isInteger(f.count) && f.count > 0));
    assert.doesNotMatch(JSON.stringify(body), /acme|globex|[0-9a-f]{64}/);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^logmeter_process_cpu_user_seconds_total \d/m);
    // The collector runs on a thread of its own (collector.thread): its metrics under their usual names, the thread's next to them.
    assert.match(metrics, /^logmeter_collector_lines_produced_total \d/m);
    assert.match(metrics, /^logmeter_thread_up\{thread="collector"\} 1$/m);
    assert.deepEqual((body.details as Record<string, unknown> | undefined)?.['thread:collector'], { state: 'running', restarts: 0 });

    // The demo prints a token per demo tenant for the panel; each sees its own tenant only.
    await up.waitFor(/as tenant globex with the token/, 30_000);
    for (const [tenant, other] of [['acme', 'globex'], ['globex', 'acme']] as const) {
      const line = new RegExp(`demo: sign in to http://127\\.0\\.0\\.1:${port}/ as tenant ${tenant} with the token (demo-${tenant}-[A-Za-z0-9_-]{24})"`).exec(up.output());
      assert.ok(line, `the demo prints ${tenant}'s token`);
      // Its containers show once their lifecycle rows are in; at most a minute.
      let items: Array<{ tenant: string }> = [];
      for (let i = 0; i < 120 && items.length === 0; i++) {
        const own = await fetch(`http://127.0.0.1:${port}/api/v1/containers`, { headers: { authorization: `Bearer ${line[1]}` } });
        assert.equal(own.status, 200);
        items = ((await own.json()) as { items: Array<{ tenant: string }> }).items;
        if (items.length === 0) await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(items.length > 0, `${tenant}'s containers are listed`);
      assert.ok(items.every((c) => c.tenant === tenant) && !items.some((c) => c.tenant === other), `${tenant}'s token sees ${tenant}'s containers only`);
    }

    const running = await docker.listContainers(demoFilter);
    // The three tenant containers and the "internet" client (the scaler may already have added replicas).
    const names = running.flatMap((c) => c.Names.map((n) => n.replace(/^\//, '')));
    for (const n of ['logmeter-demo-acme-shop-1', 'logmeter-demo-acme-jobs-1', 'logmeter-demo-globex-api-1', 'logmeter-demo-internet']) assert.ok(names.includes(n), `${n} runs`);
    assert.deepEqual(new Set(running.map((c) => c.Labels['logmeter.tenant']).filter(Boolean)), new Set(['acme', 'globex']));

    // The embedded store is held by `up`: a direct open fails, the default path goes through the process.
    const direct = await cli(['sql', '--direct', 'SELECT 1'], ns.env);
    assert.equal(direct.code, 1);
    assert.match(direct.stderr, /held by another process/);
    const viaProcess = await cli(['sql', `SELECT version, name FROM ${ns.id}.schema_migrations FINAL ORDER BY version`], ns.env);
    assert.equal(viaProcess.code, 0, viaProcess.stderr);
    assert.equal(viaProcess.stdout, loadMigrations(SQL_DIR, ns.id).map((m) => `${JSON.stringify({ version: m.version, name: m.name })}\n`).join(''));
    const refused = await cli(['sql', 'DROP DATABASE system'], ns.env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /refused/);

    up.child.kill('SIGTERM');
    // The failure bound is the test's own timeout (minutes); the stop says what it waits for, step by step.
    assert.equal(await up.exited, 0, up.output());
    assert.match(up.output(), /"msg":"stopped"/);
    const steps = [...up.output().matchAll(/"step":"([^"]+)"/g)].map((m) => m[1]!).sort();
    assert.deepEqual(steps, [...PROCESSORS.map((p) => `processor:${p}`), 'collector', 'demo containers', 'runtime (Kafka producer, ClickHouse, Redis)'].sort(), up.output());
    assert.equal((await docker.listContainers({ all: true, ...demoFilter })).length, 0, 'demo containers removed');
    const after = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    assert.equal(after, undefined, 'HTTP closed');
  } finally {
    if (up.child.exitCode === null) up.child.kill('SIGKILL');
    ns.cleanup();
  }
});

test('logmeter up fails with a clear error when Kafka is unreachable', async () => {
  const port = await freePort();
  const ns = namespace({ KAFKA_BROKERS: `127.0.0.1:${port}`, LOGMETER_STARTUP_TIMEOUT: '3' });
  try {
    const r = await cli(['up'], ns.env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`Kafka at 127\\.0\\.0\\.1:${port} \\(KAFKA_BROKERS\\) did not answer within 3 s .*ECONNREFUSED`));
  } finally {
    ns.cleanup();
  }
});

test('stack up twice in a row is harmless; status shows every service', async () => {
  const first = await cli(['stack', 'up'], process.env, 600_000);
  assert.equal(first.code, 0, first.stderr);
  const second = await cli(['stack', 'up'], process.env, 600_000);
  assert.equal(second.code, 0, second.stderr);
  const pids = (out: string): Record<string, string> =>
    Object.fromEntries(out.trim().split('\n').slice(1).map((l): [string, string] => { const c = l.split(/\s+/); return [c[0] ?? '', `${c[1]} ${c[4]}`]; }));
  assert.deepEqual(pids(second.stdout), pids(first.stdout), 'nothing restarted');
  const status = await cli(['stack', 'status']);
  assert.equal(status.code, 0);
  for (const svc of ['docker', 'redis', 'kafka']) assert.match(status.stdout, new RegExp(`^${svc}\\s+running`, 'm'));
  assert.match(status.stdout, /^haproxy\s+stopped\s+.*installed 2\./m);
});

test('logmeter up --demo, then logmeter report: a bill with external traffic, requests, log bytes and container-seconds', async () => {
  const port = await freePort();
  const cfgFile = path.join(tmpdir(), `logmeter-demo-${process.pid}-${Date.now()}.yaml`);
  writeFileSync(cfgFile, 'processors:\n  usageIntervalSeconds: 2\n');
  const ns = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_STATS_INTERVAL: '1', LOGMETER_CONFIG: cfgFile, LOGMETER_LB_BIND: `127.0.0.1:${await freePort()}` });
  const up = cliBackground(['up', '--demo'], ns.env);
  try {
    await up.waitFor(/"msg":"logmeter up"/, 120_000);
    const today = new Date().toISOString().slice(0, 10);
    const report = await eventually('a bill with every kind of usage', async () => {
      const r = await cli(['report', '--tenant', 'acme', '--period', today, '--format', 'json'], ns.env);
      if (r.code !== 0) return undefined;
      const rep = JSON.parse(r.stdout) as { line_items: Array<{ meter: string; quantity: string }> };
      const q = (m: string) => rep.line_items.filter((li) => li.meter === m).reduce((s, li) => s + Number(li.quantity), 0);
      return ['egress_external_bytes', 'requests', 'log_bytes', 'container_seconds', 'internal_bytes'].every((m) => q(m) > 0) ? rep : undefined;
    }, 120_000);
    assert.ok(report.line_items.length > 0);
    up.child.kill('SIGTERM');
    assert.equal(await up.exited, 0, up.output());
  } finally {
    if (up.child.exitCode === null) up.child.kill('SIGKILL');
    ns.cleanup();
  }
});

test('logmeter logs on a terminal: a line\'s control characters are shown, never sent (colours, OSC title, bell, C1)', () => {
  const line = 'ok \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \x1b]52;c;Y2xpcA==\x07 bs\b cr\r c1\u009b2J tab\tkept é € \\x1b stays text';
  assert.equal(
    escapeControls(line),
    'ok \\x1b[31mred\\x1b[0m \\x1b]0;pwned\\x07 \\x1b]52;c;Y2xpcA==\\x07 bs\\x08 cr\\x0d c1\\x9b2J tab\tkept é € \\\\x1b stays text',
  );
  const item = { ts: '2026-11-26T10:00:00.000Z', tenant: 'acme', app: 'web', container_name: 'web-1', container_id: 'c'.repeat(64), stream: 'stdout', line: 'a\x1bb' } as Parameters<typeof formatLine>[0];
  assert.equal(formatLine(item, true), '2026-11-26T10:00:00.000Z acme/web web-1 stdout: a\\x1bb\n');
  // Piped (not a terminal) or --raw: the bytes as stored.
  assert.equal(formatLine(item), '2026-11-26T10:00:00.000Z acme/web web-1 stdout: a\x1bb\n');
});

test('logmeter report and logmeter sql go through a running logmeter api (it holds the embedded store)', async () => {
  const port = await freePort();
  const ns = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info' });
  // One hour of acme's usage, stored before the api process takes the embedded store.
  const seed = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `
      import { loadConfig } from './app/config.ts';
      import { createLogger } from './lib/logger.ts';
      import { clickHouseOptions, openClickHouse } from './lib/clickhouse/client.ts';
      import { migrate } from './lib/clickhouse/migrate.ts';
      const logger = createLogger('warn', 2);
      const ch = openClickHouse(clickHouseOptions(loadConfig({ env: process.env }), logger));
      await migrate(ch, logger);
      await ch.insert('usage', [{ event_id: 'u-1', tenant: 'acme', app: 'web', period: 'hour', ts: Date.parse('2026-11-26T10:00:00Z'), meter: 'requests', unit: 'request', quantity: 10, dimensions: {}, version: 1 }]);
      await ch.close();
    `,
    ],
    { cwd: ROOT, env: ns.env, encoding: 'utf8' },
  );
  assert.equal(seed.status, 0, seed.stderr);
  const api = cliBackground(['api'], ns.env);
  try {
    await api.waitFor(/"msg":"logmeter api up"/, 60_000);
    const r = await cli(['report', '--tenant', 'acme', '--period', '2026-11-26', '--format', 'json'], ns.env);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { tenant: string; period: { label: string }; line_items: Array<{ meter: string; quantity: string }> };
    assert.deepEqual([report.tenant, report.period.label], ['acme', '2026-11-26']);
    assert.deepEqual(report.line_items.filter((li) => li.meter === 'requests').map((li) => Number(li.quantity)), [10]);
    // Written by the api process: its files under its data directory, its rows in its store.
    const files = path.join(ns.dataDir, 'reports', 'acme', '2026-11-26');
    assert.equal(r.stderr, `wrote ${files}.csv and ${files}.json\n`);
    // --out through the process: the same bytes under DIR (the process keeps its own copies).
    const out = path.join(ns.dataDir, 'elsewhere', 'rep1');
    const copied = await cli(['report', '--tenant', 'acme', '--period', '2026-11-26', '--format', 'csv', '--out', out], ns.env);
    assert.equal(copied.code, 0, copied.stderr);
    const copies = path.join(out, 'acme', '2026-11-26');
    assert.equal(copied.stderr, `wrote ${copies}.csv and ${copies}.json\n`);
    assert.equal(copied.stdout, readFileSync(`${files}.csv`, 'utf8'));
    for (const ext of ['csv', 'json']) assert.deepEqual(readFileSync(`${copies}.${ext}`), readFileSync(`${files}.${ext}`), `${ext} byte-identical`);
    assert.deepEqual(readdirSync(out, { recursive: true }).sort(), ['acme', 'acme/2026-11-26.csv', 'acme/2026-11-26.json']);
    const sql = await cli(['sql', `SELECT meter, quantity FROM ${ns.id}.billing_line_items FINAL WHERE tenant = 'acme' AND meter = 'requests'`], ns.env);
    assert.equal(sql.code, 0, sql.stderr);
    assert.match(sql.stdout, /^\{"meter":"requests","quantity":"?10(\.0+)?"?\}\n$/);
    api.child.kill('SIGTERM');
    assert.equal(await api.exited, 0, api.output());
  } finally {
    if (api.child.exitCode === null) api.child.kill('SIGKILL');
    ns.cleanup();
  }
});

/**
 * No token, no data (issue 12): `logmeter api` started the README's way (no
 * LOGMETER_ADMIN_TOKEN) creates the operator token file 0600 and logs its path, never
 * the token; every /api/v1 route answers 401 to a loopback caller without a token;
 * `logmeter sql` on the same host reads the file; a file open to others is refused with
 * how to fix it; `logmeter admin-token rotate` invalidates the old token at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readAdminTokenFile } from '../lib/admin-token.js';
import { cli, cliBackground, namespace, freePort } from './helpers/env.js';


const ROUTES: Array<[method: 'GET' | 'POST', target: string]> = [
  ['GET', '/api/v1/logs'],
  ['GET', '/api/v1/logs?tenant=acme'],
  ['GET', '/api/v1/usage'],
  ['GET', '/api/v1/reports'],
  ['GET', '/api/v1/reports/acme-2026-11'],
  ['GET', '/api/v1/containers'],
  ['GET', '/api/v1/containers/abc/lifecycle'],
  ['POST', '/api/v1/admin/sql'],
  // `/admin/report` is served by `logmeter up` only; test/security.test.ts covers it without a token.
];

test('admin-token file: refused when open to group or others, not a plain file, or too short', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'logmeter-token-'));
  try {
    const file = path.join(dir, 'admin-token');
    assert.equal(readAdminTokenFile(file), undefined, 'absent: no token');
    writeFileSync(file, 'x'.repeat(43), { mode: 0o600 });
    assert.equal(readAdminTokenFile(file), 'x'.repeat(43));
    for (const mode of [0o640, 0o604, 0o644, 0o666]) {
      chmodSync(file, mode);
      assert.throws(() => readAdminTokenFile(file), new RegExp(`mode 0${mode.toString(8)}\\): run chmod 600 ${file.replace(/[/.]/g, '\\$&')}`));
    }
    chmodSync(file, 0o600);
    const link = path.join(dir, 'link');
    symlinkSync(file, link);
    assert.throws(() => readAdminTokenFile(link), /not a regular file/);
    writeFileSync(file, 'short\n');
    assert.throws(() => readAdminTokenFile(file), /shorter than 16/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('logmeter api without LOGMETER_ADMIN_TOKEN: token file 0600, 401 on every /api/v1 route from loopback, the CLI reads the file, rotation refuses the old token at once', async () => {
  const port = await freePort();
  const ns = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_API_TOKENS: 'acme:acme-token-0123456789abcdef' });
  delete ns.env.LOGMETER_ADMIN_TOKEN;
  const base = `http://127.0.0.1:${port}`;
  const file = path.join(ns.dataDir, 'admin-token');
  const run = cliBackground(['api'], ns.env);
  try {
    await run.waitFor(/"msg":"logmeter api up"/, 120_000);
    const st = statSync(file);
    assert.equal(st.mode & 0o777, 0o600, 'created owner-only');
    const token = readFileSync(file, 'utf8').trim();
    assert.ok(Buffer.from(token, 'base64url').length >= 32, 'at least 32 bytes of entropy');
    assert.ok(run.output().includes(file), 'the path is logged');
    assert.ok(!run.output().includes(token), 'the token is never logged');

    const call = (method: string, target: string, auth?: string) =>
      fetch(`${base}${target}`, {
        method,
        headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
        ...(method === 'POST' ? { body: JSON.stringify({ query: 'SELECT 1 AS one', tenant: 'acme', period: '2026-11' }) } : {}),
      });
    for (const [method, target] of ROUTES) {
      const r = await call(method, target);
      assert.equal(r.status, 401, `${method} ${target} without a token from loopback`);
      assert.equal(((await r.json()) as { code: string }).code, 'unauthorized');
    }
    assert.equal((await call('GET', '/healthz')).status, 200, '/healthz stays open');
    assert.equal((await call('GET', '/metrics')).status, 200, '/metrics stays open');
    assert.equal((await call('GET', '/api/v1/logs', token)).status, 200, 'the file token is the operator');
    assert.equal(await (await call('POST', '/api/v1/admin/sql', token)).text(), '{"one":1}\n');

    // The README's command, no token configured: the CLI reads the file.
    const sql = await cli(['sql', 'SELECT 2 AS two'], ns.env);
    assert.deepEqual([sql.code, sql.stdout], [0, '{"two":2}\n'], sql.stderr);

    chmodSync(file, 0o644);
    const loose = await cli(['sql', 'SELECT 2 AS two'], ns.env);
    assert.equal(loose.code, 1);
    assert.match(loose.stderr, new RegExp(`open to group or others \\(mode 0644\\): run chmod 600 ${file.replace(/[/.]/g, '\\$&')}`));
    assert.equal((await call('GET', '/api/v1/logs', token)).status, 401, 'the running process refuses a token file open to others too');
    chmodSync(file, 0o600);

    const rotated = await cli(['admin-token', 'rotate'], ns.env);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.ok(rotated.stdout.includes(file));
    const next = readFileSync(file, 'utf8').trim();
    assert.notEqual(next, token);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(!rotated.stdout.includes(next), 'rotate does not print the token');
    // At once: the very next request.
    assert.equal((await call('POST', '/api/v1/admin/sql', token)).status, 401, 'the old token is refused');
    assert.equal((await call('GET', '/api/v1/logs', token)).status, 401);
    assert.equal((await call('POST', '/api/v1/admin/sql', next)).status, 200, 'the new one works');
    const after = await cli(['sql', 'SELECT 3 AS three'], ns.env);
    assert.deepEqual([after.code, after.stdout], [0, '{"three":3}\n'], after.stderr);

    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.output());
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
    ns.cleanup();
  }
});

test('logmeter admin-token rotate refuses when the token is configured', async () => {
  const ns = namespace({ LOGMETER_ADMIN_TOKEN: 'configured-token-0123456789' });
  try {
    const r = await cli(['admin-token', 'rotate'], ns.env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /comes from LOGMETER_ADMIN_TOKEN/);
  } finally {
    ns.cleanup();
  }
});

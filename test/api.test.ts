/**
 * The log center API: log search, tenant isolation, authentication, parameters and
 * paging (test/api-resources.test.ts: usage, reports, containers; test/api-cli.test.ts:
 * the commands that use it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHttpServer } from '../lib/http.js';
import { createRegistry } from '../lib/metrics.js';
import { registerTenantRoutes } from '../api/index.js';
import type { LogItem } from '../api/logs.js';
import { createAuthenticator } from '../api/auth.js';
import { ACME_NEWEST_FIRST, ADMIN, GLOBEX_NEWEST_FIRST, INVALID, LOGS, T0, TOKENS, apiFixture, at, cid, ids, logsQuery, type LogFixture } from './helpers/api.js';

const { ns, ch, server, insertLogs, call, items } = apiFixture();


test('each tenant searches exactly its own lines and events, newest first, a redelivered line once', async () => {
  const acme = await items('/api/v1/logs', TOKENS.acme);
  assert.deepEqual(acme.map((i) => [i.event_id, i.line]), ACME_NEWEST_FIRST);
  const globex = await items('/api/v1/logs', TOKENS.globex);
  assert.deepEqual(globex.map((i) => [i.event_id, i.line]), GLOBEX_NEWEST_FIRST);

  assert.deepEqual(
    acme.find((i) => i.event_id === 'a-1'),
    {
      ts: at(1000),
      ts_nanos: 0,
      seq: 0,
      event_id: 'a-1',
      tenant: 'acme',
      app: 'web',
      container_id: cid('acme', 'web-1'),
      container_name: 'web-1',
      stream: 'stdout',
      kind: 'access',
      line: 'GET /index.html 200',
      invalid_utf8: false,
      truncated: false,
      original_length: 19,
      action: null,
      exit_code: null,
    },
  );
  assert.deepEqual(
    acme.find((i) => i.event_id === 'al-4'),
    {
      ts: at(9000),
      ts_nanos: 0,
      seq: 0,
      event_id: 'al-4',
      tenant: 'acme',
      app: 'web',
      container_id: cid('acme', 'web-1'),
      container_name: 'web-1',
      stream: null,
      kind: 'operation',
      line: 'die exit_code=3',
      invalid_utf8: false,
      truncated: false,
      original_length: 15,
      action: 'die',
      exit_code: 3,
    },
  );
  const { body } = await call('/api/v1/logs', TOKENS.acme);
  assert.equal(body.next_cursor, null);
});

test('filters: app, container (name, id, id prefix), stream, kind, time range', async () => {
  const acme = (params: Record<string, string>) => items(logsQuery(params), TOKENS.acme).then(ids);
  assert.deepEqual(await acme({ app: 'api' }), ['a-7', 'a-6', 'al-3']);
  assert.deepEqual(await acme({ container: 'web-1' }), ['al-4', 'a-9', 'a-8', 'a-5', 'a-4', 'a-3', 'a-2', 'a-1', 'al-2', 'al-1']);
  assert.deepEqual(await acme({ container: cid('acme', 'api-1') }), ['a-7', 'a-6', 'al-3']);
  assert.deepEqual(await acme({ container: cid('acme', 'api-1').slice(0, 12) }), ['a-7', 'a-6', 'al-3']);
  assert.deepEqual(await acme({ container: cid('acme', 'api-1').slice(0, 11) }), [], 'a prefix shorter than 12 characters matches nothing');
  assert.deepEqual(await acme({ stream: 'stderr' }), ['a-5', 'a-2']);
  assert.deepEqual(await acme({ kind: 'access' }), ['a-7', 'a-6', 'a-1']);
  assert.deepEqual(await acme({ kind: 'debug', app: 'web' }), ['a-9', 'a-8', 'a-5', 'a-4', 'a-3', 'a-2']);
  assert.deepEqual(await acme({ kind: 'start' }), ['al-3', 'al-2', 'al-1']);
  assert.deepEqual(await acme({ kind: 'operation' }), ['al-4']);
  assert.deepEqual(await acme({ from: at(2000), to: at(6000) }), ['a-5', 'a-4', 'a-3', 'a-2'], 'from inclusive, to exclusive');
  assert.deepEqual(await acme({ from: '2026-11-26T11:00:00+01:00', to: '2026-11-26T10:00:01' }), ['al-3', 'al-2', 'al-1'], 'zones honoured; no zone is UTC');
});

test("a tenant never sees another tenant's rows, whatever it asks for", async () => {
  const acme = (params: Record<string, string>) => items(logsQuery(params), TOKENS.acme).then(ids);
  const own = ACME_NEWEST_FIRST.map(([id]) => id);
  assert.deepEqual(await acme({ tenant: 'globex' }), own, 'tenant= is ignored for tenant tokens');
  assert.deepEqual(await acme({ app: 'shop' }), []);
  assert.deepEqual(await acme({ container: 'shop-1' }), []);
  assert.deepEqual(await acme({ container: cid('globex', 'shop-1') }), []);
  assert.deepEqual(await acme({ container: cid('globex', 'web-1') }), []);
  assert.deepEqual(await acme({ q: 'globex' }), []);
  assert.deepEqual(await acme({ app: 'web', container: 'web-1', kind: 'start' }), ['al-2', 'al-1'], "not globex's web-1 start");
});

test('search text is matched literally: quotes, backslashes, %, _ and SQL keywords', async () => {
  const search = (token: string, q: string) => items(logsQuery({ q }), token).then(ids);
  assert.deepEqual(await search(TOKENS.acme, `' OR 1=1 --`), ['a-3']);
  assert.deepEqual(await search(TOKENS.globex, `' OR 1=1 --`), ['g-2']);
  assert.deepEqual(await search(TOKENS.acme, `"; DROP TABLE logs; --`), ['a-3']);
  assert.deepEqual(await search(TOKENS.acme, 'drop table'), ['a-3'], 'ASCII letters case-insensitive');
  assert.deepEqual(await search(TOKENS.acme, 'select * from logs'), ['a-9']);
  assert.deepEqual(await search(TOKENS.acme, '\\'), ['a-4']);
  assert.deepEqual(await search(TOKENS.acme, 'C:\\temp\\new'), ['a-4']);
  assert.deepEqual(await search(TOKENS.acme, '\\\\'), [], 'two backslashes are two characters, not an escaped one');
  assert.deepEqual(await search(TOKENS.acme, '%'), ['a-4']);
  assert.deepEqual(await search(TOKENS.acme, '100%'), ['a-4'], "% is not a wildcard ('progress 1000 items' does not match)");
  assert.deepEqual(await search(TOKENS.acme, '_'), ['al-4', 'a-4'], "_ is not a wildcard (matches 'done_ok' and 'exit_code')");
  assert.deepEqual(await search(TOKENS.acme, '\\%'), []);
  assert.deepEqual(await search(TOKENS.acme, 'e_it'), []);
  assert.deepEqual(await search(TOKENS.acme, 'exit_code=3'), ['al-4'], 'lifecycle entries are searched as rendered');
  assert.deepEqual(await search(TOKENS.acme, "'"), ['a-3']);
  assert.deepEqual(await search(TOKENS.acme, '"'), ['a-3']);
  assert.deepEqual(await ch.query(`SELECT count() AS n FROM ${ch.table('logs')} FINAL`), [{ n: LOGS.length }], 'the table is intact');
});

test('an invalid UTF-8 line comes back as text and as its exact bytes', async () => {
  const acme = await items('/api/v1/logs', TOKENS.acme);
  const bad = acme.find((i) => i.event_id === 'a-5');
  assert.ok(bad);
  assert.equal(bad.invalid_utf8, true);
  assert.equal(bad.line, 'bad \uFFFD\uFFFD bytes');
  assert.deepEqual(Buffer.from(bad.line_base64 ?? '', 'base64'), INVALID);
  assert.equal(bad.original_length, INVALID.length);
  assert.deepEqual(acme.filter((i) => 'line_base64' in i).map((i) => i.event_id), ['a-5'], 'only invalid lines carry line_base64');
});

test('missing or wrong token → 401; no answer leaks before authentication', async () => {
  const unauthorized = (error: string) => ({ status: 401, body: { error, code: 'unauthorized' } });
  assert.deepEqual(await call('/api/v1/logs'), unauthorized('missing bearer token'));
  assert.deepEqual(await call('/api/v1/logs', 'not-a-token'), unauthorized('invalid token'));
  assert.deepEqual(await call('/api/v1/logs', `${TOKENS.acme}x`), unauthorized('invalid token'));
  assert.deepEqual(await call('/api/v1/logs', TOKENS.acme.slice(0, -1)), unauthorized('invalid token'));
  assert.deepEqual(await call('/api/v1/logs?limit=0'), unauthorized('missing bearer token'), 'bad parameters are not judged for strangers');
  assert.deepEqual(await call('/api/v1/reports/acme%2F2026-11-26'), unauthorized('missing bearer token'));
  const basic = await fetch(`${server().address}/api/v1/usage`, { headers: { authorization: `Basic ${Buffer.from(`acme:${TOKENS.acme}`).toString('base64')}` } });
  assert.equal(basic.status, 401);
  assert.equal(basic.headers.get('www-authenticate'), 'Bearer');
  for (const route of ['/api/v1/usage', '/api/v1/reports', '/api/v1/containers', `/api/v1/containers/web-1/lifecycle`]) {
    assert.equal((await call(route, 'wrong-token-0123456789')).status, 401, route);
  }
});

test('bad parameters → 400 naming the parameter', async () => {
  const bad = async (pathAndQuery: string, param: RegExp) => {
    const { status, body } = await call(pathAndQuery, TOKENS.acme);
    assert.equal(status, 400, pathAndQuery);
    assert.equal(body.code, 'bad_request');
    assert.match(String(body.error), param, pathAndQuery);
  };
  await bad('/api/v1/logs?from=yesterday', /^from: expected an ISO 8601 time/);
  await bad('/api/v1/logs?to=2026-11-26T25:61:00Z', /^to: /);
  await bad('/api/v1/logs?from=2026-11-26T10:00:00Z&to=2026-11-26T09:00:00Z', /^to: must be later than from/);
  await bad('/api/v1/logs?limit=0', /^limit: expected an integer from 1 to 1000, got "0"/);
  await bad('/api/v1/logs?limit=10000', /^limit: expected an integer from 1 to 1000, got "10000"/);
  await bad('/api/v1/logs?limit=-1', /^limit: /);
  await bad('/api/v1/logs?limit=2.5', /^limit: /);
  await bad('/api/v1/logs?kind=trace', /^kind: .*"access"\|"debug"\|"start"\|"operation"/);
  await bad('/api/v1/logs?stream=stdin', /^stream: /);
  await bad('/api/v1/logs?cursor=garbage', /^cursor: not a cursor/);
  await bad('/api/v1/logs?q=', /^q: must not be empty/);
  await bad('/api/v1/logs?app=a&app=b', /^app: expected string, received array/);
  await bad('/api/v1/logs?contianer=web-1', /^unknown parameter contianer/);
  await bad('/api/v1/usage?period=week', /^period: /);
  await bad('/api/v1/usage?from=soon', /^from: /);
  await bad('/api/v1/reports?limit=1001', /^limit: /);
  await bad('/api/v1/containers?order=up', /^unknown parameter order/);
  await bad('/api/v1/containers/web-1/lifecycle?limit=0', /^limit: /);
});

test('paging returns every row exactly once, newest first (and oldest first with order=asc)', async () => {
  const all = ACME_NEWEST_FIRST.map(([id]) => id);
  for (const order of ['desc', 'asc'] as const) {
    const expected = order === 'desc' ? all : [...all].reverse();
    for (const limit of [1, 2, 3, 4, 5, 12, 13]) {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const { status, body } = await call(logsQuery({ limit: String(limit), order, ...(cursor ? { cursor } : {}) }), TOKENS.acme);
        assert.equal(status, 200);
        const page = body.items as LogItem[];
        assert.ok(page.length <= limit);
        seen.push(...ids(page));
        cursor = body.next_cursor as string | null;
        assert.ok(++pages <= all.length + 1, 'paging terminates');
      } while (cursor);
      assert.deepEqual(seen, expected, `order=${order} limit=${limit}`);
    }
  }
});

test('a cursor is stable: rows arriving between pages neither repeat nor shift the next page', async () => {
  const tenant = 'initech';
  const line = (id: string, ms: number): LogFixture => ({ id, tenant, app: 'app', container: 'c-1', ms, stream: 'stdout', kind: 'debug', line: `line ${id}` });
  await insertLogs([line('i-1', T0 + 1), line('i-2', T0 + 2), line('i-3', T0 + 3), line('i-4', T0 + 4)]);
  const first = await call(logsQuery({ tenant, limit: '2' }), ADMIN);
  assert.deepEqual(ids(first.body.items as LogItem[]), ['i-4', 'i-3']);
  // Newer rows, and an older one with the cursor's own timestamp but a later id.
  await insertLogs([line('i-5', T0 + 5), line('i-6', T0 + 6), line('i-3b', T0 + 3)]);
  const second = await call(logsQuery({ tenant, limit: '2', cursor: first.body.next_cursor as string }), ADMIN);
  assert.deepEqual(ids(second.body.items as LogItem[]), ['i-2', 'i-1']);
  assert.equal(second.body.next_cursor, null);
});

test('the operator sees every tenant, or one with tenant=', async () => {
  const admin = (params: Record<string, string>) => items(logsQuery(params), ADMIN);
  const every = await admin({});
  assert.deepEqual(new Set(every.filter((i) => i.tenant !== 'initech').map((i) => i.event_id)), new Set([...ACME_NEWEST_FIRST, ...GLOBEX_NEWEST_FIRST].map(([id]) => id)));
  assert.deepEqual(ids(await admin({ tenant: 'globex' })), GLOBEX_NEWEST_FIRST.map(([id]) => id));
  assert.deepEqual(ids(await admin({ tenant: 'acme', q: `' OR 1=1 --` })), ['a-3']);
  assert.deepEqual(ids(await admin({ q: `' OR 1=1 --` })), ['a-3', 'g-2']);
});

test('without an admin token, nobody is the operator, not even a loopback caller with no token; tenants stay scoped', async () => {
  const http = createHttpServer({ listen: '127.0.0.1:0', registry: createRegistry(false), logger: ns.logger });
  registerTenantRoutes(http.app, { ch, tokens: TOKENS, logger: ns.logger });
  try {
    const remote = await http.app.inject({ url: '/api/v1/logs?tenant=globex', remoteAddress: '10.1.2.3' });
    assert.equal(remote.statusCode, 401);
    const local = await http.app.inject({ url: '/api/v1/logs?tenant=globex', remoteAddress: '127.0.0.1' });
    assert.equal(local.statusCode, 401, 'loopback is not trusted (issue 12)');
    const tenant = await http.app.inject({ url: '/api/v1/logs?tenant=globex', remoteAddress: '127.0.0.1', headers: { authorization: `Bearer ${TOKENS.acme}` } });
    assert.deepEqual(ids(tenant.json<{ items: LogItem[] }>().items), ACME_NEWEST_FIRST.map(([id]) => id));
    const wrong = await http.app.inject({ url: '/api/v1/logs', remoteAddress: '127.0.0.1', headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.statusCode, 401, 'a wrong token is refused even from loopback');
  } finally {
    await http.close();
  }
});

test('tokens: one per principal, or the API refuses to start', () => {
  assert.throws(() => createAuthenticator({ tokens: { a: 'same-token-0123456789', b: 'same-token-0123456789' } }), /tenant a and tenant b are the same/);
  assert.throws(() => createAuthenticator({ tokens: { a: ADMIN }, adminToken: ADMIN }), /the admin and tenant a are the same/);
});

test('lines printed within one millisecond keep their printed order, across pages, both directions', async () => {
  const tenant = 'burst';
  // A burst (a stack trace): same millisecond, rising nanoseconds, ids that sort the other way;
  // then three lines with the very same Docker timestamp, told apart by their sequence.
  const burst: LogFixture[] = Array.from({ length: 9 }, (_, i) => ({ id: `z-${9 - i}`, tenant, app: 'app', container: 'c-1', ms: T0 + 500, nanos: 1000 * (i + 1), stream: i % 3 === 2 ? 'stderr' : 'stdout', kind: 'debug', line: `frame ${i}` }));
  const same: LogFixture[] = [0, 1, 2].map((k) => ({ id: `y-${3 - k}`, tenant, app: 'app', container: 'c-1', ms: T0 + 500, nanos: 999_999, seq: k, stream: 'stdout', kind: 'debug', line: `same ${k}` }));
  await insertLogs([...same].reverse().concat([...burst].reverse()));
  const printed = [...burst.map((f) => f.line), ...same.map((f) => f.line)];
  for (const order of ['asc', 'desc'] as const) {
    const seen: LogItem[] = [];
    let cursor: string | null = null;
    do {
      const { status, body } = await call(logsQuery({ tenant, order, limit: '5', ...(cursor ? { cursor } : {}) }), ADMIN);
      assert.equal(status, 200);
      seen.push(...(body.items as LogItem[]));
      cursor = body.next_cursor as string | null;
    } while (cursor);
    assert.deepEqual(seen.map((i) => i.line), order === 'asc' ? printed : [...printed].reverse(), `order=${order}`);
  }
  const { body } = await call(logsQuery({ tenant, order: 'asc', limit: '12' }), ADMIN);
  const items = body.items as LogItem[];
  assert.deepEqual(items.map((i) => [i.ts, i.ts_nanos, i.seq]).slice(-4), [[at(500), 9000, 0], [at(500), 999_999, 0], [at(500), 999_999, 1], [at(500), 999_999, 2]]);
});

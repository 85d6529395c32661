/**
 * The HTTP routes the documents name exist, and every route the API registers is in the
 * README. A route is named as a code span `` `METHOD /path` `` (the security case tables
 * write the requests they send, some to paths that must not exist, as METHOD `/path`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Fastify from 'fastify';
import { registerApi } from '../api/index.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { createHttpServer } from '../lib/http.js';
import { createLogger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { ROOT } from './helpers/env.js';

const logger = createLogger('silent', 2);
// Every request below carries no token, so it is refused before any query: a handle is never
// used, and if one were, the request would fail with a 500, not pass.
const unused = undefined as unknown as ClickHouse;
const deps = { ch: unused, tokens: { acme: 'acme-token-0123456789' }, adminToken: 'admin-token-0123456789abcdef', priceList: undefined, reportsDir: '/nonexistent', logger };

function documents(): string[] {
  // docs/docker-notes.md and the decision notes name Docker Engine API routes, not logmeter's.
  const dir = path.join(ROOT, 'docs', 'reliability');
  const pages = readdirSync(dir).filter((f) => f.endsWith('.md')).map((f) => path.join(dir, f));
  return [path.join(ROOT, 'README.md'), path.join(ROOT, 'RELIABILITY.md'), ...pages];
}

/** Every `` `METHOD /path` `` code span, with the files naming it. */
function namedRoutes(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const file of documents()) {
    for (const m of readFileSync(file, 'utf8').matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s?]*)[^`]*`/g)) {
      const key = `${m[1]} ${m[2]}`;
      out.set(key, [...(out.get(key) ?? []), path.relative(ROOT, file)]);
    }
  }
  return out;
}

/** A concrete request path for a documented pattern (`:id` → a sample value). */
const concrete = (p: string) => p.replace(/:[a-z_]+/g, 'sample-id');

test('every route the documents name is served (401 without a token, or 200 for /metrics and /healthz)', async () => {
  const http = createHttpServer({ listen: '127.0.0.1:0', registry: createRegistry(false), logger });
  registerApi(http.app, deps);
  await http.app.ready();
  try {
    const named = namedRoutes();
    assert.ok(named.size >= 8, `routes named in the documents: ${[...named.keys()].join(', ')}`);
    const wrong: string[] = [];
    for (const [route, files] of named) {
      const [method, url] = route.split(' ') as [string, string];
      const res = await http.app.inject({ method: method as 'GET', url: concrete(url), ...(method === 'POST' ? { payload: {} } : {}) });
      // The API refuses a request without a token; /metrics and /healthz answer; the panel's
      // pages and session routes exist (their answers to a request without a session are the
      // panel tests' to check).
      const expected = url.startsWith('/api/') ? 401 : url === '/metrics' || url === '/healthz' ? 200 : undefined;
      const ok = expected === undefined ? res.statusCode !== 404 : res.statusCode === expected;
      if (!ok) wrong.push(`${route} (${files.join(', ')}): ${res.statusCode}, expected ${expected ?? 'not 404'}`);
    }
    assert.deepEqual(wrong, []);
    // The same check refuses a route that is not there (the drift issue 19 found).
    assert.equal((await http.app.inject({ method: 'GET', url: '/api/v1/signals' })).statusCode, 404);
  } finally {
    await http.close();
  }
});

test('every route registerApi registers is named in the README', async () => {
  const app = Fastify();
  const registered: string[] = [];
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) if (m !== 'HEAD') registered.push(`${m} ${r.url}`);
  });
  registerApi(app, deps);
  await app.ready();
  await app.close();
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const norm = (r: string) => r.replace(/:[a-z_]+|\*/g, '{}');
  const inReadme = new Set([...readme.matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s?]*)`/g)].map((m) => norm(`${m[1]} ${m[2]}`)));
  assert.deepEqual(
    registered.filter((r) => !inReadme.has(norm(r))),
    [],
  );
  assert.ok(registered.length >= 15, registered.join(', '));
});

/**
 * Access-log lines that are broken or say impossible things, printed by real containers
 * and read by the real collector, access-log parser and log sink. Rule (request.ts,
 * REQUEST_LIMITS): a line that does not parse, or whose values no server logs (status
 * outside 100-599, a negative or week-long time, more than 1 PiB, a date outside
 * 1970-2100, a queue length outside an int), is not a request — it is counted by reason
 * and stays an ordinary debug line. Nothing is clamped; no NaN, infinite, negative or
 * out-of-range value reaches `http_requests`; the parser keeps going.
 * (test/access-log-parse.test.ts has the parsers' own cases.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Registry } from 'prom-client';
import { createRegistry } from '../lib/metrics.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { REQUEST_LIMITS } from '../processors/access-log/request.js';
import { eventually } from './helpers/env.js';
import { runContainer } from './helpers/docker.js';
import { note, pipeline, type Pipeline } from './helpers/bad-input.js';

let p: Pipeline;
let registry: Registry;
before(async () => {
  p = await pipeline({ sink: true });
  registry = createRegistry(false);
  p.subs.push(await startAccessLogParser({ bus: p.bus, logger: p.ns.logger, registry }));
  await p.collector('collector').start();
});
after(() => p.close());

/** A line and what becomes of it: a request (`ok`) or the reason code it is counted under. */
type Case = [line: string, outcome: 'ok' | 'malformed' | 'bad_field' | 'out_of_range' | 'empty' | 'missing_field' | 'bad_request_line'];

const T = '[26/Nov/2026:08:45:57 +0000]';
const nginx = (status: string, bytes: string, time: string, path = '/') => `203.0.113.7 - - ${T} "GET ${path} HTTP/1.1" ${status} ${bytes} "-" "curl/8" ${time}`;
const NGINX: Case[] = [
  [nginx('200', '512', '0.013', '/ok/1'), 'ok'],
  ['GET /oops', 'malformed'],
  [`203.0.113.7 - - ${T} "GET /cut HTTP/1.1`, 'malformed'],
  ['', 'empty'],
  [nginx('200', '512', '', '/no-time').trimEnd(), 'missing_field'],
  [`203.0.113.7 - - ${T} "\\x16\\x03\\x01" 400 0 "-" "-" 0.001`, 'bad_request_line'],
  [nginx('999', '512', '0.013'), 'out_of_range'],
  [nginx('200', '512', '-0.013'), 'bad_field'],
  [nginx('200', '1'.padEnd(31, '0'), '0.013'), 'out_of_range'],
  [nginx('200', '9007199254740993', '0.013'), 'out_of_range'],
  [nginx('200', '12.5', '0.013'), 'bad_field'],
  [nginx('200', '512', '1'.padEnd(31, '0')), 'out_of_range'],
  [nginx('200', '512', '1'.padEnd(400, '0')), 'out_of_range'],
  [`203.0.113.7 - - [26/Nov/9999:08:45:57 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8" 0.013`, 'out_of_range'],
  [nginx('599', '1125899906842624', '604800.000', '/ok/limits'), 'ok'],
  [nginx('200', '512', '0.013', '/ok/2'), 'ok'],
];

const ha = (timers: string, status: string, bytes: string, queues = '0/0', path = '/') => `10.0.0.1:4000 [26/Nov/2026:08:45:57.916] fe be/s1 ${timers} ${status} ${bytes} - - ---- 1/1/1/1/0 ${queues} "GET ${path} HTTP/1.1"`;
const HAPROXY: Case[] = [
  [ha('10/0/30/69/359', '200', '512', '0/0', '/ok/1'), 'ok'],
  // Before REQUEST_LIMITS, this one could not be encoded (Avro long) and held its partition.
  [ha('10/0/30/69/359', '200', '1'.padEnd(31, '0')), 'out_of_range'],
  [ha('10/0/30/69/359', '200', '512', '0/99999999999'), 'out_of_range'],
  [ha('10/0/30/69/99999999999999999999999', '200', '512'), 'out_of_range'],
  [ha('10/0/30/69/359', '999', '512'), 'out_of_range'],
  [ha('10/0/30/69/-5', '200', '512'), 'bad_field'],
  ['10.0.0.1:4000 [26/Nov/2026:08:45:57.916] fe be/s1 10/0/30', 'malformed'],
  [ha('10/0/30/69/359', '200', '512', '0/0', '/ok/2'), 'ok'],
];

const js = (o: Record<string, unknown>) => JSON.stringify({ time: '2026-11-26T08:45:57Z', method: 'GET', path: '/', status: 200, bytes: 512, request_time: 0.013, ...o });
const JSONL: Case[] = [
  [js({ path: '/ok/1' }), 'ok'],
  [js({ status: 999 }), 'out_of_range'],
  [js({ request_time: -1 }), 'bad_field'],
  [js({ bytes: 1e300 }), 'out_of_range'],
  [js({ request_time: 1e300 }), 'out_of_range'],
  [js({ time: 1e15 }), 'out_of_range'],
  [js({ status: 'abc' }), 'bad_field'],
  ['{"method":"GET", not json', 'malformed'],
  ['[1,2,3]', 'malformed'],
  [js({ path: '/ok/2' }), 'ok'],
];

const FORMATS: Array<[format: string, cases: Case[]]> = [
  ['nginx-combined', NGINX],
  ['haproxy', HAPROXY],
  ['json', JSONL],
];

test('malformed lines and absurd values: refused and counted by reason, kept as debug lines; only real requests reach http_requests, with no NaN, negative or out-of-range value', async () => {
  const { ch, prefix } = p;
  const t0 = Date.now();
  const containers = new Map<string, string>();
  for (const [format, cases] of FORMATS) {
    // A here-document prints every line exactly as written (quotes, backslashes, brackets).
    const script = `cat <<'EOF'\n${cases.map(([l]) => l).join('\n')}\nEOF`;
    const c = await runContainer({ prefix, tenant: 'acme', app: `access-${format}`, labels: { [`${prefix}log-format`]: format }, script });
    containers.set(format, c.id);
  }
  const total = FORMATS.reduce((n, [, cs]) => n + cs.length, 0);
  const requests = FORMATS.reduce((n, [, cs]) => n + cs.filter(([, o]) => o === 'ok').length, 0);
  const ids = [...containers.values()];

  const logs = await eventually('every line in ClickHouse', async () => {
    const r = await ch.client.query({
      query: `SELECT container_id, line, kind FROM ${ch.table('logs')} FINAL WHERE container_id IN {ids:Array(String)} ORDER BY ts, ts_nanos, seq`,
      query_params: { ids },
      format: 'JSONEachRow',
    });
    const rows = await r.json<{ container_id: string; line: string; kind: string }>();
    return rows.length >= total ? rows : undefined;
  }, 120_000);
  const http = await eventually('every request in ClickHouse', async () => {
    const r = await ch.client.query({
      query: `SELECT container_id, path, status, bytes, request_time_ms, upstream_time_ms, queue_time_ms, backend_queue, server_queue, toUnixTimestamp64Milli(ts) AS ts FROM ${ch.table('http_requests')} FINAL WHERE container_id IN {ids:Array(String)} ORDER BY path`,
      query_params: { ids },
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_denormals: 1 },
    });
    const rows = await r.json<Record<string, unknown>>();
    return rows.length >= requests ? rows : undefined;
  }, 120_000);
  // The parser's count settles once the last line is handled (it is ahead of the sink).
  const counted = await eventually('every line counted', async () => {
    const unparsed = (await registry.getSingleMetric('logmeter_access_lines_unparsed_total')!.get()).values;
    const parsed = (await registry.getSingleMetric('logmeter_access_lines_parsed_total')!.get()).values;
    const n = unparsed.reduce((a, v) => a + v.value, 0) + parsed.reduce((a, v) => a + v.value, 0);
    return n >= total ? { unparsed, parsed } : undefined;
  }, 60_000);
  await new Promise((r) => setTimeout(r, 1000));

  // Every line is stored, in order, as access (a request) or debug (anything else).
  for (const [format, cases] of FORMATS) {
    const mine = logs.filter((r) => r.container_id === containers.get(format));
    assert.deepEqual(mine.map((r) => [r.line, r.kind]), cases.map(([l, o]) => [l, o === 'ok' ? 'access' : 'debug']), format);
  }
  // Only the real requests, with the values as printed.
  assert.equal(http.length, requests);
  assert.deepEqual(http.map((r) => r.path).sort(), ['/ok/1', '/ok/1', '/ok/1', '/ok/2', '/ok/2', '/ok/2', '/ok/limits']);
  const limits = http.find((r) => r.path === '/ok/limits')!;
  assert.deepEqual([limits.status, limits.bytes, limits.request_time_ms], [599, REQUEST_LIMITS.maxBytes, REQUEST_LIMITS.maxDurationMs]);
  for (const r of http) {
    assert.ok(Number(r.status) >= 100 && Number(r.status) <= 599, `status ${String(r.status)}`);
    assert.ok(Number(r.bytes) >= 0 && Number(r.bytes) <= REQUEST_LIMITS.maxBytes, `bytes ${String(r.bytes)}`);
    for (const k of ['request_time_ms', 'upstream_time_ms', 'queue_time_ms', 'backend_queue', 'server_queue']) {
      const v = r[k];
      assert.ok(v === null || (typeof v === 'number' && Number.isFinite(v) && v >= 0), `${k} = ${String(v)}`);
    }
  }
  const [bad] = await (
    await ch.client.query({
      query: `SELECT count() AS n FROM ${ch.table('http_requests')} FINAL WHERE container_id IN {ids:Array(String)} AND (isNaN(request_time_ms) OR isInfinite(request_time_ms) OR request_time_ms < 0 OR status NOT BETWEEN 100 AND 599 OR bytes > {max:UInt64} OR ts < '1970-01-02' OR ts > '2100-01-01')`,
      query_params: { ids, max: REQUEST_LIMITS.maxBytes },
      format: 'JSONEachRow',
    })
  ).json<{ n: string }>();
  assert.equal(Number(bad!.n), 0);

  // Counted: per format and reason, exactly the lines that are not requests.
  const want = new Map<string, number>();
  for (const [format, cases] of FORMATS) for (const [, o] of cases) if (o !== 'ok') want.set(`${format}/${o}`, (want.get(`${format}/${o}`) ?? 0) + 1);
  const got = new Map(counted.unparsed.filter((v) => v.value > 0).map((v) => [`${String(v.labels.format)}/${String(v.labels.reason)}`, v.value]));
  assert.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()));
  assert.deepEqual(Object.fromEntries(counted.parsed.map((v) => [String(v.labels.format), v.value]).sort()), { haproxy: 2, json: 2, 'nginx-combined': 3 });
  note(`access logs: ${total} lines → ${http.length} requests, ${total - requests} refused (${[...want].map(([k, n]) => `${k} ${n}`).join(', ')}) in ${Date.now() - t0} ms`);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ParserOptions } from '../processors/access-log/config.js';
import { ACCESS_LOG_FORMATS, parseAccessLine } from '../processors/access-log/parse.js';
import type { ParsedRequest, ParseErrorCode } from '../processors/access-log/request.js';

const NO_LB: Pick<ParsedRequest, 'queue_time_ms' | 'backend_queue' | 'server_queue' | 'backend' | 'server'> = {
  queue_time_ms: null,
  backend_queue: null,
  server_queue: null,
  backend: null,
  server: null,
};

function ok(format: string, line: string, opts?: ParserOptions): ParsedRequest {
  const r = parseAccessLine(format, line, opts);
  if (!r.ok) assert.fail(`expected ${format} line to parse, got ${r.code}: ${r.reason}\n${line}`);
  return r.request;
}

function notOk(format: string, line: string, code: ParseErrorCode, reasonPart?: RegExp, opts?: ParserOptions): void {
  const r = parseAccessLine(format, line, opts);
  if (r.ok) assert.fail(`expected ${format} line to be refused, got ${JSON.stringify(r.request)}\n${line}`);
  assert.equal(r.code, code, r.reason);
  if (reasonPart) assert.match(r.reason, reasonPart);
}

// ---------------------------------------------------------------------------------
// nginx-combined

const NGINX = '203.0.113.7 - - [26/Nov/2026:08:45:57 +0000] "GET /products/42?color=red HTTP/1.1" 200 512 "https://shop.acme.test/" "Mozilla/5.0 (X11; Linux x86_64)" 0.013';

test('nginx: combined + request_time, no optional fields', () => {
  assert.deepEqual(ok('nginx-combined', NGINX), {
    ts: Date.UTC(2026, 10, 26, 8, 45, 57),
    host: '',
    method: 'GET',
    path: '/products/42?color=red',
    status: 200,
    bytes: 512,
    request_time_ms: 13,
    upstream_time_ms: null,
    client_ip: '203.0.113.7',
    ...NO_LB,
  });
});

test('nginx: escape=json quotes, upstream list summed, host lower-cased without port, zone offset', () => {
  const line =
    '2001:db8::1 - alice [26/Nov/2026:09:45:57 +0100] "POST /search?q=\\"red shoes\\" HTTP/2.0" 502 0 "-" "Mozilla \\"quoted\\" \\\\" 1.507 0.010, 0.020 : 0.005 "Shop.Acme.Test:8443"\r\n';
  assert.deepEqual(ok('nginx-combined', line), {
    ts: Date.UTC(2026, 10, 26, 8, 45, 57),
    host: 'shop.acme.test',
    method: 'POST',
    path: '/search?q="red shoes"',
    status: 502,
    bytes: 0,
    request_time_ms: 1507,
    upstream_time_ms: 35,
    client_ip: '2001:db8::1',
    ...NO_LB,
  });
});

test('nginx: default escaping (\\xHH, UTF-8 runs) and a 400 with a raw space in the target', () => {
  const line = '198.51.100.2 - - [01/Jan/2027:00:00:00 -0800] "GET /caf\\xC3\\xA9/\\x22x\\x22 HTTP/1.1" 404 153 "-" "curl/8.5.0" 0.000 0.001 "shop.acme.test"';
  const r = ok('nginx-combined', line);
  assert.equal(r.path, '/café/"x"');
  assert.equal(r.ts, Date.UTC(2027, 0, 1, 8, 0, 0));
  assert.equal(r.request_time_ms, 0);
  assert.equal(r.upstream_time_ms, 1);
  assert.equal(r.host, 'shop.acme.test');

  const spaced = ok('nginx-combined', '198.51.100.2 - - [01/Jan/2027:00:00:00 +0000] "GET /a b HTTP/1.1" 400 157 "-" "-" 0.000');
  assert.equal(spaced.path, '/a b');
  assert.equal(spaced.status, 400);
});

test('nginx: "-" upstream (answered by nginx itself), host without upstream, both absent', () => {
  const base = '10.0.0.9 - - [26/Nov/2026:08:45:57 +0000] "HEAD / HTTP/1.1" 304 0 "-" "-" 0.002';
  const dash = ok('nginx-combined', `${base} - "shop.acme.test"`);
  assert.equal(dash.upstream_time_ms, null);
  assert.equal(dash.host, 'shop.acme.test');
  const list = ok('nginx-combined', `${base} -, 0.020 "shop.acme.test"`);
  assert.equal(list.upstream_time_ms, 20, 'a failed attempt counts nothing');
  const hostOnly = ok('nginx-combined', `${base} "shop.acme.test"`);
  assert.equal(hostOnly.upstream_time_ms, null);
  assert.equal(hostOnly.host, 'shop.acme.test');
  const upstreamOnly = ok('nginx-combined', `${base} 0.250`);
  assert.equal(upstreamOnly.upstream_time_ms, 250);
  assert.equal(upstreamOnly.host, '');
  assert.equal(ok('nginx-combined', `${base} - "-"`).host, '');
});

test('nginx: lines that are not requests are refused with a reason', () => {
  const pre = '203.0.113.7 - - [26/Nov/2026:08:45:57 +0000]';
  notOk('nginx-combined', '', 'empty');
  notOk('nginx-combined', '  \r\n', 'empty');
  notOk('nginx-combined', `${pre} "-" 400 0 "-" "-" 0.000`, 'bad_request_line', /"-"/);
  notOk('nginx-combined', `${pre} "\\x16\\x03\\x01\\x00\\xF1\\x01\\x00\\x00" 400 157 "-" "-" 0.001`, 'bad_request_line');
  notOk('nginx-combined', `${pre} "GET /" 400 0 "-" "-" 0.001`, 'bad_request_line');
  notOk('nginx-combined', `${pre} "GET / HTTP/1.1" 200 512 "-" "curl/8.5.0"`, 'missing_field', /request_time/);
  notOk('nginx-combined', `${pre} "GET / HTTP/1.1" OK 512 "-" "-" 0.001`, 'bad_field', /status/);
  notOk('nginx-combined', `${pre} "GET / HTTP/1.1" 200 - "-" "-" 0.001`, 'bad_field', /body_bytes_sent/);
  notOk('nginx-combined', `${pre} "GET / HTTP/1.1" 200 5 "-" "-" fast`, 'bad_field', /request_time/);
  notOk('nginx-combined', `${pre} "GET / HTTP/1.1" 200 5 "-" "-" 0.001 0.001, x "h"`, 'bad_field', /upstream/);
  notOk('nginx-combined', `${pre} "GET / HTTP/1.1" 200 5 "-" "-" 0.001 0.001 "h" extra`, 'malformed', /after "host"/);
  notOk('nginx-combined', '203.0.113.7 - - [26/Nov/2026:08:45:57 UTC] "GET / HTTP/1.1" 200 5 "-" "-" 0.001', 'bad_field', /time_local/);
  notOk('nginx-combined', '203.0.113.7 - - [31/Foo/2026:08:45:57 +0000] "GET / HTTP/1.1" 200 5 "-" "-" 0.001', 'bad_field', /time_local/);
  notOk('nginx-combined', 'hello world', 'malformed');
});

test('nginx: every cut before request_time is refused', () => {
  const cut = NGINX.lastIndexOf(' ');
  for (let n = 0; n <= cut; n++) {
    const r = parseAccessLine('nginx-combined', NGINX.slice(0, n));
    assert.equal(r.ok, false, `prefix of ${n} chars parsed: ${NGINX.slice(0, n)}`);
  }
});

// ---------------------------------------------------------------------------------
// json

test('json: default field names', () => {
  const line = JSON.stringify({
    time: '2026-11-26T08:45:57.123Z',
    host: 'shop.acme.test',
    method: 'GET',
    path: '/products/42',
    status: 200,
    bytes: 512,
    request_time: 0.029,
    upstream_time: 0.027,
    remote_addr: '203.0.113.7',
  });
  assert.deepEqual(ok('json', line), {
    ts: Date.UTC(2026, 10, 26, 8, 45, 57, 123),
    host: 'shop.acme.test',
    method: 'GET',
    path: '/products/42',
    status: 200,
    bytes: 512,
    request_time_ms: 29,
    upstream_time_ms: 27,
    client_ip: '203.0.113.7',
    ...NO_LB,
  });
});

test('json: nginx escape=json style: strings for numbers, request line, fallbacks, upstream list', () => {
  const line =
    '{"time":"1795682757.250","remote_addr":"-","request":"DELETE /cart/7 HTTP/1.1","status":"204","body_bytes_sent":"0","request_time":"0.105","upstream_time":"0.050, 0.050","host":"Shop.Acme.Test:443"}';
  assert.deepEqual(ok('json', line), {
    ts: 1_795_682_757_250,
    host: 'shop.acme.test',
    method: 'DELETE',
    path: '/cart/7',
    status: 204,
    bytes: 0,
    request_time_ms: 105,
    upstream_time_ms: 100,
    client_ip: null,
    ...NO_LB,
  });
  const r = ok('json', '{"method":"GET","uri":"/u","status":200,"request_time":0,"time":1795682757,"upstream_time":"-"}');
  assert.equal(r.path, '/u');
  assert.equal(r.ts, 1_795_682_757_000);
  assert.equal(r.upstream_time_ms, null);
  assert.equal(r.bytes, 0, 'bytes default to 0');
  assert.equal(r.host, '');
  assert.equal(ok('json', '{"method":"GET","url":"/v","status":200,"request_time":0}').path, '/v');
  assert.equal(ok('json', '{"method":"GET","url":"/v","status":200,"request_time":0}').ts, null);
  assert.equal(ok('json', '{"method":"GET","path":"/w","status":200,"request_time":0,"time":"26/Nov/2026:09:45:57 +0100"}').ts, Date.UTC(2026, 10, 26, 8, 45, 57));
  assert.equal(ok('json', '{"method":"GET","path":"/w","status":200,"request_time":0,"time":1795682757123}').ts, 1_795_682_757_123);
  const at = (time: string) => ok('json', JSON.stringify({ method: 'GET', path: '/w', status: 200, request_time: 0, time })).ts;
  assert.equal(at('2026-11-26T09:45:57+01:00'), Date.UTC(2026, 10, 26, 8, 45, 57));
  assert.equal(at('2026-11-26T03:15:57.5-0530'), Date.UTC(2026, 10, 26, 8, 45, 57, 500));
  assert.equal(at('2026-11-26 08:45:57.123456'), Date.UTC(2026, 10, 26, 8, 45, 57, 123), 'no zone: UTC, not the machine\'s zone');
  const partial = ok('json', '{"method":"PUT","request":"GET /from-request HTTP/1.1","status":200,"request_time":0}');
  assert.deepEqual([partial.method, partial.path], ['PUT', '/from-request'], 'only the absent one comes from request');
});

test('json: configured field names and millisecond times', () => {
  const opts: ParserOptions = {
    json: { time: 'ts', host: ['vhost', 'host'], method: 'verb', path: 'route', status: 'code', bytes: 'size', request_time: 'duration_ms', upstream_time: 'backend_ms', client_ip: 'ip', timeUnit: 'ms' },
  };
  const line = '{"ts":1795682757123,"host":"fallback","verb":"PATCH","route":"/r","code":201,"size":"77","duration_ms":12.5,"backend_ms":"10, 1.5","ip":"10.1.2.3"}';
  assert.deepEqual(ok('json', line, opts), {
    ts: 1_795_682_757_123,
    host: 'fallback',
    method: 'PATCH',
    path: '/r',
    status: 201,
    bytes: 77,
    request_time_ms: 12.5,
    upstream_time_ms: 11.5,
    client_ip: '10.1.2.3',
    ...NO_LB,
  });
  notOk('json', '{"method":"GET","path":"/","status":200,"request_time":0}', 'missing_field', /"verb"/, opts);
});

test('json: lines that are not requests are refused with a reason naming the field', () => {
  const good = { method: 'GET', path: '/', status: 200, request_time: 0.001 };
  const j = (o: object) => JSON.stringify({ ...good, ...o });
  notOk('json', '', 'empty');
  notOk('json', '{"method":"GET"', 'malformed', /not JSON/);
  notOk('json', 'GET / 200', 'malformed', /not JSON/);
  for (const v of ['[1,2]', '"GET /"', '42', 'null', 'true']) notOk('json', v, 'malformed', /not an object/);
  notOk('json', JSON.stringify({ method: 'GET', path: '/', request_time: 0 }), 'missing_field', /"status"/);
  notOk('json', JSON.stringify({ method: 'GET', status: 200, request_time: 0 }), 'missing_field', /"path" or "uri" or "url"/);
  notOk('json', JSON.stringify({ path: '/', status: 200, request_time: 0 }), 'missing_field', /"method"/);
  notOk('json', JSON.stringify({ method: 'GET', path: '/', status: 200 }), 'missing_field', /"request_time"/);
  notOk('json', j({ status: true }), 'bad_field', /"status"/);
  notOk('json', j({ status: '20x' }), 'bad_field', /"status"/);
  notOk('json', j({ status: 42 }), 'bad_field', /"status"/);
  notOk('json', j({ status: 200.5 }), 'bad_field', /"status"/);
  notOk('json', j({ path: 7 }), 'bad_field', /"path"/);
  notOk('json', j({ method: ['GET'] }), 'bad_field', /"method"/);
  notOk('json', j({ method: 'GET /' }), 'bad_field', /"method"/);
  notOk('json', j({ path: '' }), 'bad_field', /"path"/);
  notOk('json', j({ bytes: -1 }), 'bad_field', /"bytes"/);
  notOk('json', j({ request_time: 'fast' }), 'bad_field', /"request_time"/);
  notOk('json', j({ request_time: {} }), 'bad_field', /"request_time"/);
  notOk('json', j({ upstream_time: 'slow, 0.1' }), 'bad_field', /"upstream_time"/);
  notOk('json', j({ time: 'yesterday' }), 'bad_field', /"time"/);
  notOk('json', j({ time: false }), 'bad_field', /"time"/);
  notOk('json', j({ time: 'Nov 26 2026 08:45:57' }), 'bad_field', /"time"/);
  notOk('json', j({ host: 1 }), 'bad_field', /"host"/);
  notOk('json', j({ remote_addr: 1 }), 'bad_field', /"remote_addr"/);
  notOk('json', JSON.stringify({ request: '-', status: 400, request_time: 0 }), 'bad_request_line', /"request"/);
  notOk('json', JSON.stringify({ request: 1, status: 400, request_time: 0 }), 'bad_field', /"request"/);
  const full = JSON.stringify(good);
  for (let n = 0; n < full.length; n++) assert.equal(parseAccessLine('json', full.slice(0, n)).ok, false);
});

test('json: option mistakes are programmer errors, thrown at first use', () => {
  assert.throws(() => parseAccessLine('json', '{}', { json: { timeUnit: 'us' as 's' } }), TypeError);
  assert.throws(() => parseAccessLine('json', '{}', { json: { path: [] } }), TypeError);
  assert.throws(() => parseAccessLine('json', '{}', { json: { status: '' } }), TypeError);
  assert.throws(() => parseAccessLine('haproxy', '', { haproxy: { utcOffsetMinutes: Number.NaN } }), TypeError);
});

// ---------------------------------------------------------------------------------
// haproxy

const HAPROXY = '127.0.0.1:39718 [26/Nov/2026:08:45:57.123] fe_http be_shop.acme.test/srv1 0/0/1/12/13 200 512 - - ---- 1/1/0/0/0 0/0 "GET /products/42 HTTP/1.1"';

test('haproxy: raw httplog line', () => {
  assert.deepEqual(ok('haproxy', HAPROXY), {
    ts: Date.UTC(2026, 10, 26, 8, 45, 57, 123),
    host: '',
    method: 'GET',
    path: '/products/42',
    status: 200,
    bytes: 512,
    request_time_ms: 13,
    upstream_time_ms: 12,
    queue_time_ms: 0,
    backend_queue: 0,
    server_queue: 0,
    backend: 'be_shop.acme.test',
    server: 'srv1',
    client_ip: '127.0.0.1',
  });
});

test('haproxy: syslog header, captured host header, response captures, queues', () => {
  const line =
    '<134>Nov 26 08:45:57 lb-1 haproxy[12]: 10.0.1.2:33317 [26/Nov/2026:08:45:57.655] fe_https~ be_shop/srv2 10/250/30/69/359 200 2750 - - ---- 40/40/38/10/1 3/7 {Shop.Acme.Test:443|Mozilla/5.0 (X11#7C Linux)} {text/html} "GET /index.html?a=1 HTTP/1.1"';
  assert.deepEqual(ok('haproxy', line), {
    ts: Date.UTC(2026, 10, 26, 8, 45, 57, 655),
    host: 'shop.acme.test',
    method: 'GET',
    path: '/index.html?a=1',
    status: 200,
    bytes: 2750,
    request_time_ms: 359,
    upstream_time_ms: 69,
    queue_time_ms: 250,
    backend_queue: 7,
    server_queue: 3,
    backend: 'be_shop',
    server: 'srv2',
    client_ip: '10.0.1.2',
  });
  const noPri = ok('haproxy', `Nov 26 08:45:57 localhost haproxy[14389]: ${HAPROXY}`);
  assert.equal(noPri.client_ip, '127.0.0.1');
  const rfc5424 = ok('haproxy', `<134>1 2026-11-26T08:45:57.123Z lb-1 haproxy 12 - [meta sequenceId="1"] ${HAPROXY}`);
  assert.equal(rfc5424.ts, Date.UTC(2026, 10, 26, 8, 45, 57, 123));
  assert.equal(ok('haproxy', HAPROXY.replace('0/0 "', '0/0 {} "')).host, '');
  assert.equal(ok('haproxy', HAPROXY.replace('0/0 "', '0/0 {shop.acme.test} "')).host, 'shop.acme.test');
});

test('haproxy: -1 timers (not reached), <NOSRV>, logasap +, IPv6 client, #XX encoding', () => {
  const timeout = ok('haproxy', '2001:db8::7:55480 [27/Jun/2019:21:42:38.916] public_ssl~ be_http/srva 0/0/0/-1/63387 504 194 - - sH-- 15/13/10/0/0 0/0 "PATCH /api/upload/4dd HTTP/1.1"');
  assert.equal(timeout.client_ip, '2001:db8::7');
  assert.equal(timeout.upstream_time_ms, null);
  assert.equal(timeout.queue_time_ms, 0);
  assert.equal(timeout.request_time_ms, 63387);
  assert.equal(timeout.status, 504);

  const noServer = ok('haproxy', '10.0.0.1:4000 [27/Jun/2019:21:42:38.916] fe be_down/<NOSRV> 0/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 "GET / HTTP/1.1"');
  assert.equal(noServer.server, null);
  assert.equal(noServer.backend, 'be_down');
  assert.equal(noServer.queue_time_ms, null);
  assert.equal(noServer.upstream_time_ms, null);

  const logasap = ok('haproxy', '10.0.0.1:4000 [27/Jun/2019:21:42:38.916] fe be/s1 1/2/3/4/+10 200 +1048576 - - ---- 1/1/1/1/+1 0/0 "GET /big.iso HTTP/1.1"');
  assert.equal(logasap.request_time_ms, 10);
  assert.equal(logasap.bytes, 1_048_576);

  const encoded = ok('haproxy', '10.0.0.1:4000 [27/Jun/2019:21:42:38.916] fe be/s1 0/0/0/1/1 200 1 - - ---- 1/1/1/1/0 0/0 "GET /caf#C3#A9?q=#22x#22&h=#23 HTTP/1.1"');
  assert.equal(encoded.path, '/café?q="x"&h=#');
});

test('haproxy: utcOffsetMinutes reads the accept date in HAProxy\'s zone', () => {
  const opts: ParserOptions = { haproxy: { utcOffsetMinutes: 60 } };
  assert.equal(ok('haproxy', HAPROXY, opts).ts, Date.UTC(2026, 10, 26, 7, 45, 57, 123));
});

test('haproxy: lines that are not requests are refused with a reason', () => {
  notOk('haproxy', '', 'empty');
  notOk('haproxy', '10.0.0.1:4000 [27/Jun/2019:21:42:38.916] fe fe/<NOSRV> -1/-1/-1/-1/0 400 187 - - PR-- 1/1/0/0/0 0/0 "<BADREQ>"', 'bad_request_line', /PR--/);
  notOk('haproxy', '10.0.0.1:4000 [27/Jun/2019:21:42:38.916] fe be/s1 5/0/1/-1/7 -1 0 - - CH-- 1/1/1/1/0 0/0 "GET / HTTP/1.1"', 'no_response', /CH--/);
  // option tcplog: no status, no request.
  notOk('haproxy', '10.0.0.1:4000 [27/Jun/2019:21:42:38.916] fe be/s1 0/0/5007 212 -- 1/1/1/1/0 0/0', 'bad_field', /timers/);
  notOk('haproxy', '<133>Nov 26 08:45:57 haproxy[12]: Proxy fe_http started.', 'malformed');
  notOk('haproxy', HAPROXY.replace('0/0/1/12/13', '0/0/1/12'), 'bad_field', /timers/);
  notOk('haproxy', HAPROXY.replace('0/0/1/12/13', '0/0/1/12/13/14'), 'bad_field', /timers/);
  notOk('haproxy', HAPROXY.replace('0/0/1/12/13', '0/0/1/x/13'), 'bad_field', /timers/);
  notOk('haproxy', HAPROXY.replace(' 200 ', ' abc '), 'bad_field', /status/);
  notOk('haproxy', HAPROXY.replace(' 512 ', ' -1 '), 'bad_field', /bytes/);
  notOk('haproxy', HAPROXY.replace(' 0/0 ', ' 0 '), 'bad_field', /queue/);
  notOk('haproxy', HAPROXY.replace('fe_http be_shop.acme.test/srv1', 'fe_http be_shop'), 'malformed', /backend\/server/);
  notOk('haproxy', HAPROXY.replace('57.123]', '57]'), 'malformed');
  notOk('haproxy', HAPROXY.replace('"GET /products/42 HTTP/1.1"', '"GET"'), 'bad_request_line');
  notOk('haproxy', `${HAPROXY} trailing`, 'malformed', /after "request"/);
  notOk('haproxy', NGINX, 'malformed');
  for (let n = 0; n < HAPROXY.length; n++) assert.equal(parseAccessLine('haproxy', HAPROXY.slice(0, n)).ok, false, HAPROXY.slice(0, n));
});

// ---------------------------------------------------------------------------------
// Every format

test('unknown formats are refused, not guessed', () => {
  assert.deepEqual(ACCESS_LOG_FORMATS, ['nginx-combined', 'json', 'haproxy']);
  notOk('apache', NGINX, 'unknown_format', /apache/);
});

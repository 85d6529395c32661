/**
 * The pure parts around the parsers: a log line → its HttpRequest event (http-event.ts),
 * the format registry (parse.ts) and when each format checks its options. No services.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventId } from '../lib/event-id.js';
import type { ParserOptions } from '../processors/access-log/config.js';
import { toHttpRequest } from '../processors/access-log/http-event.js';
import { ACCESS_LOG_FORMATS, isAccessLogFormat, parseAccessLine } from '../processors/access-log/parse.js';
import type { LogLine } from '../schemas/events.js';

const NGINX = '203.0.113.7 - - [26/Nov/2026:08:45:57 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "-" "curl/8" 0.013 0.010 "Shop.Test"';
const JSON_LINE = '{"method":"GET","path":"/j","status":201,"request_time":0.002}';

function logLine(line: string, log_format: string | null): LogLine {
  return {
    event_id: 'line-1',
    tenant: 'acme',
    app: 'web',
    node: 'n1',
    container_id: 'c1',
    ts: 1_000,
    container_name: 'web-1',
    ts_nanos: 0,
    seq: 0,
    stream: 'stdout',
    tty: false,
    line: Buffer.from(line),
    original_length: line.length,
    truncated: false,
    invalid_utf8: false,
    log_format,
  };
}

test('toHttpRequest: header from the log line, HTTP fields from the parse, id derived from the line', () => {
  assert.deepEqual(toHttpRequest(logLine(NGINX, 'nginx-combined')), {
    request: {
      event_id: eventId('http', 'line-1'),
      tenant: 'acme',
      app: 'web',
      node: 'n1',
      container_id: 'c1',
      ts: Date.UTC(2026, 10, 26, 8, 45, 57),
      source_event_id: 'line-1',
      format: 'nginx-combined',
      host: 'shop.test',
      method: 'GET',
      path: '/a?b=1',
      status: 200,
      bytes: 512,
      request_time_ms: 13,
      upstream_time_ms: 10,
      queue_time_ms: null,
      backend_queue: null,
      server_queue: null,
      backend: null,
      server: null,
      client_ip: '203.0.113.7',
    },
  });
});

test('toHttpRequest: a line without its own time takes the log line\'s', () => {
  const r = toHttpRequest(logLine(JSON_LINE, 'json'));
  assert.ok('request' in r);
  assert.equal(r.request.ts, 1_000);
  assert.equal(r.request.format, 'json');
});

test('toHttpRequest: no label, an unknown label and an unparsed line each say so', () => {
  assert.deepEqual(toHttpRequest(logLine(NGINX, null)), { skip: 'no_format' });
  assert.deepEqual(toHttpRequest(logLine(NGINX, '')), { skip: 'no_format' });
  assert.deepEqual(toHttpRequest(logLine(NGINX, 'apache')), { skip: 'unknown_format' });
  const r = toHttpRequest(logLine('not a request', 'nginx-combined'));
  assert.ok('failed' in r);
  assert.equal(r.failed, 'malformed');
  assert.ok(r.reason.length > 0);
});

test('registry: the known formats, and nothing inherited from Object counts as one', () => {
  for (const f of ACCESS_LOG_FORMATS) assert.ok(isAccessLogFormat(f));
  for (const f of ['apache', 'toString', 'constructor', '__proto__', '']) assert.equal(isAccessLogFormat(f), false, f);
  assert.equal(parseAccessLine('toString', NGINX).ok, false);
});

test('options: the formats that take options check all of them at first use; nginx-combined takes none', () => {
  const bad: ParserOptions = { json: { timeUnit: 'us' as 's' } };
  assert.equal(parseAccessLine('nginx-combined', NGINX, bad).ok, true);
  assert.throws(() => parseAccessLine('haproxy', '', bad), /json\.timeUnit/);
  assert.throws(() => parseAccessLine('json', JSON_LINE, bad), /json\.timeUnit/);
  const good: ParserOptions = { json: { timeUnit: 'ms' } };
  const r = parseAccessLine('json', JSON_LINE, good);
  assert.ok(r.ok);
  assert.equal(r.request.request_time_ms, 0.002);
});

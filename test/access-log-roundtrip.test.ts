/**
 * Properties every access-log format holds, over generated input: no input throws or
 * parses as garbage, and values printed the way each server prints them parse back
 * exactly. (test/access-log-parse.test.ts has each format's own cases.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ParserOptions } from '../processors/access-log/config.js';
import { ACCESS_LOG_FORMATS, parseAccessLine } from '../processors/access-log/parse.js';
import { PARSE_ERROR_CODES, type ParsedRequest, type ParseResult } from '../processors/access-log/request.js';

const NO_LB = { queue_time_ms: null, backend_queue: null, server_queue: null, backend: null, server: null };

function ok(format: string, line: string, opts?: ParserOptions): ParsedRequest {
  const r = parseAccessLine(format, line, opts);
  if (!r.ok) assert.fail(`expected ${format} line to parse, got ${r.code}: ${r.reason}\n${line}`);
  return r.request;
}

test('garbage never parses, and no input throws', () => {
  const noise = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xff, 0x22, 0x5b, 0x20, 0x7b]);
  for (const format of ACCESS_LOG_FORMATS) {
    for (const line of [noise.toString('latin1'), noise.toString('utf8')]) assert.equal(parseAccessLine(format, line).ok, false);
  }
  fc.assert(
    fc.property(fc.constantFrom(...ACCESS_LOG_FORMATS), fc.string({ unit: 'binary', maxLength: 300 }), (format, line) => {
      const r: ParseResult = parseAccessLine(format, line);
      if (!r.ok) {
        assert.ok(PARSE_ERROR_CODES.includes(r.code));
        assert.ok(r.reason.length > 0);
      }
    }),
    { numRuns: 1000 },
  );
});

// ---------------------------------------------------------------------------------
// Round trips: format generated values the way each server prints them, parse them back.

const utf8 = (s: string): number[] => [...Buffer.from(s, 'utf8')];
const hex2 = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number): string => String(n).padStart(2, '0');
const dayTime = (d: Date): string =>
  `${p2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}`;

/** nginx's default `escape=default`: `"`, `\` and bytes outside 0x20-0x7e become \xHH. */
function nginxDefaultEscape(s: string): string {
  return utf8(s)
    .map((b) => (b === 0x22 || b === 0x5c || b < 0x20 || b > 0x7e ? `\\x${hex2(b)}` : String.fromCharCode(b)))
    .join('');
}

/** nginx's `escape=json`: JSON string escaping, non-ASCII left as is. */
function nginxJsonEscape(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    out += ch === '"' ? '\\"' : ch === '\\' ? '\\\\' : c < 0x20 ? `\\u${c.toString(16).padStart(4, '0')}` : ch;
  }
  return out;
}

/** HAProxy's log encoding: `"`, `#`, control and non-ASCII bytes (and `{|}` in captures) become #HH. */
function haproxyEscape(s: string, extra = ''): string {
  return utf8(s)
    .map((b) => {
      const ch = String.fromCharCode(b);
      return ch === '"' || ch === '#' || b < 0x20 || b >= 0x7f || extra.includes(ch) ? `#${hex2(b)}` : ch;
    })
    .join('');
}

const unicodeChar = fc.oneof(
  fc.constantFrom('"', '\\', '#', ' ', '%', '\t', '\n', '\x7f', '{', '|', '}', 'é', '€', '😀', '\\x41', '#41'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
);
const text = fc.string({ unit: unicodeChar, maxLength: 30 });
const requestPath = text.map((s) => `/${s}`);
const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'PROPFIND', 'M-SEARCH'), fc.stringMatching(/^[A-Z]{1,12}$/));
const proto = fc.constantFrom('HTTP/1.0', 'HTTP/1.1', 'HTTP/2.0');
const clientIp = fc.oneof(fc.ipV4(), fc.ipV6());
const status = fc.integer({ min: 100, max: 599 });
const byteCount = fc.integer({ min: 0, max: 2 ** 40 });
const millis = fc.integer({ min: 0, max: 10_000_000 });
// 1970 to 2100, whole seconds (nginx prints no fraction).
const epochSeconds = fc.integer({ min: 0, max: 4_102_444_800 }).map((s) => s * 1000);
const epochMs = fc.integer({ min: 0, max: 4_102_444_800_000 });
const name = fc.stringMatching(/^[a-z0-9_.-]{1,20}$/);

test('round trip: nginx-combined', () => {
  fc.assert(
    fc.property(
      fc.record({
        ts: epochSeconds,
        zoneMinutes: fc.integer({ min: -12 * 60, max: 14 * 60 }),
        client_ip: clientIp,
        user: fc.oneof(fc.constant('-'), name),
        method,
        path: requestPath,
        proto,
        status,
        bytes: byteCount,
        referer: text,
        agent: text,
        request_time_ms: millis,
        upstream: fc.option(fc.array(fc.option(millis, { nil: null }), { minLength: 1, maxLength: 4 }), { nil: undefined }),
        groupSeparator: fc.constantFrom(', ', ' : '),
        host: fc.option(fc.domain(), { nil: undefined }),
        jsonEscape: fc.boolean(),
      }),
      (f) => {
        const esc = f.jsonEscape ? nginxJsonEscape : nginxDefaultEscape;
        const zone = `${f.zoneMinutes < 0 ? '-' : '+'}${p2(Math.floor(Math.abs(f.zoneMinutes) / 60))}${p2(Math.abs(f.zoneMinutes) % 60)}`;
        const local = new Date(f.ts + f.zoneMinutes * 60_000);
        let line = `${f.client_ip} - ${f.user} [${dayTime(local)} ${zone}] "${esc(`${f.method} ${f.path} ${f.proto}`)}" ${f.status} ${f.bytes} "${esc(f.referer)}" "${esc(f.agent)}" ${(f.request_time_ms / 1000).toFixed(3)}`;
        if (f.upstream) line += ` ${f.upstream.map((ms) => (ms === null ? '-' : (ms / 1000).toFixed(3))).join(f.groupSeparator)}`;
        if (f.host !== undefined) line += ` "${esc(f.host)}"`;
        const answered = (f.upstream ?? []).filter((ms): ms is number => ms !== null);
        assert.deepEqual(ok('nginx-combined', line), {
          ts: f.ts,
          host: f.host ?? '',
          method: f.method,
          path: f.path,
          status: f.status,
          bytes: f.bytes,
          request_time_ms: f.request_time_ms,
          upstream_time_ms: answered.length === 0 ? null : answered.reduce((a, b) => a + b, 0),
          client_ip: f.client_ip,
          ...NO_LB,
        });
      },
    ),
    { numRuns: 500 },
  );
});

test('round trip: json', () => {
  fc.assert(
    fc.property(
      fc.record({
        ts: fc.option(epochMs, { nil: undefined }),
        timeAs: fc.constantFrom('iso', 'seconds', 'ms', 'seconds-string'),
        timeUnit: fc.constantFrom('s', 'ms'),
        asStrings: fc.boolean(),
        viaRequest: fc.boolean(),
        pathKey: fc.constantFrom('path', 'uri', 'url'),
        bytesKey: fc.constantFrom('bytes', 'body_bytes_sent', undefined),
        method,
        path: requestPath,
        proto,
        status,
        bytes: byteCount,
        request_time_ms: millis,
        upstream: fc.option(fc.array(millis, { minLength: 1, maxLength: 3 }), { nil: undefined }),
        host: fc.option(fc.domain(), { nil: undefined }),
        client_ip: fc.option(clientIp, { nil: undefined }),
      }),
      (f) => {
        const dur = (ms: number): number | string => {
          const v = f.timeUnit === 's' ? ms / 1000 : ms;
          return f.asStrings ? String(v) : v;
        };
        const num = (n: number): number | string => (f.asStrings ? String(n) : n);
        const obj: Record<string, unknown> = { status: num(f.status), request_time: dur(f.request_time_ms) };
        if (f.viaRequest) obj.request = `${f.method} ${f.path} ${f.proto}`;
        else Object.assign(obj, { method: f.method, [f.pathKey]: f.path });
        if (f.bytesKey !== undefined) obj[f.bytesKey] = num(f.bytes);
        if (f.upstream) obj.upstream_time = f.upstream.length === 1 && f.upstream[0] !== undefined ? dur(f.upstream[0]) : f.upstream.map((ms) => String(f.timeUnit === 's' ? ms / 1000 : ms)).join(', ');
        if (f.host !== undefined) obj.host = f.host;
        if (f.client_ip !== undefined) obj.remote_addr = f.client_ip;
        if (f.ts !== undefined) {
          obj.time =
            f.timeAs === 'iso' ? new Date(f.ts).toISOString() : f.timeAs === 'seconds' ? f.ts / 1000 : f.timeAs === 'ms' ? f.ts : String(f.ts / 1000);
        }
        // Epoch ms below 1e11 read as seconds by design; such times (before 1973) are not generated as ms.
        if (f.ts !== undefined && f.timeAs === 'ms' && f.ts < 1e11) return;
        assert.deepEqual(ok('json', JSON.stringify(obj), { json: { timeUnit: f.timeUnit } }), {
          ts: f.ts ?? null,
          host: f.host ?? '',
          method: f.method,
          path: f.path,
          status: f.status,
          bytes: f.bytesKey === undefined ? 0 : f.bytes,
          request_time_ms: f.request_time_ms,
          upstream_time_ms: f.upstream ? f.upstream.reduce((a, b) => a + b, 0) : null,
          client_ip: f.client_ip ?? null,
          ...NO_LB,
        });
      },
    ),
    { numRuns: 500 },
  );
});

test('round trip: haproxy', () => {
  const timer = fc.integer({ min: 0, max: 100_000 });
  const maybeTimer = fc.oneof(fc.constant(-1), timer);
  const count = fc.integer({ min: 0, max: 10_000 });
  fc.assert(
    fc.property(
      fc.record({
        header: fc.constantFrom('', '<134>Nov 26 08:45:57 haproxy[12]: ', 'Nov 26 08:45:57 lb-1 haproxy[7]: ', '<134>1 2026-11-26T08:45:57.123Z lb-1 haproxy 12 - - '),
        ts: epochMs,
        client_ip: clientIp,
        port: fc.integer({ min: 1, max: 65535 }),
        frontend: name,
        backend: name,
        server: fc.option(name, { nil: null }),
        timers: fc.tuple(timer, maybeTimer, maybeTimer, maybeTimer, timer),
        status,
        bytes: byteCount,
        termination: fc.constantFrom('----', 'sH--', 'SC--', '--NI', 'CD--'),
        conns: fc.tuple(count, count, count, count, fc.integer({ min: 0, max: 3 })),
        sq: count,
        bq: count,
        capture: fc.option(fc.record({ host: fc.domain(), others: fc.array(text, { maxLength: 2 }), response: fc.option(text, { nil: undefined }) }), { nil: undefined }),
        method,
        path: requestPath,
        proto,
      }),
      (f) => {
        const [tR, tw, tc, tr, ta] = f.timers;
        let line = `${f.header}${f.client_ip}:${f.port} [${dayTime(new Date(f.ts))}.${String(f.ts % 1000).padStart(3, '0')}] ${f.frontend} ${f.backend}/${f.server ?? '<NOSRV>'} ${tR}/${tw}/${tc}/${tr}/${ta} ${f.status} ${f.bytes} - - ${f.termination} ${f.conns.join('/')} ${f.sq}/${f.bq} `;
        if (f.capture) {
          line += `{${[f.capture.host, ...f.capture.others].map((h) => haproxyEscape(h, '{|}')).join('|')}} `;
          if (f.capture.response !== undefined) line += `{${haproxyEscape(f.capture.response, '{|}')}} `;
        }
        line += `"${haproxyEscape(`${f.method} ${f.path} ${f.proto}`)}"`;
        assert.deepEqual(ok('haproxy', line), {
          ts: f.ts,
          host: f.capture?.host ?? '',
          method: f.method,
          path: f.path,
          status: f.status,
          bytes: f.bytes,
          request_time_ms: ta,
          upstream_time_ms: tr === -1 ? null : tr,
          queue_time_ms: tw === -1 ? null : tw,
          backend_queue: f.bq,
          server_queue: f.sq,
          backend: f.backend,
          server: f.server,
          client_ip: f.client_ip,
        });
      },
    ),
    { numRuns: 500 },
  );
});

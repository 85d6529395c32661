/**
 * `haproxy`: HAProxy's `option httplog` line, raw or behind a syslog header:
 *
 *     %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r
 *
 * The only format with load-balancer fields (queue time, queue lengths, backend,
 * server). HAProxy prints its accept date in local time without a zone, hence the
 * `utcOffsetMinutes` option (`HaproxyFormatOptions` in config.ts).
 */
import type { ParserOptions } from './config.js';
import { clip, fail, isStatus, normalizeHost, readRequestLine, type AccessLogFormatModule, type ParseResult } from './request.js';
import { digitOrNeg, DOT, hexByte, isDigit, parseDayTime, parseSignedInt, QUOTE, RBRACKET, SPACE, trimmedEnd, twoDigits, UnescapedText } from './scan.js';

export const haproxy: AccessLogFormatModule = {
  compile(opts) {
    const offsetMs = resolveUtcOffsetMs(opts);
    return (line) => parseHaproxy(line, offsetMs);
  },
};

const HAPROXY_TIME_LEN = 24; // 26/Nov/2026:08:45:57.123
const HASH = 0x23;
const LBRACE = 0x7b;

function resolveUtcOffsetMs(opts: ParserOptions | undefined): number {
  const offset = opts?.haproxy?.utcOffsetMinutes ?? 0;
  if (!Number.isFinite(offset)) throw new TypeError(`haproxy.utcOffsetMinutes: expected a number, got ${String(offset)}`);
  return offset * 60_000;
}

// A `{...}` block of captured request headers gives the host (its first element); a
// second block is the response headers and is skipped.
function parseHaproxy(line: string, utcOffsetMs: number): ParseResult {
  const end = trimmedEnd(line);
  if (end === 0) return fail('empty', 'empty line');

  // A syslog header ("<134>Nov 26 08:45:57 host haproxy[12]: ") can precede the client
  // address; "[12]" and RFC 5424 structured data are not " [" followed by a digit.
  let lb = line.indexOf(' [');
  while (lb >= 0 && !isDigit(line.charCodeAt(lb + 2))) lb = line.indexOf(' [', lb + 2);
  if (lb < 0 || lb >= end) return fail('malformed', 'no "client:port [accept date]"');
  const cs = line.lastIndexOf(' ', lb - 1) + 1;
  // IPv6 clients are printed without brackets, so the port is after the last colon.
  const colon = line.lastIndexOf(':', lb);
  if (colon <= cs) return fail('malformed', `client is not ip:port: "${clip(line.slice(cs, lb))}"`);
  const clientIp = line.slice(cs, colon);

  let i = lb + 2;
  if (i + HAPROXY_TIME_LEN + 2 > end || line.charCodeAt(i + HAPROXY_TIME_LEN) !== RBRACKET) {
    return fail('malformed', 'truncated inside [accept date]');
  }
  const local = parseHaproxyTime(line, i);
  if (Number.isNaN(local)) return fail('bad_field', `accept date is not dd/Mon/yyyy:HH:mm:ss.SSS: "${clip(line.slice(i, i + HAPROXY_TIME_LEN))}"`);
  const ts = local - utcOffsetMs;
  i += HAPROXY_TIME_LEN + 1;

  // Each space-separated field from here on; a missing one means the line was cut.
  if (line.charCodeAt(i) !== SPACE) return fail('malformed', 'expected a space after [accept date]');
  let j = line.indexOf(' ', ++i); // frontend (not kept)
  if (j < 0 || j >= end) return fail('malformed', 'truncated after frontend');

  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after backend/server');
  const slash = line.indexOf('/', i);
  if (slash < 0 || slash > j) return fail('malformed', `not backend/server: "${clip(line.slice(i, j))}"`);
  const backend = line.slice(i, slash);
  const serverName = line.slice(slash + 1, j);

  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after timers');
  const timers = readSlashInts(line, i, j, 5);
  if (timers === null) return fail('bad_field', `timers are not TR/Tw/Tc/Tr/Ta: "${clip(line.slice(i, j))}"`);
  const [, tw, , tr, ta] = timers as [number, number, number, number, number];

  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after status');
  const statusStart = i;
  const statusEnd = j;

  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after bytes');
  const bytes = parseSignedInt(line, i, j);
  if (!(bytes >= 0)) return fail('bad_field', `bytes is not a byte count: "${clip(line.slice(i, j))}"`);

  // Captured cookies (%CC %CS), then the termination state.
  for (let k = 0; k < 2; k++) {
    j = line.indexOf(' ', j + 1);
    if (j < 0 || j >= end) return fail('malformed', 'truncated in captured cookies');
  }
  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after termination state');
  const termination = line.slice(i, j);

  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after connection counts');
  if (readSlashInts(line, i, j, 5) === null) return fail('bad_field', `not actconn/feconn/beconn/srv_conn/retries: "${clip(line.slice(i, j))}"`);

  i = j + 1;
  j = line.indexOf(' ', i);
  if (j < 0 || j >= end) return fail('malformed', 'truncated after queues');
  const queues = readSlashInts(line, i, j, 2);
  if (queues === null) return fail('bad_field', `queues are not srv_queue/backend_queue: "${clip(line.slice(i, j))}"`);

  i = j + 1;
  let host = '';
  if (line.charCodeAt(i) === LBRACE) {
    // HAProxy writes '{', '|', '}' and '"' inside captures as #XX, so the first '}' closes it.
    const close = line.indexOf('}', i);
    if (close < 0 || close >= end) return fail('malformed', 'truncated inside captured request headers');
    const bar = line.indexOf('|', i);
    host = normalizeHost(unescapeHaproxy(line, i + 1, bar < 0 || bar > close ? close : bar));
    i = close + 2;
    if (line.charCodeAt(i) === LBRACE) {
      const closeRes = line.indexOf('}', i);
      if (closeRes < 0 || closeRes >= end) return fail('malformed', 'truncated inside captured response headers');
      i = closeRes + 2;
    }
  }
  if (line.charCodeAt(i - 1) !== SPACE || line.charCodeAt(i) !== QUOTE) return fail('malformed', 'expected "request" after the queues');
  const reqEnd = line.indexOf('"', i + 1);
  if (reqEnd < 0 || reqEnd >= end) return fail('malformed', 'truncated inside "request"');
  if (reqEnd + 1 !== end) return fail('malformed', `unexpected text after "request": "${clip(line.slice(reqEnd + 1, end))}"`);

  const status = parseSignedInt(line, statusStart, statusEnd);
  if (status === -1) return fail('no_response', `no response was sent (status -1, termination state ${termination})`);
  if (!isStatus(status)) return fail('bad_field', `status is not an HTTP status: "${clip(line.slice(statusStart, statusEnd))}"`);
  if (ta < 0) return fail('bad_field', `Ta is ${ta}: the request has no total time`);
  if (line.startsWith('<BADREQ>', i + 1)) return fail('bad_request_line', `HAProxy could not parse the request (status ${status}, termination state ${termination})`);
  const request = unescapeHaproxy(line, i + 1, reqEnd);
  const target = readRequestLine(request, 'request');
  if (!Array.isArray(target)) return target;
  const [method, path] = target;

  return {
    ok: true,
    request: {
      ts,
      host,
      method,
      path,
      status,
      bytes,
      request_time_ms: ta,
      upstream_time_ms: tr < 0 ? null : tr,
      queue_time_ms: tw < 0 ? null : tw,
      backend_queue: queues[1] ?? null,
      server_queue: queues[0] ?? null,
      backend,
      server: serverName === '<NOSRV>' ? null : serverName,
      client_ip: clientIp,
    },
  };
}

/** `n/n/.../n` with exactly `count` integers (a leading `+` or `-` allowed on each). */
function readSlashInts(s: string, start: number, end: number, count: number): number[] | null {
  const out: number[] = [];
  let i = start;
  for (;;) {
    let j = s.indexOf('/', i);
    if (j < 0 || j > end) j = end;
    const n = parseSignedInt(s, i, j);
    if (Number.isNaN(n)) return null;
    out.push(n);
    if (j === end) return out.length === count ? out : null;
    if (out.length === count) return null;
    i = j + 1;
  }
}

/** HAProxy `%tr` (`26/Nov/2026:08:45:57.123`) at s[p] → ms as if it were UTC; NaN if not that. */
function parseHaproxyTime(s: string, p: number): number {
  const utc = parseDayTime(s, p);
  const ms = twoDigits(s, p + 21) * 10 + digitOrNeg(s.charCodeAt(p + 23));
  if (s.charCodeAt(p + 20) !== DOT || ms < 0) return NaN;
  return utc + ms;
}

/**
 * Decodes HAProxy's log encoding in s[start, end): `"`, `#`, control and non-ASCII
 * bytes (and `{|}` in captures) are written `#HH`; runs of them are UTF-8.
 */
function unescapeHaproxy(s: string, start: number, end: number): string {
  const first = s.indexOf('#', start);
  if (first < 0 || first >= end) return s.slice(start, end);
  const out = new UnescapedText(s.slice(start, first));
  for (let i = first; i < end; ) {
    const b = s.charCodeAt(i) === HASH ? hexByte(s, i + 1, end) : -1;
    if (b >= 0) {
      out.byte(b);
      i += 3;
    } else {
      out.text(s.charAt(i));
      i++;
    }
  }
  return out.done();
}

/**
 * `nginx-combined`: nginx's `combined` log format followed by `$request_time`, then
 * optionally `$upstream_response_time` and `"$host"`:
 *
 *     log_format logmeter '$remote_addr - $remote_user [$time_local] "$request" $status '
 *                         '$body_bytes_sent "$http_referer" "$http_user_agent" '
 *                         '$request_time $upstream_response_time "$host"';
 *
 * Quoted fields may use nginx's default escaping (`\x22`) or `escape=json` (`\"`).
 */
import { clip, fail, isStatus, normalizeHost, readRequestLine, withoutBalancer, type AccessLogFormatModule, type ParseResult } from './request.js';
import { BACKSLASH, CLF_TIME_LEN, closingQuote, hexByte, parseClfTime, parseDecimal, QUOTE, RBRACKET, SPACE, spaceOrEnd, sumTimeList, trimmedEnd, UnescapedText } from './scan.js';

export const nginxCombined: AccessLogFormatModule = {
  parse: parseNginx,
};

function parseNginx(line: string): ParseResult {
  const end = trimmedEnd(line);
  if (end === 0) return fail('empty', 'empty line');

  const sp = line.indexOf(' ');
  if (sp <= 0 || sp >= end) return fail('malformed', 'no remote_addr');
  const addr = line.slice(0, sp);

  // remote_user is free text, so find the time by its bracket rather than by counting spaces.
  const lb = line.indexOf(' [', sp);
  if (lb < 0 || lb + CLF_TIME_LEN + 5 > end) return fail('malformed', 'truncated before [time_local]');
  const ts = parseClfTime(line, lb + 2);
  if (Number.isNaN(ts)) return fail('bad_field', `time_local is not dd/Mon/yyyy:HH:mm:ss ±hhmm: "${clip(line.slice(lb + 2, lb + 2 + CLF_TIME_LEN))}"`);
  let i = lb + 2 + CLF_TIME_LEN;
  if (line.charCodeAt(i) !== RBRACKET || line.charCodeAt(i + 1) !== SPACE || line.charCodeAt(i + 2) !== QUOTE) {
    return fail('malformed', 'expected `] "` after time_local');
  }

  const reqStart = i + 3;
  const reqEnd = closingQuote(line, reqStart, end);
  if (reqEnd < 0) return fail('malformed', 'truncated inside "request"');
  i = reqEnd + 1;

  if (line.charCodeAt(i) !== SPACE) return fail('malformed', 'expected a space after "request"');
  let j = spaceOrEnd(line, ++i, end);
  const status = parseDecimal(line, i, j, 0);
  if (!isStatus(status)) return fail('bad_field', `status is not an HTTP status: "${clip(line.slice(i, j))}"`);
  if (j >= end) return fail('malformed', 'truncated after status');

  i = j + 1;
  j = spaceOrEnd(line, i, end);
  const bytes = parseDecimal(line, i, j, 0);
  // A whole number too large to be true is out_of_range (checkRanges), not malformed.
  if (!Number.isInteger(bytes)) return fail('bad_field', `body_bytes_sent is not a byte count: "${clip(line.slice(i, j))}"`);

  // Referer and user agent are skipped, but their quotes must still be matched.
  for (const name of ['http_referer', 'http_user_agent']) {
    if (j + 1 >= end) return fail('malformed', `truncated before "${name}"`);
    if (line.charCodeAt(j) !== SPACE || line.charCodeAt(j + 1) !== QUOTE) return fail('malformed', `expected a quoted "${name}" after body_bytes_sent`);
    j = closingQuote(line, j + 2, end);
    if (j < 0) return fail('malformed', `truncated inside "${name}"`);
    j++;
  }

  if (j >= end) return fail('missing_field', 'no request_time after the user agent (is the log_format combined + $request_time?)');
  if (line.charCodeAt(j) !== SPACE) return fail('malformed', 'expected a space after "http_user_agent"');
  i = j + 1;
  j = spaceOrEnd(line, i, end);
  const requestTime = parseDecimal(line, i, j, 3);
  if (Number.isNaN(requestTime)) return fail('bad_field', `request_time is not seconds: "${clip(line.slice(i, j))}"`);

  let upstream: number | null = null;
  let host = '';
  i = j + 1;
  if (i < end && line.charCodeAt(i) !== QUOTE) {
    // The upstream list itself contains spaces ("0.010, 0.020 : 0.005"); it ends at the host's quote.
    const q = line.indexOf(' "', i);
    j = q < 0 || q >= end ? end : q;
    upstream = sumTimeList(line, i, j, 3);
    if (Number.isNaN(upstream)) return fail('bad_field', `upstream_response_time is not a list of seconds: "${clip(line.slice(i, j))}"`);
    i = j + 1;
  }
  if (i < end) {
    if (line.charCodeAt(i) !== QUOTE) return fail('malformed', `unexpected text after request_time: "${clip(line.slice(i, end))}"`);
    const hostEnd = closingQuote(line, i + 1, end);
    if (hostEnd < 0) return fail('malformed', 'truncated inside "host"');
    if (hostEnd + 1 !== end) return fail('malformed', `unexpected text after "host": "${clip(line.slice(hostEnd + 1, end))}"`);
    host = normalizeHost(unescapeNginx(line, i + 1, hostEnd));
  }

  const request = unescapeNginx(line, reqStart, reqEnd);
  const target = readRequestLine(request, 'request');
  if (!Array.isArray(target)) return target;
  const [method, path] = target;

  return {
    ok: true,
    request: withoutBalancer({
      ts,
      host,
      method,
      path,
      status,
      bytes,
      request_time_ms: requestTime,
      upstream_time_ms: upstream,
      client_ip: addr === '-' ? null : addr,
    }),
  };
}

/** `escape=json`'s one-character escapes. */
const JSON_ESCAPES = new Map([
  ['"', '"'],
  ['\\', '\\'],
  ['/', '/'],
  ['n', '\n'],
  ['r', '\r'],
  ['t', '\t'],
  ['b', '\b'],
  ['f', '\f'],
]);

/**
 * Decodes what nginx escaped in s[start, end): `\xHH` (default escaping; runs of them are
 * UTF-8) and `\"`, `\\`, `\n`, `\uXXXX`… (`escape=json`). Unknown escapes stay as written.
 */
function unescapeNginx(s: string, start: number, end: number): string {
  const first = s.indexOf('\\', start);
  if (first < 0 || first >= end) return s.slice(start, end);
  const out = new UnescapedText(s.slice(start, first));
  let i = first;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c === BACKSLASH && s.charCodeAt(i + 1) === 0x78 /* x */) {
      const b = hexByte(s, i + 2, end);
      if (b >= 0) {
        out.byte(b);
        i += 4;
        continue;
      }
    }
    if (c !== BACKSLASH || i + 1 >= end) {
      out.text(s.charAt(i));
      i++;
      continue;
    }
    const e = s.charAt(i + 1);
    const simple = JSON_ESCAPES.get(e);
    if (simple !== undefined) {
      out.text(simple);
      i += 2;
      continue;
    }
    if (e === 'u') {
      const hi = hexByte(s, i + 2, end);
      const lo = hexByte(s, i + 4, end);
      if (hi >= 0 && lo >= 0) {
        out.text(String.fromCharCode(hi * 256 + lo));
        i += 6;
        continue;
      }
    }
    out.text(`\\${e}`);
    i += 2;
  }
  return out.done();
}

/**
 * Pure parsers for the access-log formats a container can declare with its
 * `logmeter.log-format` label. One line in, the HTTP part of an `HttpRequest` (or a
 * reason it is not one) out; no I/O, no clock.
 *
 * These run on every access line, so each format is a hand-written scanner over the
 * string (indexOf and charCodeAt, slices only for the values kept) rather than a
 * regex: the fields are positional, and a scanner can say which field broke.
 */

/** The formats a `logmeter.log-format` label may name. */
export const ACCESS_LOG_FORMATS = ['nginx-combined', 'json', 'haproxy'] as const;

/** One of {@link ACCESS_LOG_FORMATS}. */
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number];

/** Whether a label value names a known format. */
export function isAccessLogFormat(format: string): format is AccessLogFormat {
  return (ACCESS_LOG_FORMATS as readonly string[]).includes(format);
}

/** The HTTP-specific fields of an `HttpRequest` (schemas/events.ts), as read from one line. */
export interface ParsedRequest {
  /**
   * When the request happened, in ms since the epoch, if the line says; `null` when it
   * does not, and the caller uses the log line's own timestamp. nginx prints the time
   * the request ended, HAProxy the time it was accepted.
   */
  ts: number | null;
  /** Virtual host, lower-cased and without a port; `''` when the line does not carry one. */
  host: string;
  method: string;
  /** The request target as the client sent it (query string included), escapes decoded. */
  path: string;
  status: number;
  /** Response bytes sent to the client (nginx `$body_bytes_sent`, HAProxy `%B`). */
  bytes: number;
  /** Total time of the request in ms (nginx `$request_time`, HAProxy `Ta`). */
  request_time_ms: number;
  /** Time the upstream took to answer in ms; summed over retries; `null` if never reached. */
  upstream_time_ms: number | null;
  /** Time spent queued in the load balancer in ms (HAProxy `Tw`); `null` if unknown. */
  queue_time_ms: number | null;
  /** Requests queued in the backend when this one was logged (HAProxy `%bq`). */
  backend_queue: number | null;
  /** Requests queued on the chosen server when this one was logged (HAProxy `%sq`). */
  server_queue: number | null;
  backend: string | null;
  /** Server that handled the request; `null` when none was chosen (HAProxy `<NOSRV>`). */
  server: string | null;
  client_ip: string | null;
}

/**
 * Why a line is not a request, from a fixed list so a drop counter can use it as a
 * label; the accompanying `reason` text has the detail.
 */
export const PARSE_ERROR_CODES = [
  'empty',
  'unknown_format',
  'malformed',
  'bad_request_line',
  'missing_field',
  'bad_field',
  'no_response',
  'out_of_range',
] as const;

/** One of {@link PARSE_ERROR_CODES}. */
export type ParseErrorCode = (typeof PARSE_ERROR_CODES)[number];

/** A parsed request, or why the line is not one. */
export type ParseResult = { ok: true; request: ParsedRequest } | { ok: false; code: ParseErrorCode; reason: string };

/**
 * A JSON field name, or several tried in order (the first one present and not `null`
 * wins).
 */
export type JsonFieldName = string | readonly string[];

/** Where the `json` format finds each value. */
export interface JsonFormatOptions {
  /**
   * Request time: an ISO 8601 date-time (UTC when it has no zone), nginx's
   * `26/Nov/2026:08:45:57 +0000`, or epoch seconds or milliseconds (number or numeric
   * string; below 1e11 means seconds). Default `time`.
   */
  time?: JsonFieldName;
  /** Virtual host. Default `host`. */
  host?: JsonFieldName;
  /** HTTP method. Default `method`. */
  method?: JsonFieldName;
  /** Request target. Default `path`, then `uri`, then `url`. */
  path?: JsonFieldName;
  /** Whole request line (`GET /x HTTP/1.1`), used when method or path is absent. Default `request`. */
  request?: JsonFieldName;
  /** Response status (required). Default `status`. */
  status?: JsonFieldName;
  /** Response bytes; 0 when absent. Default `bytes`, then `body_bytes_sent`. */
  bytes?: JsonFieldName;
  /** Total request time in {@link timeUnit} (required). Default `request_time`. */
  request_time?: JsonFieldName;
  /**
   * Upstream time in {@link timeUnit}; a list like nginx's `0.010, 0.020` is summed.
   * Default `upstream_time`.
   */
  upstream_time?: JsonFieldName;
  /** Client address. Default `remote_addr`. */
  client_ip?: JsonFieldName;
  /** Unit of `request_time` and `upstream_time`: seconds or milliseconds. Default `s`. */
  timeUnit?: 's' | 'ms';
}

/** How HAProxy lines are read. */
export interface HaproxyFormatOptions {
  /**
   * HAProxy prints its accept date in its local time with no zone; this is that zone's
   * offset from UTC in minutes (e.g. 60 for UTC+1). Default 0 (containers run in UTC).
   */
  utcOffsetMinutes?: number;
}

/** Per-format options. Resolved once per options object, so pass the same object every call. */
export interface ParserOptions {
  /** Field names and units of the `json` format. Defaults as documented on each field. */
  json?: JsonFormatOptions;
  /** Time zone of HAProxy's accept date. Default UTC. */
  haproxy?: HaproxyFormatOptions;
}

/**
 * Parses one access-log line written in `format`. Never throws on bad input: a line
 * that is not a request comes back as `{ ok: false, code, reason }`.
 */
export function parseAccessLine(format: string, line: string, opts?: ParserOptions): ParseResult {
  let r: ParseResult;
  switch (format) {
    case 'nginx-combined':
      r = parseNginx(line);
      break;
    case 'json':
      r = parseJson(line, resolve(opts).json);
      break;
    case 'haproxy':
      r = parseHaproxy(line, resolve(opts).haproxyOffsetMs);
      break;
    default:
      return fail('unknown_format', `unknown access-log format "${clip(format)}" (known: ${ACCESS_LOG_FORMATS.join(', ')})`);
  }
  return r.ok ? checkRanges(r.request) : r;
}

/**
 * What a request's values may be. A line that reads fine but says something no server
 * logs — status 999, a response of 10^30 bytes, a request lasting a year, a date in
 * 9999 — is not trusted as a request: refused as `out_of_range` (counted, and the line
 * stays an ordinary debug line), never clamped into a plausible-looking row. The bounds
 * also keep every value inside its Avro and ClickHouse column (int, long, DateTime64).
 */
export const REQUEST_LIMITS = {
  /** RFC 9110 status codes are 100-599. */
  status: [100, 599],
  /** Response bytes: up to 1 PiB (2^50). */
  maxBytes: 2 ** 50,
  /** Request, upstream and queue times: up to 7 days in ms (a long-lived tunnel, not more). */
  maxDurationMs: 7 * 24 * 3600 * 1000,
  /** HAProxy queue lengths: an Avro int, never negative. */
  maxQueue: 2 ** 31 - 1,
  /** The request's own time, when the line has one: 1970-01-01 to 2100-01-01 00:00 UTC. */
  ts: [0, Date.UTC(2100, 0, 1)],
} as const;

function checkRanges(p: ParsedRequest): ParseResult {
  const L = REQUEST_LIMITS;
  if (p.status < L.status[0] || p.status > L.status[1]) return fail('out_of_range', `status ${p.status} is outside ${L.status[0]}-${L.status[1]}`);
  if (p.bytes > L.maxBytes) return fail('out_of_range', `bytes ${p.bytes} is over ${L.maxBytes} (1 PiB)`);
  for (const [name, v] of [['request time', p.request_time_ms], ['upstream time', p.upstream_time_ms], ['queue time', p.queue_time_ms]] as const) {
    if (v !== null && !(v >= 0 && v <= L.maxDurationMs)) return fail('out_of_range', `${name} ${v} ms is outside 0-${L.maxDurationMs} ms (7 days)`);
  }
  for (const [name, v] of [['backend queue', p.backend_queue], ['server queue', p.server_queue]] as const) {
    if (v !== null && !(v >= 0 && v <= L.maxQueue)) return fail('out_of_range', `${name} ${v} is outside 0-${L.maxQueue}`);
  }
  if (p.ts !== null && !(p.ts >= L.ts[0] && p.ts <= L.ts[1])) return fail('out_of_range', `time ${p.ts} ms is outside 1970-01-01 to 2100-01-01`);
  return { ok: true, request: p };
}

// ---------------------------------------------------------------------------------
// Options

interface ResolvedJsonOptions {
  time: readonly string[];
  host: readonly string[];
  method: readonly string[];
  path: readonly string[];
  request: readonly string[];
  status: readonly string[];
  bytes: readonly string[];
  request_time: readonly string[];
  upstream_time: readonly string[];
  client_ip: readonly string[];
  /** Power of ten that turns a request/upstream time into ms. */
  timePow10: number;
}

interface ResolvedOptions {
  json: ResolvedJsonOptions;
  haproxyOffsetMs: number;
}

const JSON_DEFAULTS: Required<Omit<JsonFormatOptions, 'timeUnit'>> = {
  time: 'time',
  host: 'host',
  method: 'method',
  path: ['path', 'uri', 'url'],
  request: 'request',
  status: 'status',
  bytes: ['bytes', 'body_bytes_sent'],
  request_time: 'request_time',
  upstream_time: 'upstream_time',
  client_ip: 'remote_addr',
};

function names(configured: JsonFieldName | undefined, fallback: JsonFieldName, key: string): readonly string[] {
  const v = configured ?? fallback;
  const list = typeof v === 'string' ? [v] : [...v];
  // A typo'd empty name would silently make every line "missing" the field.
  if (list.length === 0 || list.some((n) => typeof n !== 'string' || n === '')) {
    throw new TypeError(`json.${key}: expected a non-empty field name or list of names`);
  }
  return list;
}

function resolveUncached(opts: ParserOptions | undefined): ResolvedOptions {
  const j = opts?.json ?? {};
  const unit = j.timeUnit ?? 's';
  if (unit !== 's' && unit !== 'ms') throw new TypeError(`json.timeUnit: expected "s" or "ms", got ${String(unit)}`);
  const offset = opts?.haproxy?.utcOffsetMinutes ?? 0;
  if (!Number.isFinite(offset)) throw new TypeError(`haproxy.utcOffsetMinutes: expected a number, got ${String(offset)}`);
  return {
    json: {
      time: names(j.time, JSON_DEFAULTS.time, 'time'),
      host: names(j.host, JSON_DEFAULTS.host, 'host'),
      method: names(j.method, JSON_DEFAULTS.method, 'method'),
      path: names(j.path, JSON_DEFAULTS.path, 'path'),
      request: names(j.request, JSON_DEFAULTS.request, 'request'),
      status: names(j.status, JSON_DEFAULTS.status, 'status'),
      bytes: names(j.bytes, JSON_DEFAULTS.bytes, 'bytes'),
      request_time: names(j.request_time, JSON_DEFAULTS.request_time, 'request_time'),
      upstream_time: names(j.upstream_time, JSON_DEFAULTS.upstream_time, 'upstream_time'),
      client_ip: names(j.client_ip, JSON_DEFAULTS.client_ip, 'client_ip'),
      timePow10: unit === 's' ? 3 : 0,
    },
    haproxyOffsetMs: offset * 60_000,
  };
}

const DEFAULT_OPTIONS = resolveUncached(undefined);
// Callers pass one options object for a whole stream; merging defaults per line would
// cost more than the parse.
const resolved = new WeakMap<ParserOptions, ResolvedOptions>();

function resolve(opts: ParserOptions | undefined): ResolvedOptions {
  if (opts === undefined) return DEFAULT_OPTIONS;
  let r = resolved.get(opts);
  if (r === undefined) {
    r = resolveUncached(opts);
    resolved.set(opts, r);
  }
  return r;
}

// ---------------------------------------------------------------------------------
// nginx combined + $request_time [$upstream_response_time] ["$host"]

// Quoted fields may use nginx's default escaping (`\x22`) or `escape=json` (`\"`).
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
  const target = splitRequestLine(request);
  if (target === null) return fail('bad_request_line', `request is not "METHOD TARGET HTTP/x": "${clip(request)}"`);

  return {
    ok: true,
    request: {
      ts,
      host,
      method: target[0],
      path: target[1],
      status,
      bytes,
      request_time_ms: requestTime,
      upstream_time_ms: upstream,
      queue_time_ms: null,
      backend_queue: null,
      server_queue: null,
      backend: null,
      server: null,
      client_ip: addr === '-' ? null : addr,
    },
  };
}

// ---------------------------------------------------------------------------------
// JSON, one object per line

function parseJson(line: string, o: ResolvedJsonOptions): ParseResult {
  if (trimmedEnd(line) === 0) return fail('empty', 'empty line');
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    return fail('malformed', `not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return fail('malformed', `JSON is ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`}, not an object`);
  }
  const obj = parsed as Record<string, unknown>;

  const methodRaw = pick(obj, o.method);
  const pathRaw = pick(obj, o.path);
  if (methodRaw !== undefined && typeof methodRaw !== 'string') return badType(o.method, 'a string', methodRaw);
  if (pathRaw !== undefined && typeof pathRaw !== 'string') return badType(o.path, 'a string', pathRaw);
  let method: string | undefined = methodRaw;
  let path: string | undefined = pathRaw;
  if (method === undefined || path === undefined) {
    const req = pick(obj, o.request);
    if (req === undefined) return fail('missing_field', `missing ${describe(method === undefined ? o.method : o.path)} (and no ${describe(o.request)})`);
    if (typeof req !== 'string') return badType(o.request, 'a string', req);
    const target = splitRequestLine(req);
    if (target === null) return fail('bad_request_line', `${describe(o.request)} is not "METHOD TARGET HTTP/x": "${clip(req)}"`);
    method ??= target[0];
    path ??= target[1];
  }
  if (!isToken(method, 0, method.length)) return fail('bad_field', `${describe(o.method)} is not an HTTP method: "${clip(method)}"`);
  if (path === '') return fail('bad_field', `${describe(o.path)} is empty`);

  const statusRaw = pick(obj, o.status);
  if (statusRaw === undefined) return fail('missing_field', `missing ${describe(o.status)}`);
  const status = toNumber(statusRaw, 0);
  if (!isStatus(status)) return badType(o.status, 'an HTTP status', statusRaw);

  const bytesRaw = pick(obj, o.bytes);
  const bytes = bytesRaw === undefined ? 0 : toNumber(bytesRaw, 0);
  if (!Number.isInteger(bytes)) return badType(o.bytes, 'a byte count', bytesRaw);

  const rtRaw = pick(obj, o.request_time);
  if (rtRaw === undefined) return fail('missing_field', `missing ${describe(o.request_time)}`);
  const requestTime = toNumber(rtRaw, o.timePow10);
  if (Number.isNaN(requestTime)) return badType(o.request_time, 'a duration', rtRaw);

  const upRaw = pick(obj, o.upstream_time);
  let upstream: number | null = null;
  if (typeof upRaw === 'string') upstream = sumTimeList(upRaw, 0, upRaw.length, o.timePow10);
  else if (upRaw !== undefined) upstream = toNumber(upRaw, o.timePow10);
  if (Number.isNaN(upstream)) return badType(o.upstream_time, 'a duration or list of durations', upRaw);

  const timeRaw = pick(obj, o.time);
  const ts = timeRaw === undefined ? null : toEpochMs(timeRaw);
  if (Number.isNaN(ts)) return badType(o.time, 'an ISO 8601 time or epoch seconds/ms', timeRaw);

  const hostRaw = pick(obj, o.host);
  if (hostRaw !== undefined && typeof hostRaw !== 'string') return badType(o.host, 'a string', hostRaw);
  const ipRaw = pick(obj, o.client_ip);
  if (ipRaw !== undefined && typeof ipRaw !== 'string') return badType(o.client_ip, 'a string', ipRaw);

  return {
    ok: true,
    request: {
      ts,
      host: hostRaw === undefined ? '' : normalizeHost(hostRaw),
      method,
      path,
      status,
      bytes,
      request_time_ms: requestTime,
      upstream_time_ms: upstream,
      queue_time_ms: null,
      backend_queue: null,
      server_queue: null,
      backend: null,
      server: null,
      client_ip: ipRaw === undefined || ipRaw === '' || ipRaw === '-' ? null : ipRaw,
    },
  };
}

function pick(obj: Record<string, unknown>, keys: readonly string[]): unknown {
  for (const k of keys) {
    const v = obj[k];
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

function describe(keys: readonly string[]): string {
  return keys.map((k) => `"${k}"`).join(' or ');
}

function badType(keys: readonly string[], expected: string, got: unknown): ParseResult {
  // Only JSON values reach here, so JSON.stringify shows a number or boolean as written.
  const shown = typeof got === 'string' ? `"${clip(got)}"` : Array.isArray(got) ? 'an array' : typeof got === 'object' ? 'an object' : clip(JSON.stringify(got));
  return fail('bad_field', `${describe(keys)} is not ${expected}: ${shown}`);
}

/** A JSON number or numeric string scaled by 10^pow10; NaN for anything else. */
function toNumber(v: unknown, pow10: number): number {
  if (typeof v === 'string') return parseDecimal(v, 0, v.length, pow10);
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return NaN;
  if (pow10 === 0) return v;
  // Through the decimal text so 0.029 s is 29 ms, not 29.000000000000004.
  const s = String(v);
  const scaled = parseDecimal(s, 0, s.length, pow10);
  return Number.isNaN(scaled) ? v * 10 ** pow10 : scaled;
}

/** Epoch ms from a number (seconds below 1e11, else ms) or a string; NaN if unreadable. */
function toEpochMs(v: unknown): number {
  let ms: number;
  if (typeof v === 'number' || (typeof v === 'string' && isDecimalText(v))) {
    const n = toNumber(v, 0);
    // 1e11 s is the year 5138 and 1e11 ms is 1973, so the magnitude tells the unit.
    ms = n < 1e11 ? toNumber(v, 3) : n;
  } else if (typeof v === 'string') {
    ms = v.length === CLF_TIME_LEN && v.charCodeAt(2) === SLASH ? parseClfTime(v, 0) : parseIsoTime(v);
  } else {
    return NaN;
  }
  return Number.isFinite(ms) ? Math.floor(ms) : NaN;
}

const ISO_TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * ISO 8601 date-time → epoch ms; NaN if not one. Only this shape is passed to
 * Date.parse, whose other formats (and zoneless ISO) depend on the machine's time
 * zone; a time without a zone is read as UTC, the zone containers run in.
 */
function parseIsoTime(s: string): number {
  const m = ISO_TIME.exec(s);
  if (m === null) return NaN;
  const zone = m[3] === undefined || m[3] === 'Z' || m[3] === 'z' ? 'Z' : m[3].length === 5 ? `${m[3].slice(0, 3)}:${m[3].slice(3)}` : m[3];
  return Date.parse(`${m[1]}T${m[2]}${zone}`);
}

function isDecimalText(s: string): boolean {
  return s.length > 0 && !Number.isNaN(parseDecimal(s, 0, s.length, 0));
}

// ---------------------------------------------------------------------------------
// HAProxy `option httplog`:
// %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r

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
  const target = splitRequestLine(request);
  if (target === null) return fail('bad_request_line', `request is not "METHOD TARGET HTTP/x": "${clip(request)}"`);

  return {
    ok: true,
    request: {
      ts,
      host,
      method: target[0],
      path: target[1],
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

// ---------------------------------------------------------------------------------
// Shared scanning helpers

const SPACE = 0x20;
const QUOTE = 0x22;
const HASH = 0x23;
const PLUS = 0x2b;
const MINUS = 0x2d;
const DOT = 0x2e;
const SLASH = 0x2f;
const COLON = 0x3a;
const COMMA = 0x2c;
const BACKSLASH = 0x5c;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;

const CLF_TIME_LEN = 26; // 26/Nov/2026:08:45:57 +0000
const HAPROXY_TIME_LEN = 24; // 26/Nov/2026:08:45:57.123
const MONTHS = 'JanFebMarAprMayJunJulAugSepOctNovDec';
const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

function fail(code: ParseErrorCode, reason: string): ParseResult {
  return { ok: false, code, reason };
}

/** Keeps reasons short enough for a log line; they may quote hostile input. */
function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

/** Index after the last character that is not a line ending or a trailing space. */
function trimmedEnd(s: string): number {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== SPACE && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    end--;
  }
  return end;
}

function spaceOrEnd(s: string, from: number, end: number): number {
  const j = s.indexOf(' ', from);
  return j < 0 || j > end ? end : j;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isStatus(n: number): boolean {
  return Number.isInteger(n) && n >= 100 && n <= 999;
}

/**
 * `digits[.digits]` in s[start, end) times 10^pow10, computed from the digits so that
 * "0.029" seconds is exactly 29 ms; NaN if the text is not that shape.
 */
function parseDecimal(s: string, start: number, end: number, pow10: number): number {
  let n = 0;
  let digits = 0;
  let frac = -1;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) {
      n = n * 10 + (c - 0x30);
      digits++;
      if (frac >= 0) frac++;
    } else if (c === DOT && frac < 0) {
      frac = 0;
    } else {
      return NaN;
    }
  }
  if (digits === 0) return NaN;
  // Past 15 digits the integer n is no longer exact; let the engine round the text.
  if (digits > 15) return Number(s.slice(start, end)) * 10 ** pow10;
  const shift = pow10 - (frac < 0 ? 0 : frac);
  return shift >= 0 ? n * (POW10[shift] ?? 10 ** shift) : n / (POW10[-shift] ?? 10 ** -shift);
}

/** An integer with an optional sign (HAProxy prints -1 for "not reached", + for logasap). */
function parseSignedInt(s: string, start: number, end: number): number {
  let i = start;
  let sign = 1;
  const c0 = s.charCodeAt(i);
  if (c0 === MINUS) {
    sign = -1;
    i++;
  } else if (c0 === PLUS) {
    i++;
  }
  if (i >= end) return NaN;
  let n = 0;
  for (; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return NaN;
    n = n * 10 + (c - 0x30);
  }
  return sign * n;
}

/**
 * Sum of a list of times like nginx's `$upstream_response_time` ("0.010, 0.020 : 0.005",
 * one per upstream tried); `-` entries (never answered) count nothing. `null` if no
 * entry has a time, NaN if an entry is not a time.
 */
function sumTimeList(s: string, start: number, end: number, pow10: number): number | null {
  let sum = 0;
  let any = false;
  let tok = -1;
  for (let i = start; i <= end; i++) {
    const c = i < end ? s.charCodeAt(i) : SPACE;
    if (c === SPACE || c === COMMA || c === COLON) {
      if (tok >= 0 && !(i - tok === 1 && s.charCodeAt(tok) === MINUS)) {
        const v = parseDecimal(s, tok, i, pow10);
        if (Number.isNaN(v)) return NaN;
        sum += v;
        any = true;
      }
      tok = -1;
    } else if (tok < 0) {
      tok = i;
    }
  }
  return any ? sum : null;
}

/** Index of the quote closing a field opened before `from`, skipping backslash-escaped quotes; -1 if none. */
function closingQuote(s: string, from: number, end: number): number {
  let q = s.indexOf('"', from);
  while (q >= 0 && q < end) {
    let backslashes = 0;
    while (q - backslashes - 1 >= from && s.charCodeAt(q - backslashes - 1) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return q;
    q = s.indexOf('"', q + 1);
  }
  return -1;
}

function twoDigits(s: string, i: number): number {
  return digitOrNeg(s.charCodeAt(i)) * 10 + digitOrNeg(s.charCodeAt(i + 1));
}

// Large enough that any non-digit makes a 2- or 4-digit group negative.
function digitOrNeg(c: number): number {
  return isDigit(c) ? c - 0x30 : -1e6;
}

/** UTC ms of `dd/Mon/yyyy:HH:mm:ss` at s[p]; NaN if it is not that. */
function parseDayTime(s: string, p: number): number {
  const day = twoDigits(s, p);
  const month = MONTHS.indexOf(s.slice(p + 3, p + 6));
  const year = twoDigits(s, p + 7) * 100 + twoDigits(s, p + 9);
  const hour = twoDigits(s, p + 12);
  const minute = twoDigits(s, p + 15);
  const second = twoDigits(s, p + 18);
  if (
    s.charCodeAt(p + 2) !== SLASH ||
    s.charCodeAt(p + 6) !== SLASH ||
    s.charCodeAt(p + 11) !== COLON ||
    s.charCodeAt(p + 14) !== COLON ||
    s.charCodeAt(p + 17) !== COLON ||
    month < 0 ||
    month % 3 !== 0 ||
    day < 1 ||
    day > 31 ||
    // Date.UTC reads years below 100 as 19xx.
    year < 1000 ||
    hour < 0 ||
    hour > 23 ||
    minute < 0 ||
    minute > 59 ||
    second < 0 ||
    second > 60
  ) {
    return NaN;
  }
  return Date.UTC(year, month / 3, day, hour, minute, second);
}

/** nginx `$time_local` (`26/Nov/2026:08:45:57 +0000`) at s[p] → epoch ms; NaN if not that. */
function parseClfTime(s: string, p: number): number {
  const utc = parseDayTime(s, p);
  const sign = s.charCodeAt(p + 21);
  const zh = twoDigits(s, p + 22);
  const zm = twoDigits(s, p + 24);
  if (s.charCodeAt(p + 20) !== SPACE || (sign !== PLUS && sign !== MINUS) || zh < 0 || zm < 0 || zm > 59) return NaN;
  return utc - (sign === MINUS ? -1 : 1) * (zh * 60 + zm) * 60_000;
}

/** HAProxy `%tr` (`26/Nov/2026:08:45:57.123`) at s[p] → ms as if it were UTC; NaN if not that. */
function parseHaproxyTime(s: string, p: number): number {
  const utc = parseDayTime(s, p);
  const ms = twoDigits(s, p + 21) * 10 + digitOrNeg(s.charCodeAt(p + 23));
  if (s.charCodeAt(p + 20) !== DOT || ms < 0) return NaN;
  return utc + ms;
}

/** RFC 9110 tchar: what a method may be made of. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

function isToken(s: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/**
 * `[method, target]` from "METHOD TARGET HTTP/x", or null. The target is between the
 * first and the last space, so a target with a raw space (logged by nginx with a 400)
 * still reads whole.
 */
function splitRequestLine(req: string): [string, string] | null {
  const a = req.indexOf(' ');
  const b = req.lastIndexOf(' ');
  if (a <= 0 || b <= a + 1 || !isToken(req, 0, a) || !req.startsWith('HTTP/', b + 1)) return null;
  return [req.slice(0, a), req.slice(a + 1, b)];
}

/** Lower-cased, without a port: how nginx's `$host` reads, so hosts from every format compare equal. */
function normalizeHost(h: string): string {
  if (h === '-') return '';
  let end = h.length;
  if (h.charCodeAt(0) === 0x5b) {
    const close = h.indexOf(']');
    if (close > 0) end = close + 1;
  } else {
    const colon = h.indexOf(':');
    if (colon >= 0 && h.indexOf(':', colon + 1) < 0) end = colon;
  }
  return (end === h.length ? h : h.slice(0, end)).toLowerCase();
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

function hexByte(s: string, i: number, end: number): number {
  if (i + 2 > end) return -1;
  const hi = hexValue(s.charCodeAt(i));
  const lo = hexValue(s.charCodeAt(i + 1));
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/**
 * Decodes what nginx escaped in s[start, end): `\xHH` (default escaping; runs of them are
 * UTF-8) and `\"`, `\\`, `\n`, `\uXXXX`… (`escape=json`). Unknown escapes stay as written.
 */
function unescapeNginx(s: string, start: number, end: number): string {
  const first = s.indexOf('\\', start);
  if (first < 0 || first >= end) return s.slice(start, end);
  let out = s.slice(start, first);
  let bytes: number[] = [];
  let i = first;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c === BACKSLASH && s.charCodeAt(i + 1) === 0x78 /* x */) {
      const b = hexByte(s, i + 2, end);
      if (b >= 0) {
        bytes.push(b);
        i += 4;
        continue;
      }
    }
    if (bytes.length > 0) {
      out += Buffer.from(bytes).toString('utf8');
      bytes = [];
    }
    if (c !== BACKSLASH || i + 1 >= end) {
      out += s[i];
      i++;
      continue;
    }
    const e = s[i + 1];
    switch (e) {
      case '"':
      case '\\':
      case '/':
        out += e;
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'u': {
        const hi = hexByte(s, i + 2, end);
        const lo = hexByte(s, i + 4, end);
        if (hi >= 0 && lo >= 0) {
          out += String.fromCharCode(hi * 256 + lo);
          i += 6;
          continue;
        }
        out += '\\u';
        break;
      }
      default:
        out += `\\${e}`;
    }
    i += 2;
  }
  if (bytes.length > 0) out += Buffer.from(bytes).toString('utf8');
  return out;
}

/**
 * Decodes HAProxy's log encoding in s[start, end): `"`, `#`, control and non-ASCII
 * bytes (and `{|}` in captures) are written `#HH`; runs of them are UTF-8.
 */
function unescapeHaproxy(s: string, start: number, end: number): string {
  const first = s.indexOf('#', start);
  if (first < 0 || first >= end) return s.slice(start, end);
  let out = s.slice(start, first);
  let bytes: number[] = [];
  for (let i = first; i < end; ) {
    const b = s.charCodeAt(i) === HASH ? hexByte(s, i + 1, end) : -1;
    if (b >= 0) {
      bytes.push(b);
      i += 3;
      continue;
    }
    if (bytes.length > 0) {
      out += Buffer.from(bytes).toString('utf8');
      bytes = [];
    }
    out += s[i];
    i++;
  }
  if (bytes.length > 0) out += Buffer.from(bytes).toString('utf8');
  return out;
}

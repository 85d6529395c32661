/**
 * `json`: one JSON object per line, as nginx writes with `log_format … escape=json` or
 * an application logs itself. Field names and the time unit are configurable
 * (`JsonFormatOptions` in config.ts); a field may be looked up under several names.
 * Numbers may be JSON numbers or numeric strings, since nginx's JSON quotes everything.
 */
import { JSON_FIELD_DEFAULTS, JSON_TIME_UNIT_DEFAULT, type JsonFieldName, type ParserOptions } from './config.js';
import { clip, fail, isStatus, isToken, normalizeHost, readRequestLine, withoutBalancer, type AccessLogFormatModule, type ParseResult } from './request.js';
import { CLF_TIME_LEN, parseClfTime, parseDecimal, SLASH, sumTimeList, trimmedEnd } from './scan.js';

export const json: AccessLogFormatModule = {
  compile(opts) {
    const o = resolveJsonOptions(opts);
    return (line) => parseJson(line, o);
  },
};

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

function resolveJsonOptions(opts: ParserOptions | undefined): ResolvedJsonOptions {
  const j = opts?.json ?? {};
  const unit = j.timeUnit ?? JSON_TIME_UNIT_DEFAULT;
  if (unit !== 's' && unit !== 'ms') throw new TypeError(`json.timeUnit: expected "s" or "ms", got ${String(unit)}`);
  const d = JSON_FIELD_DEFAULTS;
  return {
    time: names(j.time, d.time, 'time'),
    host: names(j.host, d.host, 'host'),
    method: names(j.method, d.method, 'method'),
    path: names(j.path, d.path, 'path'),
    request: names(j.request, d.request, 'request'),
    status: names(j.status, d.status, 'status'),
    bytes: names(j.bytes, d.bytes, 'bytes'),
    request_time: names(j.request_time, d.request_time, 'request_time'),
    upstream_time: names(j.upstream_time, d.upstream_time, 'upstream_time'),
    client_ip: names(j.client_ip, d.client_ip, 'client_ip'),
    timePow10: unit === 's' ? 3 : 0,
  };
}

function names(configured: JsonFieldName | undefined, fallback: JsonFieldName, key: string): readonly string[] {
  const v = configured ?? fallback;
  const list = typeof v === 'string' ? [v] : [...v];
  // A typo'd empty name would silently make every line "missing" the field.
  if (list.length === 0 || list.some((n) => typeof n !== 'string' || n === '')) {
    throw new TypeError(`json.${key}: expected a non-empty field name or list of names`);
  }
  return list;
}

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
    const target = readRequestLine(req, describe(o.request));
    if (!Array.isArray(target)) return target;
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
    request: withoutBalancer({
      ts,
      host: hostRaw === undefined ? '' : normalizeHost(hostRaw),
      method,
      path,
      status,
      bytes,
      request_time_ms: requestTime,
      upstream_time_ms: upstream,
      client_ip: ipRaw === undefined || ipRaw === '' || ipRaw === '-' ? null : ipRaw,
    }),
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

/**
 * What every access-log format produces and what it is checked against: the request
 * read from one line (`ParsedRequest`, the line's part of `HttpRequest` in
 * schemas/events.ts), the fixed list of reasons a line is not one, and the value
 * limits every format's result must meet (`checkRanges`). A format module reads
 * fields; this module decides whether what it read is a request.
 */
import type { EventHeader, HttpRequest } from '../../schemas/events.js';
import type { ParserOptions } from './config.js';

/**
 * The HTTP-specific fields of an `HttpRequest`, as read from one line. What the fields
 * hold, whichever format they come from:
 * - `ts`: when the request happened, in ms since the epoch, if the line says; `null`
 *   when it does not, and the caller uses the log line's own timestamp. nginx prints the
 *   time the request ended, HAProxy the time it was accepted.
 * - `host`: virtual host, lower-cased and without a port; `''` when the line has none.
 * - `path`: the request target as the client sent it (query string included), escapes decoded.
 * - `bytes`: response bytes sent to the client (nginx `$body_bytes_sent`, HAProxy `%B`).
 * - `request_time_ms`: total time of the request (nginx `$request_time`, HAProxy `Ta`).
 * - `upstream_time_ms`: time the upstream took to answer, summed over retries; `null` if never reached.
 * - `queue_time_ms`: time queued in the load balancer (HAProxy `Tw`); `null` if unknown.
 * - `backend_queue`, `server_queue`: requests queued in the backend / on the chosen server
 *   when this one was logged (HAProxy `%bq`, `%sq`).
 * - `server`: server that handled the request; `null` when none was chosen (HAProxy `<NOSRV>`).
 */
export interface ParsedRequest extends Omit<HttpRequest, keyof EventHeader | 'source_event_id' | 'format'> {
  ts: number | null;
}

/** What every format reads; a line from a server that is not a load balancer has only this. */
export type CoreRequest = Omit<ParsedRequest, 'queue_time_ms' | 'backend_queue' | 'server_queue' | 'backend' | 'server'>;

/**
 * The request of a server that is not a load balancer: no queue, backend or server.
 * Written out field by field rather than spread, so every request has one object shape
 * (spreading a shared constant here cut nginx lines to a tenth in bench/access-log-parse.ts).
 */
export function withoutBalancer(p: CoreRequest): ParsedRequest {
  return {
    ts: p.ts,
    host: p.host,
    method: p.method,
    path: p.path,
    status: p.status,
    bytes: p.bytes,
    request_time_ms: p.request_time_ms,
    upstream_time_ms: p.upstream_time_ms,
    queue_time_ms: null,
    backend_queue: null,
    server_queue: null,
    backend: null,
    server: null,
    client_ip: p.client_ip,
  };
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

/** A line that is not a request, and why. */
export interface ParseFailure {
  ok: false;
  code: ParseErrorCode;
  reason: string;
}

/** A parsed request, or why the line is not one. */
export type ParseResult = { ok: true; request: ParsedRequest } | ParseFailure;

/** Reads one line of one format. Never throws on bad input. */
export type LineParser = (line: string) => ParseResult;

/**
 * One access-log format, as the registry in parse.ts holds it: `parse` if it takes no
 * options, else `compile`, which checks its part of the options (a mistake is a
 * programmer error: it throws a TypeError) and returns the parser for them. What the
 * parser reads is then held to {@link checkRanges} by the registry.
 */
export type AccessLogFormatModule = { parse: LineParser } | { compile(opts: ParserOptions | undefined): LineParser };

export function fail(code: ParseErrorCode, reason: string): ParseFailure {
  return { ok: false, code, reason };
}

/** Keeps reasons short enough for a log line; they may quote hostile input. */
export function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

/** RFC 9110 tchar: what a method may be made of. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

export function isToken(s: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** A three-digit number; whether it is a status a server sends is {@link checkRanges}'s call. */
export function isStatus(n: number): boolean {
  return Number.isInteger(n) && n >= 100 && n <= 999;
}

/**
 * `[method, target]` from "METHOD TARGET HTTP/x", or the `bad_request_line` failure
 * naming the field as `label`. The target is between the first and the last space, so a
 * target with a raw space (logged by nginx with a 400) still reads whole.
 */
export function readRequestLine(req: string, label: string): [string, string] | ParseFailure {
  const a = req.indexOf(' ');
  const b = req.lastIndexOf(' ');
  if (a <= 0 || b <= a + 1 || !isToken(req, 0, a) || !req.startsWith('HTTP/', b + 1)) {
    return fail('bad_request_line', `${label} is not "METHOD TARGET HTTP/x": "${clip(req)}"`);
  }
  return [req.slice(0, a), req.slice(a + 1, b)];
}

/** Lower-cased, without a port: how nginx's `$host` reads, so hosts from every format compare equal. */
export function normalizeHost(h: string): string {
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

/** The request if every value is within {@link REQUEST_LIMITS}, else the first one that is not. */
export function checkRanges(p: ParsedRequest): ParseResult {
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

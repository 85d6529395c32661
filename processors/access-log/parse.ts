/**
 * The access-log formats a container can declare with its `logmeter.log-format` label,
 * and the one entry point that parses a line in any of them. One line in, the HTTP part
 * of an `HttpRequest` (or a reason it is not one) out; no I/O, no clock.
 *
 * Each format is a module of its own (nginx-combined.ts, json.ts, haproxy.ts): a
 * hand-written scanner over the string (indexOf and charCodeAt, slices only for the
 * values kept) rather than a regex, since the fields are positional and a scanner can
 * say which field broke. What every format's result must meet is in request.ts. A new
 * format is a new module and one entry in {@link FORMATS}.
 */
import type { ParserOptions } from './config.js';
import { haproxy } from './haproxy.js';
import { json } from './json.js';
import { nginxCombined } from './nginx-combined.js';
import { checkRanges, clip, fail, type AccessLogFormatModule, type LineParser, type ParseResult } from './request.js';

/** Every known format, by the name a `logmeter.log-format` label gives it. */
const FORMATS = {
  'nginx-combined': nginxCombined,
  json,
  haproxy,
} as const satisfies Record<string, AccessLogFormatModule>;

/** One of {@link ACCESS_LOG_FORMATS}. */
export type AccessLogFormat = keyof typeof FORMATS;

/** The formats a `logmeter.log-format` label may name. */
export const ACCESS_LOG_FORMATS = Object.keys(FORMATS) as readonly AccessLogFormat[];

/** Whether a label value names a known format. */
export function isAccessLogFormat(format: string): format is AccessLogFormat {
  return Object.hasOwn(FORMATS, format);
}

type Compiled = Record<AccessLogFormat, LineParser>;

// An options object is checked whole the first time a line of a format that takes options
// is parsed with it: a mistake in the json options throws on a haproxy line too. Lines of
// a format without options (nginx-combined) never check them.
function compileAll(opts: ParserOptions | undefined): Compiled {
  const out: Partial<Compiled> = {};
  for (const name of ACCESS_LOG_FORMATS) {
    const f: AccessLogFormatModule = FORMATS[name];
    out[name] = 'compile' in f ? f.compile(opts) : f.parse;
  }
  return out as Compiled;
}

const DEFAULT_PARSERS = compileAll(undefined);
// Callers pass one options object for a whole stream; merging defaults per line would
// cost more than the parse.
const compiled = new WeakMap<ParserOptions, Compiled>();

function compiledFor(opts: ParserOptions | undefined): Compiled {
  if (opts === undefined) return DEFAULT_PARSERS;
  let c = compiled.get(opts);
  if (c === undefined) {
    c = compileAll(opts);
    compiled.set(opts, c);
  }
  return c;
}

/**
 * Parses one access-log line written in `format`. Never throws on bad input: a line
 * that is not a request comes back as `{ ok: false, code, reason }`. Options are
 * resolved once per options object, so pass the same object every call.
 */
export function parseAccessLine(format: string, line: string, opts?: ParserOptions): ParseResult {
  if (!isAccessLogFormat(format)) {
    return fail('unknown_format', `unknown access-log format "${clip(format)}" (known: ${ACCESS_LOG_FORMATS.join(', ')})`);
  }
  const f = FORMATS[format];
  const r = 'parse' in f ? f.parse(line) : compiledFor(opts)[format](line);
  return r.ok ? checkRanges(r.request) : r;
}

/**
 * Request parameters: checked, not cleaned. A value is either exactly what a parameter
 * accepts or the request is refused with a 400 naming the parameter; unknown parameters
 * are refused too, so a misspelt filter never silently widens a search.
 */
import { z } from 'zod';
import { decodeCursor } from './cursor.js';
import { parseTime } from './time.js';

export const MAX_LIMIT = 1000;

/** A 4xx answer, with the `{error, code}` body every logmeter error has. */
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 404,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const notFound = (what: string): ApiError => new ApiError(404, 'not_found', `${what} not found`);

const shown = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

export const timeParam = z.string().transform((s, ctx) => {
  const t = parseTime(s);
  if (t === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected an ISO 8601 time (2026-11-26T10:00:00Z) or a duration ago (10m, 2h, 7d), got ${shown(s)}` });
    return z.NEVER;
  }
  return t;
});

export const intParam = (min: number, max: number) =>
  z.string().transform((s, ctx) => {
    const n = /^\d{1,9}$/.test(s) ? Number(s) : NaN;
    if (!(n >= min && n <= max)) {
      ctx.addIssue({ code: 'custom', message: `expected an integer from ${min} to ${max}, got ${shown(s)}` });
      return z.NEVER;
    }
    return n;
  });

export const cursorParam = z.string().transform((s, ctx) => {
  const c = decodeCursor(s);
  if (!c) {
    ctx.addIssue({ code: 'custom', message: 'not a cursor from a previous response (next_cursor)' });
    return z.NEVER;
  }
  return c;
});

export const nameParam = z.string().min(1, 'must not be empty').max(256, 'at most 256 characters');
const orderParam = z.enum(['asc', 'desc']);

/** Parameters every listing takes. */
export const listing = {
  tenant: nameParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  limit: intParam(1, MAX_LIMIT).optional(),
  cursor: cursorParam.optional(),
  order: orderParam.optional(),
};

export function fromBeforeTo(v: { from?: number | undefined; to?: number | undefined }, ctx: z.RefinementCtx): void {
  if (v.from !== undefined && v.to !== undefined && v.from >= v.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be later than from' });
}

/** Query parameters as `schema` takes them; throws ApiError 400 naming every problem at once. */
export function parse<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') return `unknown parameter${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`;
    const param = i.path.map(String).join('.');
    return param ? `${param}: ${i.message.replace(/^Invalid input: /, '')}` : i.message;
  });
  throw new ApiError(400, 'bad_request', problems.join('; '));
}

/** A path parameter of 1 to 256 characters; throws ApiError 400. */
export function pathParam(params: Record<string, string>, key: string, name: string): string {
  const v = params[key] ?? '';
  if (v.length === 0 || v.length > 256) throw new ApiError(400, 'bad_request', `${name}: expected 1 to 256 characters`);
  return v;
}

/** A JSON object body's field; undefined for any other body (a string, an array, none). */
export function bodyField(body: unknown, key: string): unknown {
  return body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>)[key] : undefined;
}

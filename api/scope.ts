/**
 * Tenant scoping, and the WHERE clauses built on it.
 *
 * Isolation by construction: a `Scope` is made only by `scopeFor`, from the caller's
 * principal, never from a parameter alone — a tenant token always gets its own tenant,
 * whatever `tenant=` says; only the operator reads across tenants, optionally narrowed
 * by `tenant=`. Every query's conditions start from `scoped(scope)`, so no query can
 * forget the tenant. Input is checked (api/params.ts), not cleaned: every value reaches
 * ClickHouse as a bound query parameter; the only text spliced into statements is table
 * names and expressions chosen here.
 */
import type { Principal } from './auth.js';
import type { Cursor } from './cursor.js';

/** Whose rows a query may read. Built only by `scopeFor`, so a tenant can never widen it. */
export type Scope = { tenant: string } | { allTenants: true };

export function scopeFor(principal: Principal, requestedTenant: string | undefined): Scope {
  if (principal.kind === 'tenant') return { tenant: principal.tenant };
  return requestedTenant === undefined ? { allTenants: true } : { tenant: requestedTenant };
}

/** Conditions joined by AND, and the values bound to their parameters. */
export interface Where {
  conds: string[];
  params: Record<string, unknown>;
}

/** The conditions every query of `scope` starts from. */
export function scoped(scope: Scope): Where {
  return 'tenant' in scope ? { conds: ['tenant = {tenant:String}'], params: { tenant: scope.tenant } } : { conds: [], params: {} };
}

export const whereSql = (w: Where): string => (w.conds.length ? `WHERE ${w.conds.join(' AND ')}` : '');

/** A bound millisecond time as a DateTime64 expression. */
const ms = (param: string) => `fromUnixTimestamp64Milli({${param}:Int64}, 'UTC')`;

/** Only rows whose `column` is `value` (when given); bound as a String parameter named like the column. */
export function equals(w: Where, column: string, value: string | undefined): void {
  if (value === undefined) return;
  w.conds.push(`${column} = {${column}:String}`);
  w.params[column] = value;
}

export function timeRange(w: Where, column: string, from: number | undefined, to: number | undefined): void {
  if (from !== undefined) {
    w.conds.push(`${column} >= ${ms('from')}`);
    w.params.from = from;
  }
  if (to !== undefined) {
    w.conds.push(`${column} < ${ms('to')}`);
    w.params.to = to;
  }
}

/** Rows strictly after the cursor in the listing's order (keys compared as a tuple, like ORDER BY). */
export function afterCursor(w: Where, tsExpr: string, idExpr: string, cursor: Cursor | undefined, order: 'asc' | 'desc'): void {
  if (!cursor) return;
  w.conds.push(`(${tsExpr}, ${idExpr}) ${order === 'desc' ? '<' : '>'} (${ms('cursor_ts')}, {cursor_id:String})`);
  w.params.cursor_ts = cursor.ts;
  w.params.cursor_id = cursor.id;
}

/**
 * A container named by its full id, an id prefix of at least 12 characters (what
 * `docker ps` shows), or its name.
 */
export function containerMatch(w: Where, value: string): void {
  w.conds.push('(container_id = {container:String} OR container_name = {container:String} OR (length({container:String}) >= 12 AND startsWith(container_id, {container:String})))');
  w.params.container = value;
}

/**
 * Paging: a cursor is the sort key of the last row of a page, opaque to the caller.
 * A page asks ClickHouse for one row more than it shows; that extra row only says
 * whether there is a next page, so a listing never needs a count.
 */
import { inRange } from './time.js';

/** Position after a row in a newest-first (or oldest-first) listing: its sort key. */
export interface Cursor {
  ts: number;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.ts, c.id]), 'utf8').toString('base64url');
}

export function decodeCursor(s: string): Cursor | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    // Only positions a listing can hand out: a time ClickHouse can hold and an id.
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && inRange(v[0]) && typeof v[1] === 'string') return { ts: v[0], id: v[1] };
  } catch {
    /* not ours: refused below */
  }
  return undefined;
}

/** ClickHouse compares Strings bytewise; sorting merged rows the same way keeps cursors consistent. */
export function compareCursors(a: Cursor, b: Cursor): number {
  return a.ts - b.ts || Buffer.compare(Buffer.from(a.id, 'utf8'), Buffer.from(b.id, 'utf8'));
}

/** The first `limit` of `sorted` (fetched with one row more) and the cursor after them, if more follow. */
export function page<T>(sorted: T[], limit: number, key: (row: T) => Cursor): { items: T[]; next_cursor: string | null } {
  const items = sorted.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: sorted.length > limit && last ? encodeCursor(key(last)) : null };
}

/**
 * Points in time as the API and `logmeter logs --since` take them. Only times ClickHouse
 * stores (DateTime64(3): 1900–2299) are accepted; outside it ClickHouse would clamp
 * rather than refuse, so a far-off time would silently read as another.
 */

const DURATION_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const ISO_TIME = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(Z|[+-]\d{2}:?\d{2})?)?$/i;
const MIN_TIME = Date.UTC(1900, 0, 1);
const MAX_TIME = Date.UTC(2299, 11, 31);

/** Whether `t` (ms since the epoch) is a time ClickHouse can hold. */
export const inRange = (t: number): boolean => Number.isSafeInteger(t) && t >= MIN_TIME && t <= MAX_TIME;

/** Whether `YYYY-MM-DD` names a day of the calendar (`Date.parse` rolls 2026-02-30 over to March 2). */
function isCalendarDate(date: string): boolean {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

/**
 * A point in time: ISO 8601 (`2026-11-26`, `2026-11-26T10:00:00Z`, `…+02:00`; no zone
 * means UTC) or a duration before `now` (`10m`, `2h`, `7d`, `30s`, `500ms`). Undefined
 * for anything else, and for times outside 1900–2299 (what ClickHouse stores).
 */
export function parseTime(s: string, now = Date.now()): number | undefined {
  const d = /^(\d{1,9})(ms|s|m|h|d)$/.exec(s);
  if (d) {
    const t = now - Number(d[1]) * DURATION_MS[d[2] as keyof typeof DURATION_MS];
    return inRange(t) ? t : undefined;
  }
  const m = ISO_TIME.exec(s);
  if (!m) return undefined;
  const [, date = '', time, zone] = m;
  if (!isCalendarDate(date)) return undefined;
  const t = Date.parse(time === undefined ? `${date}T00:00:00Z` : `${date}T${time}${zone ?? 'Z'}`);
  return inRange(t) ? t : undefined;
}

/** A stored time as the API shows it. */
export const iso = (msValue: number): string => new Date(msValue).toISOString();

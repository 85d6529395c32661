/**
 * Billing periods: which hour, day or month a report covers, and how a person names one.
 *
 * - Periods are UTC and half-open, [start, end).
 * - Usage is metered per hour, so a period always starts and ends on a whole hour.
 * - An exact hour, day or month is reported as that kind, whichever way it was asked for
 *   (`--from 2026-11-01 --to 2026-12-01` is the report `2026-11`); any other range is `custom`.
 * - Input is checked, not corrected: `2026-02-30` is refused, not rolled into March.
 *
 * No I/O and no clock: every function takes the time it works on.
 */
import { LogmeterError } from '../../lib/errors.js';

export const PERIOD_KINDS = ['hourly', 'daily', 'monthly'] as const;

/** A period the scheduler reports on. */
export type PeriodKind = (typeof PERIOD_KINDS)[number];

export interface Period {
  /** `custom` for a `--from/--to` range that is not exactly one hour, day or month. */
  kind: PeriodKind | 'custom';
  /** `2026-11-26T10` (hour), `2026-11-26` (day), `2026-11` (month), `2026-11-26T10_2026-11-27T00` (custom). */
  label: string;
  start: Date;
  /** Exclusive. */
  end: Date;
}

const HOUR = 3_600_000;
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const monthLabel = (d: Date) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;
const dayLabel = (d: Date) => `${monthLabel(d)}-${pad(d.getUTCDate())}`;
const hourLabel = (d: Date) => `${dayLabel(d)}T${pad(d.getUTCHours())}`;

function invalid(message: string): LogmeterError {
  return new LogmeterError('invalid_period', message);
}

function toDate(at: Date | string): Date {
  const d = typeof at === 'string' ? new Date(at) : at;
  if (Number.isNaN(d.getTime())) throw invalid(`not a time: ${JSON.stringify(String(at))}`);
  return d;
}

/** The period of `kind` containing `at` (UTC). */
export function periodBounds(kind: PeriodKind, at: Date | string): Period {
  const d = toDate(at);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  switch (kind) {
    case 'hourly': {
      const start = new Date(Math.floor(d.getTime() / HOUR) * HOUR);
      return { kind, label: hourLabel(start), start, end: new Date(start.getTime() + HOUR) };
    }
    case 'daily': {
      const start = new Date(Date.UTC(y, m, d.getUTCDate()));
      return { kind, label: dayLabel(start), start, end: new Date(Date.UTC(y, m, d.getUTCDate() + 1)) };
    }
    case 'monthly': {
      const start = new Date(Date.UTC(y, m, 1));
      return { kind, label: monthLabel(start), start, end: new Date(Date.UTC(y, m + 1, 1)) };
    }
  }
}

/** The whole period of `kind` before the one containing `at`: what a tick at `at` reports on. */
export function previousPeriod(kind: PeriodKind, at: Date | string): Period {
  return periodBounds(kind, new Date(periodBounds(kind, at).start.getTime() - 1));
}

/** Start (UTC milliseconds) of the calendar month `at` is in: where a month's free allowance starts being used. */
export function monthStart(at: Date): number {
  return Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1);
}

/**
 * The period [start, end): an exact hour, day or month is reported as that kind (so
 * `--from 2026-11-01 --to 2026-12-01` is the report `2026-11`), anything else as
 * `custom`. Both ends must be whole hours.
 */
export function periodOf(start: Date, end: Date): Period {
  for (const [name, d] of [['start', start], ['end', end]] as const) {
    if (Number.isNaN(d.getTime())) throw invalid(`the period ${name} is not a time`);
    if (d.getTime() % HOUR !== 0) throw invalid(`the period ${name} ${d.toISOString()} is not on a whole hour (usage is metered per hour)`);
  }
  if (end.getTime() <= start.getTime()) throw invalid(`the period end ${end.toISOString()} is not after its start ${start.toISOString()}`);
  for (const kind of PERIOD_KINDS) {
    const p = periodBounds(kind, start);
    if (p.start.getTime() === start.getTime() && p.end.getTime() === end.getTime()) return p;
  }
  return { kind: 'custom', label: `${hourLabel(start)}_${hourLabel(end)}`, start, end };
}

const MIN_YEAR = 1970;
const MAX_YEAR = 2299; // the end of ClickHouse's DateTime64 range

/** Validated UTC milliseconds of a calendar date and hour, or a clear error naming `what`. */
function utc(what: string, text: string, y: number, mo: number, d = 1, h = 0, mi = 0, s = 0, ms = 0): number {
  if (y < MIN_YEAR || y > MAX_YEAR) throw invalid(`${what} ${JSON.stringify(text)}: year ${y} is outside ${MIN_YEAR}–${MAX_YEAR}`);
  if (mo < 1 || mo > 12) throw invalid(`${what} ${JSON.stringify(text)}: month ${pad(mo)} does not exist`);
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (d < 1 || d > days) throw invalid(`${what} ${JSON.stringify(text)}: ${y}-${pad(mo)} has ${days} days`);
  if (h > 23) throw invalid(`${what} ${JSON.stringify(text)}: hour ${pad(h)} does not exist`);
  if (mi > 59 || s > 59) throw invalid(`${what} ${JSON.stringify(text)}: minutes and seconds go up to 59`);
  return Date.UTC(y, mo - 1, d, h, mi, s, ms);
}

/**
 * `--period`: `2026-11` (a month), `2026-11-26` (a day) or `2026-11-26T10` (an hour,
 * UTC).
 */
export function parsePeriod(text: string): Period {
  const what = '--period';
  const m = /^(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2}))?)?$/.exec(text.trim());
  if (!m) throw invalid(`${what} ${JSON.stringify(text)}: expected YYYY-MM (a month), YYYY-MM-DD (a day) or YYYY-MM-DDTHH (an hour, UTC)`);
  const [, y, mo, d, h] = m;
  const at = new Date(utc(what, text, Number(y), Number(mo), d === undefined ? 1 : Number(d), h === undefined ? 0 : Number(h)));
  return periodBounds(h !== undefined ? 'hourly' : d !== undefined ? 'daily' : 'monthly', at);
}

/**
 * A `--from`/`--to` time: `2026-11`, `2026-11-26`, `2026-11-26T10`, or a full ISO
 * time (`2026-11-26T10:00`, `…:00Z`, `…:00.000+02:00`). Without an offset it is UTC.
 */
export function parseTime(text: string, what = 'time'): Date {
  const m = /^(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?(Z|[+-]\d{2}:?\d{2})?)?)?$/.exec(text.trim());
  if (!m) throw invalid(`${what} ${JSON.stringify(text)}: expected an ISO time such as 2026-11-26, 2026-11-26T10 or 2026-11-26T10:00:00Z`);
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  let ms = utc(what, text, Number(y), Number(mo), Number(d ?? 1), Number(h ?? 0), Number(mi ?? 0), Number(s ?? 0), Number((frac ?? '0').padEnd(3, '0')));
  if (zone && zone !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
    if (Number(z[2]) > 23 || Number(z[3]) > 59) throw invalid(`${what} ${JSON.stringify(text)}: offset ${zone} does not exist`);
    ms -= (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3])) * 60_000;
  }
  return new Date(ms);
}

/** `--from` and `--to` as a period (see {@link periodOf}). */
export function parseRange(from: string, to: string): Period {
  return periodOf(parseTime(from, '--from'), parseTime(to, '--to'));
}

/** The period the options name; exactly one of --period or --from with --to. */
export function periodFromOptions(opts: { period?: string | undefined; from?: string | undefined; to?: string | undefined }): Period {
  const range = opts.from !== undefined || opts.to !== undefined;
  if (opts.period !== undefined && range) throw invalid('give either --period or --from/--to, not both');
  if (opts.period !== undefined) return parsePeriod(opts.period);
  if (opts.from === undefined || opts.to === undefined) throw invalid('give --period, or both --from and --to');
  return parseRange(opts.from, opts.to);
}

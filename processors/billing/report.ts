/**
 * Billing reports: one tenant, one period, priced from the price list.
 *
 * - Periods are UTC and half-open, [start, end). Usage is metered per hour, so a
 *   period always starts and ends on a whole hour.
 * - Quantities are summed from `usage FINAL` (a recomputed usage row replaces the
 *   old one instead of adding to it) as Decimal128(9) in ClickHouse: exact, so the
 *   sum does not depend on the order ClickHouse adds rows in.
 * - Free allowances are monthly (`free_per_month`). A report gets what the month had
 *   left at the report's start: hourly and daily reports of a month together grant
 *   the allowance once, like the monthly report does.
 * - amount = billable × price / per, computed exactly on integers and rounded
 *   half-to-even to 4 decimals per line; the total is the sum of the rounded lines,
 *   so the lines always add up to it.
 * - Output is byte-deterministic: the same usage and prices give the same CSV and
 *   JSON, with no generation time in them. Decimals are strings in the JSON so no
 *   reader turns 0.1 into 0.1000000000000000055.
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { LogmeterError } from '../../lib/errors.js';
import type { PriceList } from './prices.js';

// ---- periods -----------------------------------------------------------------------

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

// ---- exact decimals ---------------------------------------------------------------

/** Decimals of quantities: ClickHouse sums them as Decimal128(9). */
const QTY_SCALE = 9;
/** Decimals of amounts. */
const AMOUNT_SCALE = 4;
const pow10 = (n: number) => 10n ** BigInt(n);

/** A plain decimal string as an integer count of 10^-scale. */
function scaled(text: string, scale: number): bigint {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new LogmeterError('billing_bad_decimal', `not a plain decimal: ${JSON.stringify(text)}`);
  const frac = m[2] ?? '';
  if (frac.length > scale) throw new LogmeterError('billing_bad_decimal', `${text} has more than ${scale} decimals`);
  return BigInt(m[1]!) * pow10(scale) + BigInt(frac.padEnd(scale, '0') || '0');
}

function decimals(text: string): number {
  return text.split('.')[1]?.length ?? 0;
}

/** Integer division rounded half to even (banker's rounding); num ≥ 0, den > 0. */
function divHalfEven(num: bigint, den: bigint): bigint {
  const q = num / den;
  const twice = (num % den) * 2n;
  if (twice > den || (twice === den && q % 2n === 1n)) return q + 1n;
  return q;
}

/** `value × 10^-scale` as text: fixed decimals for money, trimmed for quantities. */
function formatScaled(value: bigint, scale: number, fixed: boolean): string {
  const int = value / pow10(scale);
  const frac = (value % pow10(scale)).toString().padStart(scale, '0');
  const shown = fixed ? frac : frac.replace(/0+$/, '');
  return shown ? `${int}.${shown}` : `${int}`;
}

// ---- the report -------------------------------------------------------------------

export interface LineItem {
  meter: string;
  /** The `size` dimension for meters priced by size; `null` for the others. */
  size: string | null;
  unit: string;
  /** Usage in the period, in `unit`. */
  quantity: string;
  /** Part of `quantity` covered by the month's free allowance. */
  free_quantity: string;
  /** quantity − free_quantity. */
  billable: string;
  /** Price of `per` units. */
  price: string;
  per: number;
  /** billable × price / per, 4 decimals, rounded half to even. */
  amount: string;
}

export interface Report {
  /** `<tenant>/<period label>`. */
  report_id: string;
  tenant: string;
  period: { kind: Period['kind']; label: string; start: string; end: string };
  currency: string;
  /** One per priced meter (one per size for meters priced by size), sorted by meter then size. */
  line_items: LineItem[];
  totals: { amount: string };
}

interface UsageRow {
  meter: string;
  unit: string;
  size: string;
  month: number;
  in_period: number;
  quantity: string;
}

interface Tally {
  /** Whether the period itself has usage rows (not only the month before it). */
  inPeriod: boolean;
  /** Per month touched: usage before the period (same month) and in it, in 10^-9 units. */
  months: Map<number, { prior: bigint; inPeriod: bigint }>;
}

async function tenantHasUsage(ch: ClickHouse, tenant: string): Promise<boolean> {
  const rs = await ch.client.query({
    query: `SELECT 1 AS one FROM ${ch.table('usage')} FINAL WHERE tenant = {tenant:String} LIMIT 1`,
    query_params: { tenant },
    format: 'JSONEachRow',
  });
  return (await rs.json()).length > 0;
}

/**
 * The report of `tenant` for [from, to). Throws `unknown_tenant` for a tenant with no
 * usage at all; a known tenant without usage in the period gets zero quantities.
 * Usage of a meter the price list does not price, or in another unit, is refused
 * (not retriable): billing it as free would be silent.
 */
export async function computeReport(ch: ClickHouse, tenant: string, from: Date, to: Date, prices: PriceList): Promise<Report> {
  if (!tenant) throw new LogmeterError('unknown_tenant', 'the tenant name is empty');
  const period = periodOf(from, to);
  if (!(await tenantHasUsage(ch, tenant))) throw new LogmeterError('unknown_tenant', `unknown tenant "${tenant}": it has no usage at all`);

  const sized = Object.keys(prices.meters).filter((m) => prices.meters[m]!.sizes !== null);
  // From the start of the period's first month, so the free allowance the month had
  // already used before the period is known.
  const monthStart = Date.UTC(period.start.getUTCFullYear(), period.start.getUTCMonth(), 1);
  const rs = await ch.client.query({
    query: `SELECT meter, unit,
                   if(has({sized:Array(String)}, meter), dimensions['size'], '') AS size,
                   toYYYYMM(ts) AS month,
                   ts >= fromUnixTimestamp64Milli({from:Int64}) AS in_period,
                   toString(sum(toDecimal128(toString(quantity), ${QTY_SCALE}))) AS quantity
            FROM ${ch.table('usage')} FINAL
            WHERE tenant = {tenant:String}
              AND ts >= fromUnixTimestamp64Milli({month_start:Int64})
              AND ts < fromUnixTimestamp64Milli({to:Int64})
            GROUP BY meter, unit, size, month, in_period
            ORDER BY meter, unit, size, month, in_period`,
    query_params: { tenant, sized, from: period.start.getTime(), to: period.end.getTime(), month_start: monthStart },
    format: 'JSONEachRow',
  });
  const rows = await rs.json<UsageRow>();

  const tallies = new Map<string, Map<string, Tally>>(); // meter → size → tally
  const unpriced = new Set<string>();
  const wrongUnit = new Set<string>();
  for (const r of rows) {
    const price = prices.meters[r.meter];
    if (!price) {
      if (Number(r.in_period) === 1) unpriced.add(r.meter);
      continue;
    }
    if (r.unit !== price.unit) wrongUnit.add(`${r.meter} is recorded in ${r.unit}, priced in ${price.unit}`);
    let bySize = tallies.get(r.meter);
    if (!bySize) tallies.set(r.meter, (bySize = new Map<string, Tally>()));
    let t = bySize.get(r.size);
    if (!t) bySize.set(r.size, (t = { inPeriod: false, months: new Map() }));
    const month = t.months.get(Number(r.month)) ?? { prior: 0n, inPeriod: 0n };
    const q = scaled(r.quantity, QTY_SCALE);
    if (Number(r.in_period) === 1) {
      month.inPeriod += q;
      t.inPeriod = true;
    } else {
      month.prior += q;
    }
    t.months.set(Number(r.month), month);
  }
  if (unpriced.size > 0) {
    throw new LogmeterError('billing_unpriced_usage', `tenant "${tenant}" has usage of meters the price list does not price: ${[...unpriced].sort().join(', ')}`);
  }
  if (wrongUnit.size > 0) throw new LogmeterError('billing_unit_mismatch', `price list units do not match the usage: ${[...wrongUnit].sort().join('; ')}`);

  const items: LineItem[] = [];
  let total = 0n;
  for (const meter of Object.keys(prices.meters).sort()) {
    const p = prices.meters[meter]!;
    const bySize: Map<string, Tally> = tallies.get(meter) ?? new Map<string, Tally>();
    // Sizes of the price list always have a line; other sizes when the period used them.
    const used = [...bySize].filter(([, t]) => t.inPeriod).map(([size]) => size);
    const sizes: Array<string | null> = p.sizes ? [...new Set([...Object.keys(p.sizes), ...used])].sort() : [null];
    for (const size of sizes) {
      const price = size === null ? p.price : (p.sizes?.[size] ?? p.price);
      const months = bySize.get(size ?? '')?.months ?? new Map<number, { prior: bigint; inPeriod: bigint }>();
      const allowance = scaled(p.free_per_month, QTY_SCALE);
      let quantity = 0n;
      let free = 0n;
      for (const { prior, inPeriod } of months.values()) {
        quantity += inPeriod;
        const left = allowance > prior ? allowance - prior : 0n;
        free += inPeriod < left ? inPeriod : left;
      }
      const billable = quantity - free;
      const priceScale = decimals(price);
      const amount = divHalfEven(billable * scaled(price, priceScale) * pow10(AMOUNT_SCALE), pow10(QTY_SCALE + priceScale) * BigInt(p.per));
      total += amount;
      items.push({
        meter,
        size,
        unit: p.unit,
        quantity: formatScaled(quantity, QTY_SCALE, false),
        free_quantity: formatScaled(free, QTY_SCALE, false),
        billable: formatScaled(billable, QTY_SCALE, false),
        price,
        per: p.per,
        amount: formatScaled(amount, AMOUNT_SCALE, true),
      });
    }
  }
  return {
    report_id: `${tenant}/${period.label}`,
    tenant,
    period: { kind: period.kind, label: period.label, start: period.start.toISOString(), end: period.end.toISOString() },
    currency: prices.currency,
    line_items: items,
    totals: { amount: formatScaled(total, AMOUNT_SCALE, true) },
  };
}

// ---- rendering --------------------------------------------------------------------

export const CSV_COLUMNS = [
  'report_id',
  'tenant',
  'period_kind',
  'period_start',
  'period_end',
  'currency',
  'meter',
  'size',
  'unit',
  'quantity',
  'free_quantity',
  'billable',
  'price',
  'per',
  'amount',
] as const;

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** One row per line item under a header; `\n` line ends, trailing newline. Totals are in the JSON. */
export function renderCsv(report: Report): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const li of report.line_items) {
    const row = [report.report_id, report.tenant, report.period.kind, report.period.start, report.period.end, report.currency, li.meter, li.size ?? '', li.unit, li.quantity, li.free_quantity, li.billable, li.price, li.per, li.amount];
    lines.push(row.map(csvField).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** Pretty JSON with a fixed key order (built here, not taken from the object's), trailing newline. */
export function renderJson(report: Report): string {
  const ordered = {
    report_id: report.report_id,
    tenant: report.tenant,
    period: { kind: report.period.kind, label: report.period.label, start: report.period.start, end: report.period.end },
    currency: report.currency,
    line_items: report.line_items.map((li) => ({
      meter: li.meter,
      size: li.size,
      unit: li.unit,
      quantity: li.quantity,
      free_quantity: li.free_quantity,
      billable: li.billable,
      price: li.price,
      per: li.per,
      amount: li.amount,
    })),
    totals: { amount: report.totals.amount },
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

// ---- writing ----------------------------------------------------------------------

/**
 * A tenant name as one safe path segment: letters, digits, `.`, `_`, `-` and the like
 * stay, anything else (`/` included) is percent-encoded, and `.`/`..` are spelled out.
 */
export function tenantDirName(tenant: string): string {
  const enc = encodeURIComponent(tenant);
  return enc === '.' || enc === '..' ? enc.replaceAll('.', '%2E') : enc;
}

/** Where a report's files go under `dir`: `<dir>/<tenant>/<label>.csv` and `.json`. */
export function reportPaths(dir: string, report: Report): { csv: string; json: string } {
  const base = path.join(dir, tenantDirName(report.tenant), report.period.label);
  return { csv: `${base}.csv`, json: `${base}.json` };
}

/**
 * The row key in billing_line_items, whose ORDER BY is (tenant, report_id, meter): a
 * meter priced by size gets one row per size, `container_seconds{size=small}`.
 */
export function lineItemKey(li: LineItem): string {
  return li.size === null ? li.meter : `${li.meter}{size=${li.size}}`;
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Stores a report: its line items into billing_line_items, then its CSV and JSON under
 * `dir` (each written to a temporary file and renamed, so a reader never sees half a
 * report). Rows carry version = period end, so running the report again replaces them
 * (equal versions: the last insert wins) with identical rows when nothing changed.
 * Rows of line items the new report no longer has (a size or meter gone from the
 * price list) are deleted after the insert, so a reader never sees the report empty.
 */
export async function writeReport(ch: ClickHouse, report: Report, dir: string): Promise<{ csv: string; json: string }> {
  const start = Date.parse(report.period.start);
  const end = Date.parse(report.period.end);
  const rows = report.line_items.map((li) => ({
    report_id: report.report_id,
    tenant: report.tenant,
    period_kind: report.period.kind,
    period_start: start,
    period_end: end,
    meter: lineItemKey(li),
    unit: li.unit,
    quantity: Number(li.quantity),
    free_quantity: Number(li.free_quantity),
    billable: Number(li.billable),
    unit_price: Number(li.price) / li.per,
    amount: Number(li.amount),
    currency: report.currency,
    version: end,
  }));
  if (rows.length > 0) await ch.client.insert({ table: ch.table('billing_line_items'), values: rows, format: 'JSONEachRow' });
  const keys = rows.map((r) => r.meter);
  const stale = await ch.client.query({
    query: `SELECT DISTINCT meter FROM ${ch.table('billing_line_items')} FINAL
            WHERE tenant = {tenant:String} AND report_id = {report_id:String} AND NOT has({keys:Array(String)}, meter)`,
    query_params: { tenant: report.tenant, report_id: report.report_id, keys },
    format: 'JSONEachRow',
  });
  if ((await stale.json()).length > 0) {
    await ch.client.command({
      query: `DELETE FROM ${ch.table('billing_line_items')} WHERE tenant = {tenant:String} AND report_id = {report_id:String} AND NOT has({keys:Array(String)}, meter)`,
      query_params: { tenant: report.tenant, report_id: report.report_id, keys },
    });
  }

  const files = reportPaths(dir, report);
  await mkdir(path.dirname(files.csv), { recursive: true });
  await writeAtomically(files.csv, renderCsv(report));
  await writeAtomically(files.json, renderJson(report));
  return files;
}

/**
 * A billing report: one tenant, one period, priced from the price list. This file is
 * the pricing itself, a plain function of the usage totals it is given (no I/O); the
 * totals come from `sql.ts`, the output goes through `render.ts` and `run.ts`.
 *
 * Rules:
 * 1. Quantities are summed from `usage FINAL` (a recomputed usage row replaces the old
 *    one instead of adding to it) as Decimal128(9): exact, so the sum does not depend
 *    on the order ClickHouse adds rows in (see `sql.ts`, `money.ts`).
 * 2. Free allowances are monthly (`free_per_month`). A report gets what the month had
 *    left at the report's start: hourly and daily reports of a month together grant
 *    the allowance once, like the monthly report does. A range over several months
 *    gets each month's allowance for its part.
 * 3. amount = billable × price / per, computed exactly on integers and rounded
 *    half-to-even to 4 decimals per line; the total is the sum of the rounded lines,
 *    so the lines always add up to it.
 * 4. Every meter of the price list has a line, in meter order; a meter priced by size
 *    has one line per size of the price list, plus one per other size the period used
 *    (priced at the meter's `price`), in size order.
 * 5. Usage of a meter the price list does not price, or in another unit than its
 *    price, is refused (not retriable): billing it as free would be silent.
 * 6. Output is byte-deterministic: the same usage and prices give the same report, with
 *    no generation time in it. Decimals are strings so no reader turns 0.1 into
 *    0.1000000000000000055.
 */
import { LogmeterError } from '../../lib/errors.js';
import type { Period } from './calendar.js';
import { QTY_SCALE, amountOf, formatAmount, formatQuantity, scaled } from './money.js';
import type { PriceList } from './prices.js';

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

/**
 * Usage of one meter, unit and size in one calendar month, either inside the period or
 * before it in the same month (what the month's free allowance already covered).
 */
export interface UsageTotal {
  meter: string;
  unit: string;
  /** The `size` dimension for meters priced by size, `''` for the others. */
  size: string;
  /** `YYYYMM`. */
  month: number;
  /** In the period (true) or before it, in the period's first month (false). */
  inPeriod: boolean;
  /** Plain decimal string, up to 9 decimals. */
  quantity: string;
}

interface Tally {
  /** Whether the period itself has usage rows (not only the month before it). */
  inPeriod: boolean;
  /** Per month touched: usage before the period (same month) and in it, in 10^-9 units. */
  months: Map<number, MonthUse>;
}

interface MonthUse {
  prior: bigint;
  inPeriod: bigint;
}

/** Meters whose usage is split by its `size` dimension. */
export function sizedMeters(prices: PriceList): string[] {
  return Object.keys(prices.meters).filter((m) => prices.meters[m]!.sizes !== null);
}

/** Usage totals as meter → size → tally, after rule 5's checks. */
function tally(tenant: string, rows: readonly UsageTotal[], prices: PriceList): Map<string, Map<string, Tally>> {
  const tallies = new Map<string, Map<string, Tally>>();
  const unpriced = new Set<string>();
  const wrongUnit = new Set<string>();
  for (const r of rows) {
    const price = prices.meters[r.meter];
    if (!price) {
      if (r.inPeriod) unpriced.add(r.meter);
      continue;
    }
    if (r.unit !== price.unit) wrongUnit.add(`${r.meter} is recorded in ${r.unit}, priced in ${price.unit}`);
    let bySize = tallies.get(r.meter);
    if (!bySize) tallies.set(r.meter, (bySize = new Map<string, Tally>()));
    let t = bySize.get(r.size);
    if (!t) bySize.set(r.size, (t = { inPeriod: false, months: new Map() }));
    const month = t.months.get(r.month) ?? { prior: 0n, inPeriod: 0n };
    const q = scaled(r.quantity, QTY_SCALE);
    if (r.inPeriod) {
      month.inPeriod += q;
      t.inPeriod = true;
    } else {
      month.prior += q;
    }
    t.months.set(r.month, month);
  }
  if (unpriced.size > 0) {
    throw new LogmeterError('billing_unpriced_usage', `tenant "${tenant}" has usage of meters the price list does not price: ${[...unpriced].sort().join(', ')}`);
  }
  if (wrongUnit.size > 0) throw new LogmeterError('billing_unit_mismatch', `price list units do not match the usage: ${[...wrongUnit].sort().join('; ')}`);
  return tallies;
}

/** Quantity in the period and the part of it the months' allowances cover (rule 2). */
function withAllowance(months: Iterable<MonthUse>, allowance: bigint): { quantity: bigint; free: bigint } {
  let quantity = 0n;
  let free = 0n;
  for (const { prior, inPeriod } of months) {
    quantity += inPeriod;
    const left = allowance > prior ? allowance - prior : 0n;
    free += inPeriod < left ? inPeriod : left;
  }
  return { quantity, free };
}

/**
 * The report of `tenant` for `period` from its usage totals: those of the period, and
 * those of the period's first month before it.
 */
export function priceUsage(tenant: string, period: Period, rows: readonly UsageTotal[], prices: PriceList): Report {
  const tallies = tally(tenant, rows, prices);
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
      const months = bySize.get(size ?? '')?.months.values() ?? [];
      const { quantity, free } = withAllowance(months, scaled(p.free_per_month, QTY_SCALE));
      const billable = quantity - free;
      const amount = amountOf(billable, price, p.per);
      total += amount;
      items.push({
        meter,
        size,
        unit: p.unit,
        quantity: formatQuantity(quantity),
        free_quantity: formatQuantity(free),
        billable: formatQuantity(billable),
        price,
        per: p.per,
        amount: formatAmount(amount),
      });
    }
  }
  return {
    report_id: `${tenant}/${period.label}`,
    tenant,
    period: { kind: period.kind, label: period.label, start: period.start.toISOString(), end: period.end.toISOString() },
    currency: prices.currency,
    line_items: items,
    totals: { amount: formatAmount(total) },
  };
}

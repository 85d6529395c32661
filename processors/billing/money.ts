/**
 * Exact decimal arithmetic for billing: quantities, prices and amounts as integers
 * counting 10^-scale, never as floats, so 0.1 is exactly 0.1 and a sum does not depend
 * on the order it was added in.
 *
 * - Quantities have {@link QTY_SCALE} decimals: ClickHouse sums them as Decimal128(9).
 * - Amounts have {@link AMOUNT_SCALE} decimals, rounded half to even (banker's rounding).
 * - Inputs are plain decimal strings (`0.08`, `12`); anything else is refused, not guessed.
 */
import { LogmeterError } from '../../lib/errors.js';

/** Decimals of quantities: ClickHouse sums them as Decimal128(9). */
export const QTY_SCALE = 9;
/** Decimals of amounts. */
export const AMOUNT_SCALE = 4;
const pow10 = (n: number) => 10n ** BigInt(n);

/** A plain decimal string as an integer count of 10^-scale; more decimals than `scale` is refused. */
export function scaled(text: string, scale: number): bigint {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new LogmeterError('billing_bad_decimal', `not a plain decimal: ${JSON.stringify(text)}`);
  const frac = m[2] ?? '';
  if (frac.length > scale) throw new LogmeterError('billing_bad_decimal', `${text} has more than ${scale} decimals`);
  return BigInt(m[1]!) * pow10(scale) + BigInt(frac.padEnd(scale, '0') || '0');
}

/** How many decimals a plain decimal string is written with. */
export function decimals(text: string): number {
  return text.split('.')[1]?.length ?? 0;
}

/** Integer division rounded half to even (banker's rounding); num ≥ 0, den > 0. */
export function divHalfEven(num: bigint, den: bigint): bigint {
  const q = num / den;
  const twice = (num % den) * 2n;
  if (twice > den || (twice === den && q % 2n === 1n)) return q + 1n;
  return q;
}

/** `value × 10^-scale` as text: fixed decimals for money, trimmed for quantities. */
export function formatScaled(value: bigint, scale: number, fixed: boolean): string {
  const int = value / pow10(scale);
  const frac = (value % pow10(scale)).toString().padStart(scale, '0');
  const shown = fixed ? frac : frac.replace(/0+$/, '');
  return shown ? `${int}.${shown}` : `${int}`;
}

/**
 * quantity × price / per in 10^-{@link AMOUNT_SCALE}, computed on integers and rounded
 * once, half to even. `quantity` is in 10^-{@link QTY_SCALE}; `price` a plain decimal
 * string of any precision.
 */
export function amountOf(quantity: bigint, price: string, per: number): bigint {
  const priceScale = decimals(price);
  return divHalfEven(quantity * scaled(price, priceScale) * pow10(AMOUNT_SCALE), pow10(QTY_SCALE + priceScale) * BigInt(per));
}

/** A quantity for output: trimmed decimals (`1.5`, `3`). */
export const formatQuantity = (q: bigint): string => formatScaled(q, QTY_SCALE, false);

/** An amount for output: always {@link AMOUNT_SCALE} decimals (`0.0800`). */
export const formatAmount = (a: bigint): string => formatScaled(a, AMOUNT_SCALE, true);

/**
 * The price list billing reports are priced from (YAML; the default is
 * `config/prices.yaml`, whose comments explain every field). Validated once when
 * loaded: unknown keys are refused and every problem is reported together, each named
 * by its path in the file.
 *
 * Prices and free allowances are kept as exact decimal strings ("0.08"), never as
 * floats, so a price written as 0.1 bills exactly 0.1.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { LogmeterError } from '../../lib/errors.js';

/** `config/prices.yaml` in this checkout: used when `processors.priceList` is unset. */
export const DEFAULT_PRICE_LIST = fileURLToPath(new URL('../../config/prices.yaml', import.meta.url));

/** The price of one meter. */
export interface MeterPrice {
  /** The meter's unit, as the usage table records it (`second`, `byte`, `request`). */
  unit: string;
  /** How many units `price` is for: 3600 prices seconds by the hour, 1073741824 bytes by the GiB. */
  per: number;
  /** Price of `per` units, a plain decimal string in the list's currency. */
  price: string;
  /** Price of `per` units by the usage row's `size` dimension; `null` = one price for all. */
  sizes: Record<string, string> | null;
  /** Units free per tenant and calendar month (UTC), a plain decimal string. Default "0". */
  free_per_month: string;
}

export interface PriceList {
  /** ISO 4217 code of every price and amount. */
  currency: string;
  /** Meter name → its price. */
  meters: Record<string, MeterPrice>;
}

/** A price list that failed validation; `problems` has one line per problem. */
export class PriceListError extends LogmeterError {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super('price_list_invalid', `invalid price list ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/**
 * A JS number as the plain decimal it was written as. `String()` gives the shortest
 * text that reads back as the same double, which is what the YAML said; only its
 * exponent form (1e-7) needs spelling out.
 */
export function numberToDecimal(n: number): string {
  const s = String(n);
  const m = /^(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const digits = `${m[1]}${m[2] ?? ''}`;
  const point = m[1]!.length + Number(m[3]);
  if (point <= 0) return `0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${digits}${'0'.repeat(point - digits.length)}`;
  return `${digits.slice(0, point)}.${digits.slice(point)}`;
}

const PLAIN_DECIMAL = /^\d+(\.\d+)?$/;

/** Canonical form: no leading zeros in the integer part, no trailing fractional zeros. */
function canonical(s: string): string {
  const [int = '0', frac = ''] = s.split('.');
  const i = int.replace(/^0+(?=\d)/, '');
  const f = frac.replace(/0+$/, '');
  return f ? `${i}.${f}` : i;
}

const decimal = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number' && (!Number.isFinite(v) || v < 0)) {
    ctx.addIssue({ code: 'custom', message: `expected a decimal number ≥ 0, got ${v}` });
    return z.NEVER;
  }
  const s = typeof v === 'number' ? numberToDecimal(v) : v.trim();
  if (!PLAIN_DECIMAL.test(s)) {
    ctx.addIssue({ code: 'custom', message: `expected a decimal number ≥ 0 (like 0.08), got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return canonical(s);
});

const meterPriceSchema = z
  .object({
    unit: z.string().min(1, 'the meter unit is required (second, byte, request, …)'),
    per: z
      .number({ message: 'expected a whole number ≥ 1' })
      .int('expected a whole number ≥ 1')
      .min(1, 'expected a whole number ≥ 1')
      .max(Number.MAX_SAFE_INTEGER)
      .default(1),
    price: decimal,
    sizes: z.record(z.string().min(1, 'a size name cannot be empty'), decimal).nullable().default(null),
    free_per_month: decimal.default('0'),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.sizes && m.free_per_month !== '0') {
      ctx.addIssue({ code: 'custom', path: ['free_per_month'], message: 'a meter priced by size cannot have a free allowance (which size would it come from?)' });
    }
  });

const priceListSchema = z
  .object({
    currency: z.string().regex(/^[A-Z]{3}$/, 'expected an ISO 4217 code such as EUR'),
    meters: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/, 'a meter name is lower-case letters, digits and _'), meterPriceSchema),
  })
  .strict();

/** Validates an already parsed price list; `source` names it in errors. */
export function parsePriceList(raw: unknown, source: string): PriceList {
  const result = priceListSchema.safeParse(raw);
  if (result.success) {
    if (Object.keys(result.data.meters).length === 0) throw new PriceListError(source, ['meters: at least one meter must be priced']);
    return result.data;
  }
  const problems: string[] = [];
  for (const issue of result.error.issues) {
    const where = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      // One line per key, so a file with three typos shows all three.
      for (const key of issue.keys) problems.push(`${where ? `${where}.` : ''}${key}: unknown key`);
    } else if (issue.code === 'invalid_key') {
      // A bad meter or size name: zod nests the reason.
      problems.push(`${where}: ${issue.issues.map((i) => i.message).join('; ')}`);
    } else {
      problems.push(`${where || '(top level)'}: ${issue.message}`);
    }
  }
  throw new PriceListError(source, problems);
}

/** Reads and validates a price list file (default {@link DEFAULT_PRICE_LIST}). */
export function loadPriceList(file: string = DEFAULT_PRICE_LIST): PriceList {
  const source = path.resolve(file);
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(source, 'utf8'));
  } catch (err) {
    throw new PriceListError(source, [(err as Error).message.split('\n')[0] ?? 'unreadable']);
  }
  return parsePriceList(raw, source);
}

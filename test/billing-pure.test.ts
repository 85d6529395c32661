/**
 * Billing without services: periods, the price list, exact money, pricing, line item
 * keys, job definitions and report file names. test/billing.test.ts has the same
 * report end to end (ClickHouse, bullmq, the CLI).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import { LogmeterError } from '../lib/errors.js';
import { METERS } from '../processors/usage/meters.js';
import { parsePeriod, parseRange, parseTime, periodBounds, periodOf, previousPeriod } from '../processors/billing/calendar.js';
import { reportPaths, tenantDirName } from '../processors/billing/files.js';
import { QTY_SCALE, amountOf, divHalfEven, formatAmount, formatQuantity, scaled } from '../processors/billing/money.js';
import { DEFAULT_PRICE_LIST, PriceListError, loadPriceList, numberToDecimal, parsePriceList } from '../processors/billing/prices.js';
import { priceUsage, sizedMeters, type Report, type UsageTotal } from '../processors/billing/report.js';
import { REPORT_ATTEMPTS, jobError, reportJobs, staleTickSchedulers, tickScheduler } from '../processors/billing/scheduler.js';
import { lineItemKey, lineItemRows } from '../processors/billing/sql.js';

const D = (iso: string) => new Date(iso);
// ---- periods ------------------------------------------------------------------------

test('periodBounds: UTC hour, day and month containing a time', () => {
  const at = '2026-12-31T23:59:59.999Z';
  const iso = (p: { start: Date; end: Date; label: string; kind: string }) => [p.kind, p.label, p.start.toISOString(), p.end.toISOString()];
  assert.deepEqual(iso(periodBounds('hourly', at)), ['hourly', '2026-12-31T23', '2026-12-31T23:00:00.000Z', '2027-01-01T00:00:00.000Z']);
  assert.deepEqual(iso(periodBounds('daily', at)), ['daily', '2026-12-31', '2026-12-31T00:00:00.000Z', '2027-01-01T00:00:00.000Z']);
  assert.deepEqual(iso(periodBounds('monthly', D(at))), ['monthly', '2026-12', '2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']);
  // A local-offset time lands in its UTC period.
  assert.equal(periodBounds('daily', '2026-11-27T01:30:00+02:00').label, '2026-11-26');
  assert.throws(() => periodBounds('daily', 'soon'), /not a time: "soon"/);
});

test('previousPeriod: what a tick reports on, across day, month and year ends', () => {
  assert.equal(previousPeriod('hourly', D('2026-11-26T00:05:00Z')).label, '2026-11-25T23');
  assert.equal(previousPeriod('daily', D('2026-03-01T00:15:00Z')).label, '2026-02-28');
  assert.equal(previousPeriod('daily', D('2028-03-01T00:15:00Z')).label, '2028-02-29');
  assert.equal(previousPeriod('monthly', D('2027-01-01T00:30:00Z')).label, '2026-12');
  const feb = previousPeriod('monthly', D('2026-03-01T00:30:00Z'));
  assert.equal(feb.end.getTime() - feb.start.getTime(), 28 * 86_400_000);
});

test('parsePeriod: month, day and hour strings; month lengths; invalid strings refused clearly', () => {
  const show = (s: string) => {
    const p = parsePeriod(s);
    return `${p.kind} ${p.label} ${p.start.toISOString()} ${p.end.toISOString()}`;
  };
  assert.equal(show('2026-11-26'), 'daily 2026-11-26 2026-11-26T00:00:00.000Z 2026-11-27T00:00:00.000Z');
  assert.equal(show('2026-11-26T10'), 'hourly 2026-11-26T10 2026-11-26T10:00:00.000Z 2026-11-26T11:00:00.000Z');
  assert.equal(show('2026-11'), 'monthly 2026-11 2026-11-01T00:00:00.000Z 2026-12-01T00:00:00.000Z');
  assert.equal(show('2026-12'), 'monthly 2026-12 2026-12-01T00:00:00.000Z 2027-01-01T00:00:00.000Z');
  assert.equal(show('2026-02'), 'monthly 2026-02 2026-02-01T00:00:00.000Z 2026-03-01T00:00:00.000Z');
  assert.equal(show('2028-02-29'), 'daily 2028-02-29 2028-02-29T00:00:00.000Z 2028-03-01T00:00:00.000Z');
  assert.equal(show('2026-11-26T23'), 'hourly 2026-11-26T23 2026-11-26T23:00:00.000Z 2026-11-27T00:00:00.000Z');
  const refused: Array<[string, RegExp]> = [
    ['2026-02-29', /--period "2026-02-29": 2026-02 has 28 days/],
    ['2100-02-29', /2100-02 has 28 days/],
    ['2026-04-31', /2026-04 has 30 days/],
    ['2026-11-00', /2026-11 has 30 days/],
    ['2026-13', /month 13 does not exist/],
    ['2026-00', /month 00 does not exist/],
    ['2026-11-26T24', /hour 24 does not exist/],
    ['1969-12', /year 1969 is outside/],
    ['yesterday', /expected YYYY-MM \(a month\), YYYY-MM-DD \(a day\) or YYYY-MM-DDTHH/],
    ['2026-1-5', /expected YYYY-MM/],
    ['2026-11-26T10:00', /expected YYYY-MM/],
    ['', /expected YYYY-MM/],
  ];
  for (const [s, re] of refused) assert.throws(() => parsePeriod(s), (err: Error & { code?: string }) => err.code === 'invalid_period' && re.test(err.message), s);
});

test('--from/--to: exact hours, days and months become that period; other ranges are custom; whole hours only', () => {
  assert.equal(parseRange('2026-11-01', '2026-12-01').label, '2026-11');
  assert.equal(parseRange('2026-11-26', '2026-11-27T00:00:00Z').kind, 'daily');
  const shifted = parseRange('2026-11-26T10:00:00+02:00', '2026-11-26T09:00Z');
  assert.deepEqual([shifted.kind, shifted.label], ['hourly', '2026-11-26T08']);
  const custom = parseRange('2026-11-25T00', '2026-11-27');
  assert.deepEqual([custom.kind, custom.label, custom.start.toISOString(), custom.end.toISOString()], ['custom', '2026-11-25T00_2026-11-27T00', '2026-11-25T00:00:00.000Z', '2026-11-27T00:00:00.000Z']);
  assert.equal(parseTime('2026-11-26T10:00:00.000Z').getTime(), Date.UTC(2026, 10, 26, 10));
  assert.throws(() => parseRange('2026-11-26T10:30', '2026-11-27'), /--from|not on a whole hour/);
  assert.throws(() => parseRange('2026-11-27', '2026-11-26'), /is not after its start/);
  assert.throws(() => parseRange('2026-11-26', '2026-11-26'), /is not after its start/);
  assert.throws(() => parseRange('2026-02-30', '2026-03-02'), /--from "2026-02-30": 2026-02 has 28 days/);
  assert.throws(() => parseRange('2026-11-26', 'tomorrow'), /--to "tomorrow": expected an ISO time/);
  assert.throws(() => periodOf(D('2026-11-26T10:00:00.001Z'), D('2026-11-27T00:00:00Z')), /not on a whole hour/);
});

// ---- price list ----------------------------------------------------------------------

test('the default price list loads and prices every meter the usage processor writes, in its unit', () => {
  const list = loadPriceList();
  assert.equal(loadPriceList(DEFAULT_PRICE_LIST).currency, list.currency);
  assert.match(list.currency, /^[A-Z]{3}$/);
  for (const [meter, unit] of Object.entries(METERS)) {
    assert.ok(list.meters[meter], `${meter} priced`);
    assert.equal(list.meters[meter].unit, unit, `${meter} unit`);
  }
  assert.equal(list.meters.internal_bytes?.price, '0', 'internal traffic is free');
  assert.ok(list.meters.container_seconds?.sizes, 'container_seconds priced by size');
});

test('price list validation reports every problem with its path, unknown keys one by one, and names the file', () => {
  const bad = {
    currency: 'euro',
    curency: 'EUR',
    meters: {
      requests: { unit: 'request', per: 0.5, price: 'cheap', pricee: 1, free: 10 },
      egress_external_bytes: { unit: 'byte', price: -1 },
      container_seconds: { unit: 'second', price: 0.02, sizes: { small: 0.01, big: 'x' }, free_per_month: 60 },
      'Bad-Name': { unit: 'x', price: 1 },
      log_bytes: { price: 1 },
    },
  };
  let problems: string[] = [];
  assert.throws(
    () => parsePriceList(bad, '/etc/prices.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof PriceListError);
      assert.equal(err.code, 'price_list_invalid');
      assert.match(err.message, /^invalid price list \/etc\/prices\.yaml:/);
      problems = err.problems;
      return true;
    },
  );
  const expected: RegExp[] = [
    /^currency: expected an ISO 4217 code/,
    /^curency: unknown key$/,
    /^meters\.requests\.per: expected a whole number ≥ 1$/,
    /^meters\.requests\.price: expected a decimal number ≥ 0 \(like 0\.08\), got "cheap"$/,
    /^meters\.requests\.pricee: unknown key$/,
    /^meters\.requests\.free: unknown key$/,
    /^meters\.egress_external_bytes\.price: expected a decimal number ≥ 0, got -1$/,
    /^meters\.container_seconds\.sizes\.big: expected a decimal number/,
    /^meters\.Bad-Name: a meter name is lower-case letters/,
    /^meters\.log_bytes\.unit: /,
  ];
  for (const re of expected) assert.ok(problems.some((p) => re.test(p)), `${re} in:\n${problems.join('\n')}`);
  // The sizes/free conflict is a whole-object check: it shows once the fields themselves are valid.
  assert.throws(
    () => parsePriceList({ currency: 'EUR', meters: { container_seconds: { unit: 'second', price: 1, sizes: { small: 1 }, free_per_month: 60 } } }, 'p.yaml'),
    /meters\.container_seconds\.free_per_month: a meter priced by size cannot have a free allowance/,
  );

  const dir = mkdtempSync(path.join(tmpdir(), 'logmeter-prices-'));
  try {
    const broken = path.join(dir, 'broken-prices.yaml');
    writeFileSync(broken, 'currency: EUR\nmeters: [unclosed\n');
    assert.throws(() => loadPriceList(broken), (err: Error) => err.message.startsWith(`invalid price list ${broken}:`));
    assert.throws(() => loadPriceList(path.join(dir, 'missing.yaml')), /invalid price list .*missing\.yaml:\n {2}- ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('prices are exact decimals: YAML numbers keep the digits written, exponent forms spelled out', () => {
  assert.equal(numberToDecimal(0.1), '0.1');
  assert.equal(numberToDecimal(1e-7), '0.0000001');
  assert.equal(numberToDecimal(1.5e-9), '0.0000000015');
  assert.equal(numberToDecimal(1e21), '1000000000000000000000');
  const p = parsePriceList({ currency: 'USD', meters: { requests: { unit: 'request', price: '00.2500', free_per_month: 0.0000001 } } }, 'p');
  assert.deepEqual(p.meters.requests, { unit: 'request', per: 1, price: '0.25', sizes: null, free_per_month: '0.0000001' });
});

// ---- money and pricing, without ClickHouse ------------------------------------------------

test('money: plain decimals only, exact scaling, half-to-even rounding, fixed and trimmed output', () => {
  assert.equal(scaled('1.5', QTY_SCALE), 1_500_000_000n);
  assert.equal(scaled('0.000000001', QTY_SCALE), 1n);
  assert.throws(() => scaled('0.0000000001', QTY_SCALE), (e: LogmeterError) => e.code === 'billing_bad_decimal');
  for (const bad of ['-1', '1e3', '.5', '1.', ' 1']) assert.throws(() => scaled(bad, 4), /not a plain decimal/);
  // 0.5 → 0, 1.5 → 2, 2.5 → 2: to the even neighbour; anything past half goes up.
  assert.deepEqual([1n, 3n, 5n, 7n].map((n) => divHalfEven(n, 2n)), [0n, 2n, 2n, 4n]);
  assert.equal(divHalfEven(51n, 100n), 1n);
  assert.equal(divHalfEven(49n, 100n), 0n);
  assert.equal(formatAmount(1200n), '0.1200');
  assert.equal(formatAmount(0n), '0.0000');
  assert.equal(formatQuantity(1_500_000_000n), '1.5');
  assert.equal(formatQuantity(3_000_000_000n), '3');
  // 1 request × 0.2 / 1e6 = 0.0000002 → 0.0000; 7 × 0.2 / 1000 = 0.0014 exactly.
  assert.equal(amountOf(scaled('1', QTY_SCALE), '0.2', 1_000_000), 0n);
  assert.equal(amountOf(scaled('7', QTY_SCALE), '0.2', 1000), 14n);
  // 1200.5 s × 0.02 / 3600 = 0.00666944… → 0.0067, with a price of any precision.
  assert.equal(formatAmount(amountOf(scaled('1200.5', QTY_SCALE), '0.02', 3600)), '0.0067');
  assert.equal(formatAmount(amountOf(scaled('1', QTY_SCALE), '0.00005', 1)), '0.0000', '0.00005 is half: rounds to the even 0.0000');
  assert.equal(formatAmount(amountOf(scaled('3', QTY_SCALE), '0.00005', 1)), '0.0002', '0.00015 rounds to the even 0.0002');
});

test('pricing: the month allowance left before the period, sizes of the list plus those used, total of rounded lines', () => {
  const list = parsePriceList(
    { currency: 'EUR', meters: { requests: { unit: 'request', per: 1, price: 0.001, free_per_month: 100 }, cs: { unit: 'second', per: 3600, price: 1, sizes: { small: 0.5 } } } },
    'pure',
  );
  const period = periodOf(D('2026-11-26T00:00:00Z'), D('2026-12-02T00:00:00Z'));
  const u = (meter: string, unit: string, size: string, month: number, inPeriod: boolean, quantity: string): UsageTotal => ({ meter, unit, size, month, inPeriod, quantity });
  const r = priceUsage(
    't',
    period,
    [
      u('requests', 'request', '', 202611, false, '60'), // November had 40 left at the period start…
      u('requests', 'request', '', 202611, true, '50'), // …so 40 of these are free,
      u('requests', 'request', '', 202612, true, '150'), // and December has its own 100.
      u('cs', 'second', 'big', 202612, true, '3600'),
      u('cs', 'second', 'old', 202611, false, '3600'), // before the period only: no line
    ],
    list,
  );
  assert.equal(r.report_id, 't/2026-11-26T00_2026-12-02T00');
  assert.deepEqual(
    r.line_items.map((l) => [l.meter, l.size, l.quantity, l.free_quantity, l.billable, l.price, l.amount]),
    [
      ['cs', 'big', '3600', '0', '3600', '1', '1.0000'],
      ['cs', 'small', '0', '0', '0', '0.5', '0.0000'],
      ['requests', null, '200', '140', '60', '0.001', '0.0600'],
    ],
  );
  assert.equal(r.totals.amount, '1.0600');
  assert.deepEqual(sizedMeters(list), ['cs']);
  assert.throws(() => priceUsage('t', period, [u('gpu', 'second', '', 202611, true, '1')], list), (e: LogmeterError) => e.code === 'billing_unpriced_usage' && !e.retriable);
  assert.doesNotThrow(() => priceUsage('t', period, [u('gpu', 'second', '', 202611, false, '1')], list), 'unpriced usage before the period is not this report');
  assert.throws(() => priceUsage('t', period, [u('requests', 'byte', '', 202611, true, '1')], list), (e: LogmeterError) => e.code === 'billing_unit_mismatch');
});

test('line item rows: one key per meter and size, version = period end', () => {
  const prices = parsePriceList({ currency: 'EUR', meters: { requests: { unit: 'request', price: 1 }, container_seconds: { unit: 'second', price: 1, sizes: { small: 1, large: 2 } } } }, 'rows');
  const r = priceUsage('t', periodOf(D('2026-11-26T10:00:00Z'), D('2026-11-26T11:00:00Z')), [], prices);
  const rows = lineItemRows(r);
  assert.deepEqual(
    rows.map((row) => row.meter),
    r.line_items.map((li) => lineItemKey(li)),
  );
  assert.ok(rows.some((row) => row.meter === 'container_seconds{size=small}'));
  assert.ok(rows.every((row) => row.version === Date.UTC(2026, 10, 26, 11) && row.period_start === Date.UTC(2026, 10, 26, 10)));
});

test('jobs: report job ids and options, tick schedulers, stale ones, which errors fail at once', () => {
  const period = periodBounds('daily', '2026-11-26T05:00:00Z');
  const jobs = reportJobs('daily', period, ['acme', 'a|b']);
  assert.deepEqual(
    jobs.map((j) => [j.opts.jobId, j.data]),
    [
      ['acme|daily|2026-11-26', { tenant: 'acme', kind: 'daily', start: '2026-11-26T00:00:00.000Z', end: '2026-11-27T00:00:00.000Z' }],
      ['a%7Cb|daily|2026-11-26', { tenant: 'a|b', kind: 'daily', start: '2026-11-26T00:00:00.000Z', end: '2026-11-27T00:00:00.000Z' }],
    ],
  );
  assert.equal(jobs[0]!.opts.attempts, REPORT_ATTEMPTS);
  assert.deepEqual(tickScheduler('monthly').repeat, { pattern: '30 0 1 * *', tz: 'UTC' });
  assert.deepEqual(staleTickSchedulers(['billing-tick-daily', 'billing-tick-hourly', 'someone-else'], new Set(['daily'] as const)), ['billing-tick-hourly']);
  assert.ok(jobError(new LogmeterError('unknown_tenant', 'x')) instanceof UnrecoverableError);
  const passing = new LogmeterError('clickhouse_unavailable', 'x', { retriable: true });
  assert.equal(jobError(passing), passing);
  const plain = new Error('disk');
  assert.equal(jobError(plain), plain);
});

test('report files: a tenant name never escapes its directory', () => {
  assert.equal(tenantDirName('acme'), 'acme');
  assert.equal(tenantDirName('a.b_c-d'), 'a.b_c-d');
  assert.equal(tenantDirName('../etc'), '..%2Fetc');
  assert.equal(tenantDirName('..'), '%2E%2E');
  assert.equal(tenantDirName('a b:c'), 'a%20b%3Ac');
  const r = { tenant: '../x', period: { label: '2026-11' } } as Report;
  assert.equal(reportPaths('/r', r).csv, '/r/..%2Fx/2026-11.csv');
});

/**
 * Billing end to end on one known usage set in ClickHouse: reports, the rows and files
 * they are stored as, the bullmq jobs and the CLI (the pure parts are in
 * billing-pure.test.ts). Over 500 lines because every test here reads the same fixture
 * (the usage rows inserted in `before`); split, each file would repeat it.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { stringify as toYaml } from 'yaml';
import { openClickHouse, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { METERS } from '../processors/usage/meters.js';
import { parsePriceList, type PriceList } from '../processors/billing/prices.js';
import { parsePeriod, type PeriodKind } from '../processors/billing/calendar.js';
import type { BillingConfig } from '../processors/billing/config.js';
import { reportPaths } from '../processors/billing/files.js';
import type { Report } from '../processors/billing/report.js';
import { renderCsv, renderJson, renderTable } from '../processors/billing/render.js';
import { computeReport, runReportNow } from '../processors/billing/run.js';
import { Redis } from 'ioredis';
import { REPORT_ATTEMPTS, reportJobId } from '../processors/billing/scheduler.js';
import { startBilling, type Billing } from '../processors/billing/processor.js';
import { ROOT, eventually, namespace } from './helpers/env.js';

const GiB = 1_073_741_824;
const ns = namespace();
let ch: ClickHouse = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
const reportsDir = path.join(ns.dataDir, 'reports');

/** Test prices: fixed here so the expected amounts do not move with config/prices.yaml. */
const PRICES_YAML = {
  currency: 'EUR',
  meters: {
    container_seconds: { unit: 'second', per: 3600, price: 0.02, sizes: { small: 0.01, large: 0.04 } },
    egress_external_bytes: { unit: 'byte', per: GiB, price: 0.08, free_per_month: GiB },
    ingress_external_bytes: { unit: 'byte', per: GiB, price: 0.01 },
    internal_bytes: { unit: 'byte', per: GiB, price: 0 },
    requests: { unit: 'request', per: 1_000_000, price: 0.2, free_per_month: 1000 },
    log_bytes: { unit: 'byte', per: GiB, price: 0.5 },
    blkio_bytes: { unit: 'byte', per: GiB, price: 0 },
  },
};
const prices: PriceList = parsePriceList(PRICES_YAML, 'test prices');
const pricesFile = path.join(ns.dataDir, 'prices.yaml');
writeFileSync(pricesFile, toYaml(PRICES_YAML));

interface Row {
  tenant: string;
  app: string;
  hour: string;
  meter: string;
  quantity: number;
  size?: string;
  version?: number;
}

/** Usage rows as the usage processor writes them: identity (tenant, app, hour, meter, dimensions), newest version wins. */
async function insertUsage(rows: Row[]): Promise<void> {
  await ch.insert(
    'usage',
    rows.map((r) => {
      const dims = r.size === undefined ? {} : { size: r.size };
      const ts = Date.parse(`${r.hour}:00:00Z`);
      return {
        event_id: `${r.tenant}|${r.app}|${ts}|${r.meter}|${r.size ?? ''}`,
        tenant: r.tenant,
        app: r.app,
        period: 'hour',
        ts,
        meter: r.meter,
        unit: (METERS as Record<string, string>)[r.meter] ?? 'thing',
        quantity: r.quantity,
        dimensions: dims,
        version: r.version ?? 1,
      };
    }),
  );
}

const D = (iso: string) => new Date(iso);
const item = (report: Report, meter: string, size: string | null = null) => {
  const li = report.line_items.find((l) => l.meter === meter && l.size === size);
  assert.ok(li, `line item ${meter} ${size ?? ''} in ${report.report_id}`);
  return { quantity: li.quantity, free: li.free_quantity, billable: li.billable, amount: li.amount };
};

before(async () => {
  await migrate(ch, ns.logger);
  await insertUsage([
    // acme, 2026-10: another month; its free allowance is its own.
    { tenant: 'acme', app: 'web', hour: '2026-10-31T23', meter: 'egress_external_bytes', quantity: 2 * GiB },
    // acme, 2026-11-25: uses part of November's free allowances before the 26th.
    { tenant: 'acme', app: 'web', hour: '2026-11-25T10', meter: 'egress_external_bytes', quantity: 0.75 * GiB },
    { tenant: 'acme', app: 'web', hour: '2026-11-25T10', meter: 'requests', quantity: 50 },
    // acme, 2026-11-26 T10.
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'egress_external_bytes', quantity: 100 * GiB, version: 1 },
    { tenant: 'acme', app: 'api', hour: '2026-11-26T10', meter: 'egress_external_bytes', quantity: 0.25 * GiB },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'ingress_external_bytes', quantity: 2 * GiB },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'internal_bytes', quantity: 5 * GiB },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'log_bytes', quantity: 107_374_182 },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'requests', quantity: 600 },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'container_seconds', size: 'small', quantity: 3600 },
    { tenant: 'acme', app: 'api', hour: '2026-11-26T10', meter: 'container_seconds', size: 'large', quantity: 1800 },
    // acme, 2026-11-26 T11.
    { tenant: 'acme', app: 'web', hour: '2026-11-26T11', meter: 'egress_external_bytes', quantity: GiB },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T11', meter: 'requests', quantity: 7000, version: 1 },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T11', meter: 'container_seconds', size: 'default', quantity: 1200.5 },
    // acme, December: outside every November report.
    { tenant: 'acme', app: 'web', hour: '2026-12-01T00', meter: 'requests', quantity: 5 },
    // Others.
    { tenant: 'globex', app: 'shop', hour: '2026-11-26T10', meter: 'requests', quantity: 10 },
    { tenant: 'old', app: 'legacy', hour: '2026-10-15T00', meter: 'requests', quantity: 10 },
    { tenant: 'weird', app: 'gpu', hour: '2026-11-20T00', meter: 'gpu_seconds', quantity: 10 },
    { tenant: 'rounding', app: 'r', hour: '2026-11-26T00', meter: 'requests', quantity: 1 },
    { tenant: 'rounding', app: 'r', hour: '2026-11-26T01', meter: 'requests', quantity: 3 },
    { tenant: 'rounding', app: 'r', hour: '2026-11-26T02', meter: 'requests', quantity: 5 },
    { tenant: 'rounding', app: 'r', hour: '2026-11-26T03', meter: 'requests', quantity: 7 },
  ]);
  // Recomputed rows, in a separate insert (another part): only FINAL reads them instead of adding them.
  await insertUsage([
    { tenant: 'acme', app: 'web', hour: '2026-11-26T10', meter: 'egress_external_bytes', quantity: 0.5 * GiB, version: 2 },
    { tenant: 'acme', app: 'web', hour: '2026-11-26T11', meter: 'requests', quantity: 700, version: 3 },
  ]);
});

// ---- reports from ClickHouse -------------------------------------------------------------

test('daily report: exact quantities from usage FINAL, monthly free allowance left at the period start, amounts', async () => {
  const r = await computeReport(ch, 'acme', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), prices);
  assert.equal(r.report_id, 'acme/2026-11-26');
  assert.deepEqual(r.period, { kind: 'daily', label: '2026-11-26', start: '2026-11-26T00:00:00.000Z', end: '2026-11-27T00:00:00.000Z' });
  assert.equal(r.currency, 'EUR');
  assert.deepEqual(
    r.line_items.map((l) => `${l.meter}${l.size === null ? '' : `/${l.size}`}`),
    ['blkio_bytes', 'container_seconds/default', 'container_seconds/large', 'container_seconds/small', 'egress_external_bytes', 'ingress_external_bytes', 'internal_bytes', 'log_bytes', 'requests'],
    'every priced meter, sorted by meter then size; an unlisted size (default) gets a line at the default price',
  );
  assert.deepEqual(item(r, 'blkio_bytes'), { quantity: '0', free: '0', billable: '0', amount: '0.0000' });
  // 1200.5 s × 0.02 / 3600 = 0.0066694…
  assert.deepEqual(item(r, 'container_seconds', 'default'), { quantity: '1200.5', free: '0', billable: '1200.5', amount: '0.0067' });
  assert.deepEqual(item(r, 'container_seconds', 'large'), { quantity: '1800', free: '0', billable: '1800', amount: '0.0200' });
  assert.deepEqual(item(r, 'container_seconds', 'small'), { quantity: '3600', free: '0', billable: '3600', amount: '0.0100' });
  // 0.5 (the version-2 row, not the 100 GiB version 1) + 0.25 + 1 GiB; 0.75 GiB of the free GiB went on the 25th.
  assert.deepEqual(item(r, 'egress_external_bytes'), { quantity: String(1.75 * GiB), free: String(0.25 * GiB), billable: String(1.5 * GiB), amount: '0.1200' });
  assert.deepEqual(item(r, 'ingress_external_bytes'), { quantity: String(2 * GiB), free: '0', billable: String(2 * GiB), amount: '0.0200' });
  assert.deepEqual(item(r, 'internal_bytes'), { quantity: String(5 * GiB), free: '0', billable: String(5 * GiB), amount: '0.0000' });
  assert.deepEqual(item(r, 'log_bytes'), { quantity: '107374182', free: '0', billable: '107374182', amount: '0.0500' });
  // 600 + 700 (version 3, not 7000); 50 of the 1000 free went on the 25th.
  assert.deepEqual(item(r, 'requests'), { quantity: '1300', free: '950', billable: '350', amount: '0.0001' });
  assert.deepEqual(r.totals, { amount: '0.2268' });
  assert.equal(r.line_items.find((l) => l.meter === 'egress_external_bytes')?.per, GiB);
  assert.equal(r.line_items.find((l) => l.meter === 'egress_external_bytes')?.price, '0.08');
});

test('hourly reports use what the month has left at each hour, and add up to the daily report', async () => {
  const t10 = await computeReport(ch, 'acme', D('2026-11-26T10:00:00Z'), D('2026-11-26T11:00:00Z'), prices);
  assert.equal(t10.report_id, 'acme/2026-11-26T10');
  assert.equal(t10.period.kind, 'hourly');
  assert.deepEqual(item(t10, 'egress_external_bytes'), { quantity: String(0.75 * GiB), free: String(0.25 * GiB), billable: String(0.5 * GiB), amount: '0.0400' });
  assert.deepEqual(item(t10, 'requests'), { quantity: '600', free: '600', billable: '0', amount: '0.0000' });
  assert.ok(!t10.line_items.some((l) => l.size === 'default'), 'a size outside the price list shows only where it was used');
  assert.deepEqual(t10.totals, { amount: '0.1400' });

  const t11 = await computeReport(ch, 'acme', D('2026-11-26T11:00:00Z'), D('2026-11-26T12:00:00Z'), prices);
  assert.deepEqual(item(t11, 'egress_external_bytes'), { quantity: String(GiB), free: '0', billable: String(GiB), amount: '0.0800' });
  assert.deepEqual(item(t11, 'requests'), { quantity: '700', free: '350', billable: '350', amount: '0.0001' });
  assert.deepEqual(t11.totals, { amount: '0.0868' });

  const idle = await computeReport(ch, 'acme', D('2026-11-26T12:00:00Z'), D('2026-11-26T13:00:00Z'), prices);
  assert.ok(idle.line_items.every((l) => l.quantity === '0' && l.amount === '0.0000'));
  assert.equal(idle.totals.amount, '0.0000');
});

test('monthly reports: the free allowance once per calendar month; other months excluded', async () => {
  const nov = await computeReport(ch, 'acme', D('2026-11-01T00:00:00Z'), D('2026-12-01T00:00:00Z'), prices);
  assert.equal(nov.report_id, 'acme/2026-11');
  assert.equal(nov.period.kind, 'monthly');
  assert.deepEqual(item(nov, 'egress_external_bytes'), { quantity: String(2.5 * GiB), free: String(GiB), billable: String(1.5 * GiB), amount: '0.1200' });
  assert.deepEqual(item(nov, 'requests'), { quantity: '1350', free: '1000', billable: '350', amount: '0.0001' });
  assert.deepEqual(nov.totals, { amount: '0.2268' });

  const oct = await computeReport(ch, 'acme', D('2026-10-01T00:00:00Z'), D('2026-11-01T00:00:00Z'), prices);
  assert.deepEqual(item(oct, 'egress_external_bytes'), { quantity: String(2 * GiB), free: String(GiB), billable: String(GiB), amount: '0.0800' });
  assert.deepEqual(oct.totals, { amount: '0.0800' });
});

test('custom ranges: each calendar month inside gets its own allowance', async () => {
  const span = await computeReport(ch, 'acme', D('2026-10-31T23:00:00Z'), D('2026-11-26T11:00:00Z'), prices);
  assert.equal(span.report_id, 'acme/2026-10-31T23_2026-11-26T11');
  assert.equal(span.period.kind, 'custom');
  // October: 2 GiB, 1 free. November up to 11:00 on the 26th: 0.75 + 0.75 GiB, 1 free.
  assert.deepEqual(item(span, 'egress_external_bytes'), { quantity: String(3.5 * GiB), free: String(2 * GiB), billable: String(1.5 * GiB), amount: '0.1200' });
});

test('amounts round half to even at 4 decimals; the total is the sum of the rounded lines', async () => {
  const tiny = parsePriceList({ currency: 'EUR', meters: { requests: { unit: 'request', price: '0.00005' } } }, 'tiny');
  const hour = async (h: number) => (await computeReport(ch, 'rounding', D(`2026-11-26T0${h}:00:00Z`), D(`2026-11-26T0${h + 1}:00:00Z`), tiny)).totals.amount;
  // 1, 3, 5, 7 requests × 0.00005 = 0.00005, 0.00015, 0.00025, 0.00035: exactly half-way each time.
  assert.deepEqual([await hour(0), await hour(1), await hour(2), await hour(3)], ['0.0000', '0.0002', '0.0002', '0.0004']);
  const day = await computeReport(ch, 'rounding', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), tiny);
  assert.deepEqual(item(day, 'requests'), { quantity: '16', free: '0', billable: '16', amount: '0.0008' });
});

test('a known tenant without usage in the period gets zero quantities; an unknown tenant is refused', async () => {
  const r = await computeReport(ch, 'old', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), prices);
  assert.equal(r.line_items.length, 8, 'the price list sizes, no others');
  assert.ok(r.line_items.every((l) => l.quantity === '0' && l.free_quantity === '0' && l.amount === '0.0000'));
  assert.equal(r.totals.amount, '0.0000');
  await assert.rejects(computeReport(ch, 'nobody', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), prices), (err: Error & { code?: string; retriable?: boolean }) => {
    assert.equal(err.code, 'unknown_tenant');
    assert.equal(err.retriable, false);
    assert.match(err.message, /unknown tenant "nobody": it has no usage at all/);
    return true;
  });
});

test('usage of a meter the price list does not price, or in another unit, is refused rather than billed as free', async () => {
  await assert.rejects(computeReport(ch, 'weird', D('2026-11-20T00:00:00Z'), D('2026-11-21T00:00:00Z'), prices), /tenant "weird" has usage of meters the price list does not price: gpu_seconds/);
  const wrongUnit = parsePriceList({ currency: 'EUR', meters: { requests: { unit: 'call', price: 1 } } }, 'w');
  await assert.rejects(computeReport(ch, 'globex', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), wrongUnit), /requests is recorded in request, priced in call/);
});

test('CSV and JSON are byte-identical across runs, with a fixed layout', async () => {
  const a = await computeReport(ch, 'acme', D('2026-11-26T10:00:00Z'), D('2026-11-26T11:00:00Z'), prices);
  const b = await computeReport(ch, 'acme', D('2026-11-26T10:00:00Z'), D('2026-11-26T11:00:00Z'), prices);
  assert.equal(renderCsv(a), renderCsv(b));
  assert.equal(renderJson(a), renderJson(b));
  const head = 'report_id,tenant,period_kind,period_start,period_end,currency,meter,size,unit,quantity,free_quantity,billable,price,per,amount';
  const p = 'acme/2026-11-26T10,acme,hourly,2026-11-26T10:00:00.000Z,2026-11-26T11:00:00.000Z,EUR';
  assert.equal(
    renderCsv(a),
    [
      head,
      `${p},blkio_bytes,,byte,0,0,0,0,${GiB},0.0000`,
      `${p},container_seconds,large,second,1800,0,1800,0.04,3600,0.0200`,
      `${p},container_seconds,small,second,3600,0,3600,0.01,3600,0.0100`,
      `${p},egress_external_bytes,,byte,${0.75 * GiB},${0.25 * GiB},${0.5 * GiB},0.08,${GiB},0.0400`,
      `${p},ingress_external_bytes,,byte,${2 * GiB},0,${2 * GiB},0.01,${GiB},0.0200`,
      `${p},internal_bytes,,byte,${5 * GiB},0,${5 * GiB},0,${GiB},0.0000`,
      `${p},log_bytes,,byte,107374182,0,107374182,0.5,${GiB},0.0500`,
      `${p},requests,,request,600,600,0,0.2,1000000,0.0000`,
      '',
    ].join('\n'),
  );
  const json = renderJson(a);
  assert.ok(json.endsWith('}\n'));
  assert.deepEqual(Object.keys(JSON.parse(json) as object), ['report_id', 'tenant', 'period', 'currency', 'line_items', 'totals']);
  assert.deepEqual((JSON.parse(json) as Report).line_items[3], {
    meter: 'egress_external_bytes',
    size: null,
    unit: 'byte',
    quantity: String(0.75 * GiB),
    free_quantity: String(0.25 * GiB),
    billable: String(0.5 * GiB),
    price: '0.08',
    per: GiB,
    amount: '0.0400',
  });
  // The key order comes from the renderer, not from the object handed in.
  const shuffled = { totals: a.totals, line_items: a.line_items, currency: a.currency, period: a.period, tenant: a.tenant, report_id: a.report_id };
  assert.equal(renderJson(shuffled), json);
  assert.match(renderTable(a), /^total {2}.* 0\.1400 EUR$/m);
});

test('writeReport: rows in billing_line_items (one per line item, replaced on re-run) and the same files byte for byte', async () => {
  const dir = mkdtempSync(path.join(ns.dataDir, 'write-'));
  const period = { start: D('2026-11-26T00:00:00Z'), end: D('2026-11-27T00:00:00Z') };
  const first = await runReportNow({ ch, prices, tenant: 'acme', period, dir, logger: ns.logger });
  assert.deepEqual(first.files, { csv: path.join(dir, 'acme', '2026-11-26.csv'), json: path.join(dir, 'acme', '2026-11-26.json') });
  const csv1 = readFileSync(first.files.csv);
  const json1 = readFileSync(first.files.json);
  assert.equal(csv1.toString(), renderCsv(first.report));
  assert.equal(json1.toString(), renderJson(first.report));
  const second = await runReportNow({ ch, prices, tenant: 'acme', period, dir, logger: ns.logger });
  assert.ok(readFileSync(second.files.csv).equals(csv1));
  assert.ok(readFileSync(second.files.json).equals(json1));

  const rows = await ch.query(
    `SELECT meter, quantity, free_quantity, billable, unit_price, amount, currency, period_kind,
                   toUnixTimestamp64Milli(period_start) AS start, toUnixTimestamp64Milli(period_end) AS end, version
            FROM ${ch.table('billing_line_items')} FINAL WHERE tenant = {tenant:String} AND report_id = {id:String} ORDER BY meter`,
    { tenant: 'acme', id: 'acme/2026-11-26' },
  );
  assert.deepEqual(
    rows.map((r) => r.meter),
    [
      'blkio_bytes',
      'container_seconds{size=default}',
      'container_seconds{size=large}',
      'container_seconds{size=small}',
      'egress_external_bytes',
      'ingress_external_bytes',
      'internal_bytes',
      'log_bytes',
      'requests',
    ],
  );
  assert.deepEqual(rows.find((r) => r.meter === 'egress_external_bytes'), {
    meter: 'egress_external_bytes',
    quantity: 1.75 * GiB,
    free_quantity: 0.25 * GiB,
    billable: 1.5 * GiB,
    unit_price: 0.08 / GiB,
    amount: 0.12,
    currency: 'EUR',
    period_kind: 'daily',
    start: Date.UTC(2026, 10, 26),
    end: Date.UTC(2026, 10, 27),
    version: Date.UTC(2026, 10, 27),
  });
});

test('re-running a report after usage changed replaces its rows; line items gone from the price list are removed', async () => {
  const dir = mkdtempSync(path.join(ns.dataDir, 'rerun-'));
  const period = { start: D('2026-11-26T10:00:00Z'), end: D('2026-11-26T11:00:00Z') };
  const withTiny = parsePriceList({ currency: 'EUR', meters: { requests: { unit: 'request', price: 1 }, container_seconds: { unit: 'second', price: 1, sizes: { small: 1, tiny: 1 } } } }, 'a');
  const withoutTiny = parsePriceList({ currency: 'EUR', meters: { requests: { unit: 'request', price: 1 }, container_seconds: { unit: 'second', price: 1, sizes: { small: 1 } } } }, 'b');
  const rowsOf = () =>
    ch.query(`SELECT meter, quantity, amount FROM ${ch.table('billing_line_items')} FINAL WHERE tenant = 'globex' AND report_id = {id:String} ORDER BY meter`, { id: 'globex/2026-11-26T10' });
  await runReportNow({ ch, prices: withTiny, tenant: 'globex', period, dir, logger: ns.logger });
  assert.deepEqual(await rowsOf(), [
    { meter: 'container_seconds{size=small}', quantity: 0, amount: 0 },
    { meter: 'container_seconds{size=tiny}', quantity: 0, amount: 0 },
    { meter: 'requests', quantity: 10, amount: 10 },
  ]);
  await insertUsage([{ tenant: 'globex', app: 'shop', hour: '2026-11-26T10', meter: 'requests', quantity: 20, version: 2 }]);
  await runReportNow({ ch, prices: withoutTiny, tenant: 'globex', period, dir, logger: ns.logger });
  assert.deepEqual(await rowsOf(), [
    { meter: 'container_seconds{size=small}', quantity: 0, amount: 0 },
    { meter: 'requests', quantity: 20, amount: 20 },
  ]);
  // Back to the fixture's numbers for the tests below.
  await insertUsage([{ tenant: 'globex', app: 'shop', hour: '2026-11-26T10', meter: 'requests', quantity: 10, version: 3 }]);
});

// ---- bullmq -------------------------------------------------------------------------------

/** Billing's config as the composition root maps it from the test namespace's config. */
const periodsConfig = (periods: PeriodKind[]): BillingConfig => ({
  redisUrl: ns.config.redis.url,
  queue: `${ns.config.kafka.topicPrefix}billing`,
  priceList: pricesFile,
  reportPeriods: periods,
  reportsDir,
});

let now = D('2026-11-27T00:15:00Z');
let billing: Billing | undefined;

async function waitFinished(queue: Queue, ids: string[]): Promise<void> {
  await eventually(`jobs ${ids.join(', ')} completed`, async () => {
    const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
    const failed = ids.filter((_, i) => states[i] === 'failed');
    if (failed.length > 0) {
      const reasons = await Promise.all(failed.map(async (id) => `${id}: ${(await queue.getJob(id))?.failedReason}`));
      throw new Error(`failed: ${reasons.join('; ')}`);
    }
    return states.every((s) => s === 'completed') ? true : undefined;
  });
}

test('bullmq: one tick scheduler per configured period, cron in UTC', async () => {
  billing = await startBilling({ config: periodsConfig(['hourly', 'daily', 'monthly']), ch, logger: ns.logger, prices, clock: () => now, prefix: ns.id });
  assert.equal(billing.queue.name, `${ns.id}.billing`);
  const schedulers = await billing.queue.getJobSchedulers();
  assert.deepEqual(
    schedulers.map((s) => [s.key, s.pattern, s.tz, s.name]).sort(),
    [
      ['billing-tick-daily', '15 0 * * *', 'UTC', 'tick'],
      ['billing-tick-hourly', '5 * * * *', 'UTC', 'tick'],
      ['billing-tick-monthly', '30 0 1 * *', 'UTC', 'tick'],
    ],
  );
});

test('bullmq: a tick enqueues one report job per tenant with usage in the previous period; each writes its files', async () => {
  assert.ok(billing);
  const ids = await billing.tick('daily', now);
  assert.deepEqual(ids, ['acme|daily|2026-11-26', 'globex|daily|2026-11-26', 'rounding|daily|2026-11-26']);
  assert.equal(reportJobId('a/b:c', parsePeriod('2026-11')), 'a%2Fb%3Ac|monthly|2026-11');
  await waitFinished(billing.queue, ids);
  const job = await billing.queue.getJob('acme|daily|2026-11-26');
  assert.equal(job?.opts.attempts, REPORT_ATTEMPTS);
  assert.deepEqual(job?.opts.backoff, { type: 'exponential', delay: 10_000 });
  assert.deepEqual(job?.returnvalue, {
    report_id: 'acme/2026-11-26',
    amount: '0.2268',
    currency: 'EUR',
    files: { csv: path.join(reportsDir, 'acme', '2026-11-26.csv'), json: path.join(reportsDir, 'acme', '2026-11-26.json') },
  });
  for (const tenant of ['acme', 'globex', 'rounding']) {
    const expected = await computeReport(ch, tenant, D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), prices);
    const files = reportPaths(reportsDir, expected);
    assert.equal(readFileSync(files.csv, 'utf8'), renderCsv(expected), `${tenant} csv`);
    assert.equal(readFileSync(files.json, 'utf8'), renderJson(expected), `${tenant} json`);
  }
});

test('bullmq: the same tick again does not run a report twice; after its job is removed it runs again, identically', async () => {
  assert.ok(billing);
  const queue = billing.queue;
  const id = 'acme|daily|2026-11-26';
  const before = await queue.getJob(id);
  const countsBefore = await queue.getJobCounts('completed', 'waiting', 'active', 'delayed');
  const files = { csv: path.join(reportsDir, 'acme', '2026-11-26.csv'), json: path.join(reportsDir, 'acme', '2026-11-26.json') };
  const csv = readFileSync(files.csv);
  const json = readFileSync(files.json);
  const mtime = statSync(files.csv).mtimeMs;

  const again = await billing.tick('daily', D('2026-11-27T00:15:00Z'));
  assert.ok(again.includes(id));
  // addBulk returned without adding: nothing waits or runs, the completed job is the same one.
  assert.deepEqual(await queue.getJobCounts('completed', 'waiting', 'active', 'delayed'), countsBefore);
  const same = await queue.getJob(id);
  assert.equal(same?.finishedOn, before?.finishedOn);
  assert.equal(same?.processedOn, before?.processedOn);
  assert.equal(same?.attemptsMade, before?.attemptsMade);

  await same?.remove();
  await billing.tick('daily', D('2026-11-27T00:15:00Z'));
  await waitFinished(queue, [id]);
  const rerun = await queue.getJob(id);
  assert.ok((rerun?.finishedOn ?? 0) > (before?.finishedOn ?? 0), 'ran again');
  assert.ok(statSync(files.csv).mtimeMs >= mtime);
  assert.ok(readFileSync(files.csv).equals(csv), 'identical CSV');
  assert.ok(readFileSync(files.json).equals(json), 'identical JSON');
});

test('bullmq: a tick job in the worker reports on the period before the clock', async () => {
  assert.ok(billing);
  now = D('2026-11-26T11:05:00Z');
  const tickJob = await billing.queue.add('tick', { kind: 'hourly' });
  await waitFinished(billing.queue, [tickJob.id!]);
  const ids = (await billing.queue.getJob(tickJob.id!))?.returnvalue as string[];
  assert.deepEqual(ids, ['acme|hourly|2026-11-26T10', 'globex|hourly|2026-11-26T10']);
  await waitFinished(billing.queue, ids);
  assert.equal(readFileSync(path.join(reportsDir, 'acme', '2026-11-26T10.json'), 'utf8'), renderJson(await computeReport(ch, 'acme', D('2026-11-26T10:00:00Z'), D('2026-11-26T11:00:00Z'), prices)));

  // A scheduler's tick carries its scheduled time (bullmq's prevMillis): a tick run late still reports its own period.
  now = D('2026-11-26T15:40:00Z');
  const late = await billing.queue.add('tick', { kind: 'hourly' }, { prevMillis: Date.UTC(2026, 10, 26, 11, 5) });
  await waitFinished(billing.queue, [late.id!]);
  assert.deepEqual((await billing.queue.getJob(late.id!))?.returnvalue, ids);
});

test('bullmq: a report that can never succeed fails at once instead of using its retries', async () => {
  assert.ok(billing);
  const job = await billing.queue.add(
    'report',
    { tenant: 'nobody', kind: 'daily', start: '2026-11-26T00:00:00.000Z', end: '2026-11-27T00:00:00.000Z' },
    { jobId: 'nobody|daily|2026-11-26', attempts: REPORT_ATTEMPTS, backoff: { type: 'exponential', delay: 10_000 } },
  );
  await eventually('job failed', async () => ((await job.getState()) === 'failed' ? true : undefined));
  const failed = await billing.queue.getJob(job.id!);
  assert.equal(failed?.attemptsMade, 1);
  assert.match(failed?.failedReason ?? '', /unknown_tenant: unknown tenant "nobody"/);
});

test('bullmq: restarting with fewer periods removes the schedulers of the others', async () => {
  assert.ok(billing);
  await billing.close();
  billing = await startBilling({ config: periodsConfig(['daily']), ch, logger: ns.logger, prefix: ns.id });
  assert.deepEqual((await billing.queue.getJobSchedulers()).map((s) => s.key), ['billing-tick-daily']);
  await billing.close();
  billing = undefined;
});

// ---- the CLI -----------------------------------------------------------------------------

/** `logmeter report …` as cli/main.ts runs it (commander, LogmeterError → exit 1), in its own process. */
function report(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const program = `
    import { Command } from 'commander';
    import { loadConfig } from './app/config.ts';
    import { reportCommand } from './cli/report.ts';
    const program = new Command().name('logmeter').exitOverride();
    reportCommand(program, () => loadConfig());
    try {
      await program.parseAsync(process.argv.slice(1), { from: 'user' });
    } catch (err) {
      if (!String(err.code).startsWith('commander.')) process.stderr.write('logmeter: ' + err.message + '\\n');
      process.exit(String(err.code).startsWith('commander.') ? 2 : 1);
    }`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program, 'report', ...args], {
      cwd: ROOT,
      env: { ...ns.env, LOGMETER_PRICE_LIST: pricesFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('CLI: report prints CSV/JSON/table and writes the files; bad input and unknown tenants exit 1 with a clear message', async () => {
  const expectedDay = await computeReport(ch, 'acme', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), prices);
  const expectedOld = await computeReport(ch, 'old', D('2026-11-26T00:00:00Z'), D('2026-11-27T00:00:00Z'), prices);
  // The embedded store allows one process: hand it to the CLI.
  await ch.close();
  try {
    const csv = await report(['--tenant', 'acme', '--period', '2026-11-26', '--format', 'csv']);
    assert.equal(csv.code, 0, csv.stderr);
    assert.equal(csv.stdout, renderCsv(expectedDay));
    assert.equal(readFileSync(path.join(reportsDir, 'acme', '2026-11-26.csv'), 'utf8'), csv.stdout);
    assert.match(csv.stderr, /wrote .*acme\/2026-11-26\.csv and .*acme\/2026-11-26\.json/);

    const out = mkdtempSync(path.join(ns.dataDir, 'out-'));
    const json = await report(['--tenant', 'acme', '--from', '2026-11-26T00:00Z', '--to', '2026-11-27', '--format', 'json', '--out', out]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.stdout, renderJson(expectedDay));
    assert.equal(readFileSync(path.join(out, 'acme', '2026-11-26.json'), 'utf8'), json.stdout);

    const table = await report(['--tenant', 'old', '--period', '2026-11-26']);
    assert.equal(table.code, 0, table.stderr);
    assert.equal(table.stdout, renderTable(expectedOld));
    assert.match(table.stdout, /^total .* 0\.0000 EUR$/m);

    const unknown = await report(['--tenant', 'nobody', '--period', '2026-11-26']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown tenant "nobody": it has no usage at all/);

    const badPeriod = await report(['--tenant', 'acme', '--period', '2026-02-30']);
    assert.equal(badPeriod.code, 1);
    assert.match(badPeriod.stderr, /--period "2026-02-30": 2026-02 has 28 days/);
    const both = await report(['--tenant', 'acme', '--period', '2026-11', '--from', '2026-11-01']);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /either --period or --from\/--to, not both/);
    const format = await report(['--tenant', 'acme', '--period', '2026-11', '--format', 'xml']);
    assert.equal(format.code, 2);
    assert.match(format.stderr, /Allowed choices are table, csv, json/);
  } finally {
    ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  }
  // Held by this process now, as a running `logmeter up` would hold it.
  await ch.query('SELECT 1');
  const locked = await report(['--tenant', 'acme', '--period', '2026-11-26']);
  assert.equal(locked.code, 1);
  assert.match(locked.stderr, /cannot open the embedded ClickHouse in .*: it is held by another process \(a running `logmeter up`\?/);
});

after(async () => {
  await billing?.close();
  // A fresh handle: obliterate what the billing queue left in Redis (jobs, schedulers, events).
  const client = new Redis(ns.config.redis.url, { maxRetriesPerRequest: null });
  try {
    const queue = new Queue(`${ns.id}.billing`, { connection: client, prefix: ns.id });
    await queue.obliterate({ force: true });
    await queue.close();
    const left: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${ns.id}:*`, 'COUNT', 1000);
      left.push(...keys);
      cursor = next;
    } while (cursor !== '0');
    assert.deepEqual(left, [], 'no keys left in Redis');
  } finally {
    await client.quit();
    await ch.close();
    ns.cleanup();
  }
});

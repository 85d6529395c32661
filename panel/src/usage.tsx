/**
 * Usage: one chart per meter from `/api/v1/usage` (by hour, day or month) with the
 * numbers beside it — per period and in total — exactly as the API gave them. A series
 * per app, except for a meter with dimensions (container-seconds: a series per size).
 * Above them, external egress (billed) against internal traffic (free), side by side.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { errorText, getJson, query } from './api.js';
import { axisSize, xRange } from './chart.js';

interface UsageItem {
  app: string;
  meter: string;
  unit: string;
  dimensions: Record<string, string>;
  period_start: string;
  quantity: number;
}

const DEFAULT_FROM = { hour: '48h', day: '31d', month: '366d' } as const;
type Period = keyof typeof DEFAULT_FROM;
const STEP_S = { hour: 3600, day: 86_400, month: 31 * 86_400 } as const;
const COLORS = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

export interface MeterSeries {
  /** The meter, or `traffic` for the billed-vs-free comparison. */
  key: string;
  title: string;
  unit: string;
  /** Series names: apps, a dimension's values (`size=small`), or meters. */
  series: string[];
  /** Per series, a label shown in the legend and the table. */
  labels: string[];
  /** Period starts, seconds. */
  starts: number[];
  /** Per series, per period start: quantity (null when the series has none). */
  values: Array<Array<number | null>>;
  /** Per period start, over all series. */
  totals: number[];
  /** Per series, over all periods. */
  seriesTotals: number[];
  total: number;
}

const dimsLabel = (d: Record<string, string>) =>
  Object.keys(d)
    .sort()
    .map((k) => `${k}=${d[k]}`)
    .join(',');

function chart(key: string, title: string, unit: string, rows: UsageItem[], seriesOf: (i: UsageItem) => string, labelOf: (s: string) => string = (s) => s): MeterSeries {
  const starts = [...new Set(rows.map((r) => Date.parse(r.period_start) / 1000))].sort((a, b) => a - b);
  const series = [...new Set(rows.map(seriesOf))].sort();
  const values = series.map((name) => starts.map((s) => rows.filter((r) => seriesOf(r) === name && Date.parse(r.period_start) / 1000 === s).reduce<number | null>((sum, r) => (sum ?? 0) + r.quantity, null)));
  const totals = starts.map((_, i) => values.reduce((sum, v) => sum + (v[i] ?? 0), 0));
  const seriesTotals = values.map((v) => v.reduce<number>((sum, x) => sum + (x ?? 0), 0));
  return { key, title, unit, series, labels: series.map(labelOf), starts, values, totals, seriesTotals, total: totals.reduce((a, b) => a + b, 0) };
}

/** Billed and free traffic: the meters compared in the first chart, with what the price list does with them. */
const TRAFFIC: Record<string, string> = { egress_external_bytes: 'external egress (billed)', internal_bytes: 'internal (free)' };

export function byMeter(items: UsageItem[]): MeterSeries[] {
  const meters = new Map<string, UsageItem[]>();
  for (const i of items) {
    const k = `${i.meter}\u0000${i.unit}`;
    meters.set(k, [...(meters.get(k) ?? []), i]);
  }
  const out: MeterSeries[] = [];
  const traffic = items.filter((i) => i.meter in TRAFFIC);
  if (traffic.length > 0) out.push(chart('traffic', 'traffic: billed vs free', traffic[0]!.unit, traffic, (i) => i.meter, (m) => TRAFFIC[m] ?? m));
  for (const rows of meters.values()) {
    const { meter, unit } = rows[0]!;
    const dimensional = rows.some((r) => Object.keys(r.dimensions).length > 0);
    out.push(dimensional ? chart(meter, meter, unit, rows, (r) => dimsLabel(r.dimensions) || 'none') : chart(meter, meter, unit, rows, (r) => r.app));
  }
  return out;
}

const fmt = (n: number) => (Number.isInteger(n) ? n.toLocaleString('en') : n.toLocaleString('en', { maximumFractionDigits: 3 }));
const label = (s: number, period: Period) => new Date(s * 1000).toISOString().slice(0, period === 'hour' ? 16 : period === 'day' ? 10 : 7).replace('T', ' ');

function Chart({ series, period }: { series: MeterSeries; period: Period }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const host = el.current;
    if (!host) return undefined;
    const plot = new uPlot(
      {
        width: Math.max(280, host.clientWidth),
        height: 220,
        series: [{}, ...series.labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true } }))],
        axes: [{}, { size: axisSize }],
        // One period alone: a period either side (see xRange).
        scales: { x: { time: true, range: xRange(series.starts, STEP_S[period]) } },
        legend: { live: true },
      },
      [series.starts, ...series.values] as uPlot.AlignedData,
      host,
    );
    const resize = () => plot.setSize({ width: Math.max(280, host.clientWidth), height: 220 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [series, period]);
  return <div class="chart" ref={el} />;
}

export function UsagePage({ tenant }: { tenant: string | undefined }) {
  const [period, setPeriod] = useState<Period>('hour');
  const [from, setFrom] = useState<string>(DEFAULT_FROM.hour);
  const [data, setData] = useState<MeterSeries[] | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    setData(undefined);
    setError(undefined);
    getJson<{ items: UsageItem[] }>(`/api/v1/usage${query({ tenant, period, from })}`).then(
      (r) => setData(byMeter(r.items)),
      (err: unknown) => setError(errorText(err)),
    );
  }, [period, from, tenant]);

  return (
    <section aria-label="Usage">
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          By{' '}
          <select
            name="period"
            value={period}
            onChange={(e) => {
              const p = e.currentTarget.value as Period;
              setPeriod(p);
              setFrom(DEFAULT_FROM[p]);
            }}
          >
            <option value="hour">hour</option>
            <option value="day">day</option>
            <option value="month">month</option>
          </select>
        </label>
        <label>
          Since <input name="from" value={from} onChange={(e) => setFrom(e.currentTarget.value)} />
        </label>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!error && !data && <p class="loading">Loading…</p>}
      {data && data.length === 0 && <p class="empty">No usage in this range.</p>}
      {data?.map((s) => (
        <article class="meter" data-meter={s.key}>
          <h2>
            {s.title} <span class="unit">({s.unit})</span> <span class="total" data-total={String(s.total)}>total {fmt(s.total)}</span>
          </h2>
          {(s.series.length > 1 || s.key === 'traffic') && (
            <ul class="series-totals">
              {s.series.map((name, i) => (
                <li data-series={name} data-total={String(s.seriesTotals[i] ?? 0)}>
                  {s.labels[i]}: {fmt(s.seriesTotals[i] ?? 0)}
                </li>
              ))}
            </ul>
          )}
          <Chart series={s} period={period} />
          <details>
            <summary>Numbers</summary>
            <table class="numbers">
              <thead>
                <tr>
                  <th>Period</th>
                  {s.labels.map((a) => (
                    <th>{a}</th>
                  ))}
                  <th>Total</th>
                </tr>
              </thead>
              <tbody>
                {s.starts.map((start, i) => (
                  <tr>
                    <td>{label(start, period)}</td>
                    {s.values.map((v) => (
                      <td class="num">{v[i] === null || v[i] === undefined ? '' : fmt(v[i])}</td>
                    ))}
                    <td class="num">{fmt(s.totals[i] ?? 0)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </article>
      ))}
    </section>
  );
}

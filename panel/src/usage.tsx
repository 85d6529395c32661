/**
 * Usage: one chart per meter from `/api/v1/usage` (by hour, day or month; a series per
 * app) with the numbers beside it — per period and in total — exactly as the API gave
 * them.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { errorText, getJson, query } from './api.js';

interface UsageItem {
  app: string;
  meter: string;
  unit: string;
  period_start: string;
  quantity: number;
}

const DEFAULT_FROM = { hour: '48h', day: '31d', month: '366d' } as const;
type Period = keyof typeof DEFAULT_FROM;
const STEP_S = { hour: 3600, day: 86_400, month: 31 * 86_400 } as const;
const COLORS = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

export interface MeterSeries {
  meter: string;
  unit: string;
  apps: string[];
  /** Period starts, seconds. */
  starts: number[];
  /** Per app, per period start: quantity (null when the app has none). */
  values: Array<Array<number | null>>;
  totals: number[];
  total: number;
}

export function byMeter(items: UsageItem[]): MeterSeries[] {
  const meters = new Map<string, UsageItem[]>();
  for (const i of items) {
    const k = `${i.meter}\u0000${i.unit}`;
    meters.set(k, [...(meters.get(k) ?? []), i]);
  }
  return [...meters.values()].map((rows) => {
    const starts = [...new Set(rows.map((r) => Date.parse(r.period_start) / 1000))].sort((a, b) => a - b);
    const apps = [...new Set(rows.map((r) => r.app))].sort();
    const values = apps.map((app) => starts.map((s) => rows.filter((r) => r.app === app && Date.parse(r.period_start) / 1000 === s).reduce<number | null>((sum, r) => (sum ?? 0) + r.quantity, null)));
    const totals = starts.map((_, i) => values.reduce((sum, v) => sum + (v[i] ?? 0), 0));
    return { meter: rows[0]!.meter, unit: rows[0]!.unit, apps, starts, values, totals, total: totals.reduce((a, b) => a + b, 0) };
  });
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
        series: [{}, ...series.apps.map((app, i) => ({ label: app, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true } }))],
        axes: [{}, { size: 70 }],
        // One period alone would make uPlot pick a range of years around it: show a period either side instead.
        scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - STEP_S[period], max + STEP_S[period]] : [min, max]) } },
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
        <article class="meter" data-meter={s.meter}>
          <h2>
            {s.meter} <span class="unit">({s.unit})</span> <span class="total" data-total={String(s.total)}>total {fmt(s.total)}</span>
          </h2>
          <Chart series={s} period={period} />
          <details>
            <summary>Numbers</summary>
            <table class="numbers">
              <thead>
                <tr>
                  <th>Period</th>
                  {s.apps.map((a) => (
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

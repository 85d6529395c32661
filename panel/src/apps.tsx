/**
 * Apps: the containers of `/api/v1/containers` with their state, and a container's
 * lifecycle timeline (`/api/v1/containers/<id>/lifecycle`: start, die with its exit code,
 * OOM, health, the scaler's actions). Per app, its autoscale signal over time
 * (`/api/v1/apps/<app>/signals`: p95 against its target, request rate, replicas
 * recommended against running, mode) and the current route set of its hosts
 * (`/api/v1/apps/<app>/routes`).
 */
import { useMemo, useState } from 'preact/hooks';
import { query } from './api.js';
import { TimePlot, type PlotAxis, type PlotSeries } from './chart.js';
import { pending, useFetched } from './fetched.js';

interface ContainerItem {
  container_id: string;
  container_name: string;
  app: string;
  image: string;
  state: string;
  last_action: string | null;
  last_action_at: string | null;
  exit_code: number | null;
  health: string | null;
  last_seen: string;
}

interface LifecycleItem {
  ts: string;
  event_id: string;
  action: string;
  actor: string;
  exit_code: number | null;
  health: string | null;
  image: string;
  message: string | null;
}

interface SignalPoint {
  ts: string;
  mode: string;
  current_replicas: number;
  recommended_replicas: number;
  p95_ms: number | null;
  target_p95_ms: number | null;
  rate_rps: number;
  reason: string;
  signals: number;
}

interface RouteSetItem {
  host: string;
  version: number;
  ts: string;
  upstreams: Array<{ container_id: string; address: string; port: number }>;
  reason: string;
}

const when = (iso: string | null) => (iso ? iso.slice(0, 19).replace('T', ' ') : '');
const num = (n: number | null) => (n === null ? '' : Number.isInteger(n) ? String(n) : n.toFixed(1));

const RANGES = { '15m': 'last 15 minutes', '1h': 'last hour', '6h': 'last 6 hours', '24h': 'last 24 hours' } as const;
type Range = keyof typeof RANGES;

const LATENCY_AXES: PlotAxis[] = [{ scale: 'ms', label: 'ms', fromZero: true }];
const SCALING_AXES: PlotAxis[] = [
  { scale: 'replicas', label: 'replicas', fromZero: true },
  { scale: 'rps', label: 'requests/s', fromZero: true },
];

function Signals({ app, tenant, range }: { app: string; tenant: string | undefined; range: Range }) {
  const { value, error } = useFetched<{ step_s: number; items: SignalPoint[] }>(`/api/v1/apps/${encodeURIComponent(app)}/signals${query({ tenant, from: range })}`);
  const charts = useMemo(() => {
    if (!value) return undefined;
    const xs = value.items.map((p) => Date.parse(p.ts) / 1000);
    const latency: PlotSeries[] = [
      { label: 'p95', color: '#dc2626', scale: 'ms', values: value.items.map((p) => p.p95_ms) },
      { label: 'target p95', color: '#4b5563', scale: 'ms', dashed: true, values: value.items.map((p) => p.target_p95_ms) },
    ];
    const scaling: PlotSeries[] = [
      { label: 'recommended', color: '#9333ea', scale: 'replicas', values: value.items.map((p) => p.recommended_replicas) },
      { label: 'running', color: '#16a34a', scale: 'replicas', values: value.items.map((p) => p.current_replicas) },
      { label: 'requests/s', color: '#2563eb', scale: 'rps', values: value.items.map((p) => p.rate_rps) },
    ];
    return { xs, latency, scaling };
  }, [value]);
  if (!value || !charts) return pending(error, false);
  if (value.items.length === 0) return <p class="empty">No autoscale signals in this range (signals are sent while the app has requests).</p>;
  const last = value.items[value.items.length - 1]!;
  return (
    <div class="signals">
      <p>
        Now: <span class={`badge mode ${last.mode}`}>{last.mode}</span> {last.current_replicas} running, {last.recommended_replicas} recommended · {last.reason}
      </p>
      <h3>p95 against its target</h3>
      <div class="plot" data-chart="latency">
        <TimePlot xs={charts.xs} series={charts.latency} axes={LATENCY_AXES} padS={value.step_s} />
      </div>
      <h3>Replicas and request rate</h3>
      <div class="plot" data-chart="scaling">
        <TimePlot xs={charts.xs} series={charts.scaling} axes={SCALING_AXES} padS={value.step_s} />
      </div>
      <details>
        <summary>Numbers ({value.step_s} s per row)</summary>
        <div class="scroll">
          <table class="numbers signals-table">
            <thead>
              <tr>
                <th>Time</th>
                <th>Mode</th>
                <th>p95 ms</th>
                <th>Target ms</th>
                <th>Requests/s</th>
                <th>Recommended</th>
                <th>Running</th>
              </tr>
            </thead>
            <tbody>
              {value.items.map((p) => (
                <tr data-ts={p.ts} class={p.mode === 'panic' ? 'bad' : ''}>
                  <td>{when(p.ts)}</td>
                  <td>{p.mode}</td>
                  <td class="num">{num(p.p95_ms)}</td>
                  <td class="num">{num(p.target_p95_ms)}</td>
                  <td class="num">{num(p.rate_rps)}</td>
                  <td class="num">{p.recommended_replicas}</td>
                  <td class="num">{p.current_replicas}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </div>
  );
}

function Routes({ app, tenant }: { app: string; tenant: string | undefined }) {
  const { value, error } = useFetched<{ items: RouteSetItem[] }>(`/api/v1/apps/${encodeURIComponent(app)}/routes${query({ tenant })}`);
  const items = value?.items;
  if (!items) return pending(error, false);
  if (items.length === 0) return <p class="empty">No routed host (give a container an lb-host label to route it).</p>;
  return (
    <div class="scroll">
      <table class="numbers routes">
        <thead>
          <tr>
            <th>Host</th>
            <th>Version</th>
            <th>Upstreams</th>
            <th>Since</th>
          </tr>
        </thead>
        <tbody>
          {items.map((h) => (
            <tr data-host={h.host}>
              <td>{h.host}</td>
              <td class="num">{h.version}</td>
              <td>
                {h.upstreams.length === 0 ? (
                  <span class="empty-set">none</span>
                ) : (
                  <ul class="upstreams">
                    {h.upstreams.map((u) => (
                      <li data-container-id={u.container_id}>
                        {u.address}:{u.port} <span class="muted">({u.container_id.slice(0, 12)})</span>
                      </li>
                    ))}
                  </ul>
                )}
              </td>
              <td>
                {when(h.ts)} <span class="muted">{h.reason}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function AppScaling({ apps, tenant }: { apps: string[]; tenant: string | undefined }) {
  const [app, setApp] = useState<string>(apps[0] ?? '');
  const [range, setRange] = useState<Range>('1h');
  const shown = apps.includes(app) ? app : (apps[0] ?? '');
  return (
    <article class="report app-scaling" aria-label="Scaling and routes">
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          App
          <select name="app" value={shown} onChange={(e) => setApp(e.currentTarget.value)}>
            {apps.map((a) => (
              <option value={a}>{a}</option>
            ))}
          </select>
        </label>
        <label>
          Range
          <select name="range" value={range} onChange={(e) => setRange(e.currentTarget.value as Range)}>
            {Object.entries(RANGES).map(([k, v]) => (
              <option value={k}>{v}</option>
            ))}
          </select>
        </label>
      </form>
      <h2>Autoscale signal of {shown}</h2>
      <Signals app={shown} tenant={tenant} range={range} key={`${shown} ${range} ${tenant ?? ''}`} />
      <h2>Routes of {shown}</h2>
      <Routes app={shown} tenant={tenant} key={`${shown} ${tenant ?? ''}`} />
    </article>
  );
}

function Timeline({ id, tenant }: { id: string; tenant: string | undefined }) {
  const { value, error } = useFetched<{ items: LifecycleItem[] }>(`/api/v1/containers/${encodeURIComponent(id)}/lifecycle${query({ tenant })}`);
  const items = value?.items;
  if (!items) return pending(error, false);
  if (items.length === 0) return <p class="empty">No lifecycle events.</p>;
  return (
    <ol class="timeline" aria-label="Lifecycle">
      {items.map((e) => (
        <li class={e.action === 'oom' || (e.action === 'die' && e.exit_code !== 0) ? 'bad' : ''} data-event-id={e.event_id}>
          <span class="ts">{when(e.ts)}</span> <span class="badge">{e.action}</span>
          {e.exit_code !== null && ` exit code ${e.exit_code}`}
          {e.health !== null && ` health ${e.health}`}
          {e.actor !== '' && e.actor !== 'docker' && ` by ${e.actor}`}
          {e.message && `: ${e.message}`}
        </li>
      ))}
    </ol>
  );
}

export function AppsPage({ tenant }: { tenant: string | undefined }) {
  const { value, error } = useFetched<{ items: ContainerItem[] }>(`/api/v1/containers${query({ tenant, limit: '1000' })}`);
  const [open, setOpen] = useState<string | undefined>();
  const items = value?.items;
  if (!items) return pending(error, false);
  if (items.length === 0) return <p class="empty">No containers seen yet.</p>;
  return (
    <section aria-label="Apps" class="apps">
      <div class="scroll">
        <table class="numbers">
          <thead>
            <tr>
              <th>App</th>
              <th>Container</th>
              <th>State</th>
              <th>Last event</th>
              <th>Image</th>
            </tr>
          </thead>
          <tbody>
            {items.map((c) => (
              <tr class={c.container_id === open ? 'selected' : ''} data-container-id={c.container_id}>
                <td>{c.app}</td>
                <td>
                  <button type="button" class="link" onClick={() => setOpen(c.container_id)}>
                    {c.container_name}
                  </button>
                </td>
                <td class={`state ${c.state}`}>
                  {c.state}
                  {c.exit_code !== null && c.state === 'exited' ? ` (${c.exit_code})` : ''}
                  {c.health ? ` · ${c.health}` : ''}
                </td>
                <td>
                  {c.last_action ?? ''} {when(c.last_action_at)}
                </td>
                <td>{c.image}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {open && (
        <article class="report">
          <h2>{items.find((c) => c.container_id === open)?.container_name}</h2>
          <Timeline id={open} tenant={tenant} key={open} />
        </article>
      )}
      <AppScaling apps={[...new Set(items.map((c) => c.app))].sort()} tenant={tenant} />
    </section>
  );
}

/**
 * Logs: the search of `/api/v1/logs` (time range, app, container, stream, kind, text),
 * newest first, a page at a time, and the live tail of the same search
 * (`/api/v1/logs/tail`, Server-Sent Events). Lifecycle entries (start, die with its exit
 * code, OOM, the scaler's actions) sit between the lines they explain.
 *
 * A line is a text child of its cell: whatever it holds (markup, escape sequences) is
 * shown as the characters it is, never interpreted.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { errorText, getJson, query } from './api.js';

export interface LogItem {
  ts: string;
  event_id: string;
  app: string;
  container_id: string;
  container_name: string;
  stream: string | null;
  kind: string;
  line: string;
  truncated: boolean;
  invalid_utf8: boolean;
  action: string | null;
  exit_code: number | null;
}

interface Filters {
  from: string;
  to: string;
  app: string;
  container: string;
  stream: string;
  kind: string;
  q: string;
}

const EMPTY: Filters = { from: '24h', to: '', app: '', container: '', stream: '', kind: '', q: '' };
const PAGE = 200;
const TAIL_KEEP = 2000;

const searchParams = (f: Filters, tenant: string | undefined) => ({ tenant, app: f.app, container: f.container, stream: f.stream, kind: f.kind, q: f.q });

function lifecycleClass(item: LogItem): string {
  if (item.action === null) return '';
  if (item.action === 'oom' || (item.action === 'die' && item.exit_code !== 0)) return 'event bad';
  return 'event';
}

function Row({ item }: { item: LogItem }) {
  return (
    <tr class={lifecycleClass(item)} data-event-id={item.event_id}>
      <td class="ts">{item.ts.replace('T', ' ').replace('Z', '')}</td>
      <td class="app">{item.app}</td>
      <td class="container" title={item.container_id}>
        {item.container_name}
      </td>
      <td class="kind">{item.action !== null ? item.kind : `${item.kind}${item.stream === 'stderr' ? ' · err' : ''}`}</td>
      <td class="line">
        {item.action !== null && <span class="badge">{item.action}</span>}
        {item.line}
        {item.truncated && <span class="badge">truncated</span>}
      </td>
    </tr>
  );
}

export function LogsPage({ tenant }: { tenant: string | undefined }) {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [items, setItems] = useState<LogItem[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | undefined>();
  const [tail, setTail] = useState(false);
  const [tailState, setTailState] = useState<string | undefined>();
  const seen = useRef(new Set<string>());

  const fetchPage = async (cursor: string | null) => {
    setLoading(true);
    setError(undefined);
    try {
      const page = await getJson<{ items: LogItem[]; next_cursor: string | null }>(
        `/api/v1/logs${query({ ...searchParams(filters, tenant), from: filters.from, to: filters.to, limit: String(PAGE), cursor: cursor ?? undefined })}`,
      );
      if (cursor === null) seen.current = new Set();
      const fresh = page.items.filter((i) => !seen.current.has(i.event_id));
      for (const i of fresh) seen.current.add(i.event_id);
      setItems((old) => (cursor === null ? fresh : [...old, ...fresh]));
      setNext(page.next_cursor);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setLoading(false);
    }
  };

  useEffect(() => void fetchPage(null), [filters]);

  useEffect(() => {
    if (!tail) return undefined;
    const source = new EventSource(`/api/v1/logs/tail${query(searchParams(filters, tenant))}`);
    setTailState('connecting…');
    source.onopen = () => setTailState('live');
    source.onmessage = (e: MessageEvent<string>) => {
      const item = JSON.parse(e.data) as LogItem;
      if (seen.current.has(item.event_id)) return;
      seen.current.add(item.event_id);
      setItems((old) => [item, ...old].slice(0, TAIL_KEEP));
    };
    source.addEventListener('problem', (e) => setTailState((JSON.parse((e as MessageEvent<string>).data) as { error: string }).error));
    source.onerror = () => {
      setTailState('reconnecting…');
      // A tail refused for the session (401) looks like any broken stream: ask the session.
      void getJson('/panel/session').catch(() => setTail(false));
    };
    return () => source.close();
  }, [tail, filters]);

  const field = (key: keyof Filters) => ({
    value: draft[key],
    onInput: (e: Event) => setDraft({ ...draft, [key]: (e.currentTarget as HTMLInputElement).value }),
  });

  return (
    <section aria-label="Logs">
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters({ ...draft });
        }}
      >
        <label>
          From <input name="from" placeholder="24h or 2026-12-01T10:00Z" {...field('from')} />
        </label>
        <label>
          To <input name="to" placeholder="now" {...field('to')} />
        </label>
        <label>
          App <input name="app" {...field('app')} />
        </label>
        <label>
          Container <input name="container" placeholder="name or id" {...field('container')} />
        </label>
        <label>
          Stream{' '}
          <select name="stream" value={draft.stream} onChange={(e) => setDraft({ ...draft, stream: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="stdout">stdout</option>
            <option value="stderr">stderr</option>
          </select>
        </label>
        <label>
          Kind{' '}
          <select name="kind" value={draft.kind} onChange={(e) => setDraft({ ...draft, kind: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="access">access</option>
            <option value="debug">debug</option>
            <option value="start">start</option>
            <option value="operation">operation</option>
          </select>
        </label>
        <label class="wide">
          Text <input name="q" type="search" {...field('q')} />
        </label>
        <button type="submit">Search</button>
        <label class="toggle">
          <input type="checkbox" name="tail" checked={tail} onChange={(e) => setTail(e.currentTarget.checked)} /> Live tail
          {tail && tailState && <span class="tail-state"> ({tailState})</span>}
        </label>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!error && !loading && items.length === 0 && <p class="empty">No lines match this search.</p>}
      {items.length > 0 && (
        <div class="scroll">
          <table class="logs">
            <thead>
              <tr>
                <th>Time (UTC)</th>
                <th>App</th>
                <th>Container</th>
                <th>Kind</th>
                <th>Line</th>
              </tr>
            </thead>
            <tbody>
              {items.map((i) => (
                <Row item={i} key={i.event_id} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      {loading && <p class="loading">Loading…</p>}
      {next && !loading && (
        <button type="button" class="more" onClick={() => void fetchPage(next)}>
          Older lines
        </button>
      )}
    </section>
  );
}

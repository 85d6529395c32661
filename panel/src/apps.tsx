/**
 * Apps: the containers of `/api/v1/containers` with their state, and a container's
 * lifecycle timeline (`/api/v1/containers/<id>/lifecycle`: start, die with its exit code,
 * OOM, health, the scaler's actions).
 */
import { useState } from 'preact/hooks';
import { query } from './api.js';
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

const when = (iso: string | null) => (iso ? iso.slice(0, 19).replace('T', ' ') : '');

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
    </section>
  );
}

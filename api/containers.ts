/**
 * `GET /api/v1/containers` and `/containers/<id>/lifecycle`: each container's latest
 * state, from its lifecycle events, and one container's events. Another tenant's
 * container answers 404, as an absent one does.
 */
import { z } from 'zod';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { page, type Cursor } from './cursor.js';
import type { TenantRouter } from './handler.js';
import { MAX_LIMIT, cursorParam, fromBeforeTo, intParam, listing, nameParam, notFound, parse, pathParam } from './params.js';
import { afterCursor, containerMatch, equals, scopeFor, scoped, timeRange, whereSql, type Scope, type Where } from './scope.js';
import { iso } from './time.js';

const containersQuery = z.object({ tenant: nameParam.optional(), app: nameParam.optional(), limit: intParam(1, MAX_LIMIT).optional(), cursor: cursorParam.optional() }).strict();

const lifecycleQuery = z.object(listing).strict().superRefine(fromBeforeTo);

export interface PortBinding {
  container_port: number;
  protocol: string;
  host_ip: string;
  host_port: number;
}

export interface ContainerItem {
  tenant: string;
  container_id: string;
  container_name: string;
  app: string;
  image: string;
  /** running, exited, created, paused, removed, or unknown; from the last Docker event. */
  state: string;
  /** The latest Docker event (create, start, die, …); null when only operations were seen. */
  last_action: string | null;
  last_action_at: string | null;
  /** Exit code of the latest exit; null when it never exited. */
  exit_code: number | null;
  health: string | null;
  ports: PortBinding[];
  first_seen: string;
  last_seen: string;
}

const STATE_AFTER: Record<string, string> = {
  create: 'created',
  start: 'running',
  restart: 'running',
  unpause: 'running',
  health_status: 'running',
  pause: 'paused',
  die: 'exited',
  stop: 'exited',
  kill: 'exited',
  oom: 'exited',
  destroy: 'removed',
};

// Aliases differ from column names: ClickHouse resolves a name to its alias first, even inside aggregates.
interface ContainerRow {
  tenant_name: string;
  container_id: string;
  last_name: string;
  last_app: string;
  last_image: string;
  docker_events: number;
  last_action: string;
  last_action_ms: number;
  exits: number;
  last_exit_code: number | null;
  last_health: string | null;
  last_ports: PortBinding[];
  first_ms: number;
  last_ms: number;
}

export async function listContainers(
  ch: ClickHouse,
  q: { scope: Scope; app?: string | undefined; limit: number; cursor?: Cursor | undefined },
): Promise<{ items: ContainerItem[]; next_cursor: string | null }> {
  const w = scoped(q.scope);
  equals(w, 'app', q.app);
  const having: Where = { conds: [], params: w.params };
  afterCursor(having, 'max(ts)', 'container_id', q.cursor, 'desc');
  w.params.limit = q.limit + 1;
  const at = '(ts, event_id)';
  const found = await ch.query<ContainerRow>(`SELECT toString(tenant) AS tenant_name, container_id,
            toString(argMax(container_name, ${at})) AS last_name, toString(argMax(app, ${at})) AS last_app,
            argMaxIf(image, ${at}, image != '') AS last_image,
            countIf(actor = 'docker') AS docker_events,
            toString(argMaxIf(action, ${at}, actor = 'docker')) AS last_action,
            toUnixTimestamp64Milli(maxIf(ts, actor = 'docker')) AS last_action_ms,
            countIf(isNotNull(exit_code)) AS exits,
            argMaxIf(exit_code, ${at}, isNotNull(exit_code)) AS last_exit_code,
            argMaxIf(health, ${at}, isNotNull(health)) AS last_health,
            argMaxIf(ports, ${at}, notEmpty(ports)) AS last_ports,
            toUnixTimestamp64Milli(min(ts)) AS first_ms, toUnixTimestamp64Milli(max(ts)) AS last_ms
     FROM ${ch.table('lifecycle')} FINAL ${whereSql(w)}
     GROUP BY tenant, container_id ${having.conds.length ? `HAVING ${having.conds.join(' AND ')}` : ''}
     ORDER BY last_ms DESC, container_id DESC LIMIT {limit:UInt32}`,
    w.params,
  );
  const { items, next_cursor } = page(found, q.limit, (r) => ({ ts: Number(r.last_ms), id: r.container_id }));
  return {
    items: items.map((r) => {
      const docker = Number(r.docker_events) > 0;
      return {
        tenant: r.tenant_name,
        container_id: r.container_id,
        container_name: r.last_name,
        app: r.last_app,
        image: r.last_image,
        state: docker ? (STATE_AFTER[r.last_action] ?? 'unknown') : 'unknown',
        last_action: docker ? r.last_action : null,
        last_action_at: docker ? iso(Number(r.last_action_ms)) : null,
        exit_code: Number(r.exits) > 0 ? r.last_exit_code : null,
        health: r.last_health ?? null,
        ports: r.last_ports,
        first_seen: iso(Number(r.first_ms)),
        last_seen: iso(Number(r.last_ms)),
      };
    }),
    next_cursor,
  };
}

export interface LifecycleItem {
  ts: string;
  event_id: string;
  tenant: string;
  app: string;
  container_id: string;
  container_name: string;
  action: string;
  actor: string;
  kind: string;
  exit_code: number | null;
  health: string | null;
  image: string;
  message: string | null;
  attributes: Record<string, string>;
  networks: string[];
  ports: PortBinding[];
}

/** One container's lifecycle events, or undefined when the scope has no such container. */
export async function containerLifecycle(
  ch: ClickHouse,
  q: { scope: Scope; container: string; from?: number | undefined; to?: number | undefined; limit: number; cursor?: Cursor | undefined; order: 'asc' | 'desc' },
): Promise<{ items: LifecycleItem[]; next_cursor: string | null } | undefined> {
  const known = scoped(q.scope);
  containerMatch(known, q.container);
  const [exists] = await ch.query<{ n: number }>(`SELECT count() AS n FROM ${ch.table('lifecycle')} FINAL ${whereSql(known)}`, known.params);
  if (!exists || Number(exists.n) === 0) return undefined;

  const w = scoped(q.scope);
  containerMatch(w, q.container);
  timeRange(w, 'ts', q.from, q.to);
  afterCursor(w, 'ts', 'event_id', q.cursor, q.order);
  w.params.limit = q.limit + 1;
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const found = await ch.query<Omit<LifecycleItem, 'ts'> & { ts_ms: number }>(`SELECT toUnixTimestamp64Milli(ts) AS ts_ms, event_id, toString(tenant) AS tenant, toString(app) AS app, container_id,
            toString(container_name) AS container_name, toString(action) AS action, toString(actor) AS actor, toString(kind) AS kind,
            exit_code, health, image, message, attributes, networks, ports
     FROM ${ch.table('lifecycle')} FINAL ${whereSql(w)}
     ORDER BY ts ${dir}, event_id ${dir} LIMIT {limit:UInt32}`,
    w.params,
  );
  const { items, next_cursor } = page(found, q.limit, (r) => ({ ts: Number(r.ts_ms), id: r.event_id }));
  return { items: items.map(({ ts_ms, ...r }) => ({ ts: iso(Number(ts_ms)), ...r })), next_cursor };
}

export function registerContainerRoutes(r: TenantRouter): void {
  r.get('/containers', async (principal, raw) => {
    const p = parse(containersQuery, raw);
    return listContainers(r.ch, { scope: scopeFor(principal, p.tenant), app: p.app, limit: p.limit ?? 100, cursor: p.cursor });
  });

  r.get('/containers/:id/lifecycle', async (principal, raw, params) => {
    const p = parse(lifecycleQuery, raw);
    const id = pathParam(params, 'id', 'id');
    const found = await containerLifecycle(r.ch, { scope: scopeFor(principal, p.tenant), container: id, from: p.from, to: p.to, limit: p.limit ?? 100, cursor: p.cursor, order: p.order ?? 'desc' });
    if (!found) throw notFound(`container ${JSON.stringify(id)}`);
    return found;
  });
}

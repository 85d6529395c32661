/**
 * The routes topic's current sets as ClickHouse `route_sets` (sql/010_panel_apps.sql),
 * for the API's `GET /api/v1/apps/:app/routes` (api/apps.ts): the API reads ClickHouse
 * only, and a compacted topic is not a table it can query.
 *
 * One row per write: a published set, or a forgotten host (`deleted = 1`, what the
 * topic's tombstone says). `revision` grows per write (the clock, or one more than the
 * last), so the newest row of a host is its state, across restarts too. At start,
 * `sync` writes every host the table knows and forgets every stored host it does not
 * (a host forgotten while nothing wrote here). Writes run one at a time, in call order.
 *
 * The topic stays the source of truth; these rows are a copy for reading. A failed
 * insert is logged and its rows are tried again with the next write (up to
 * `maxPendingRows`, the oldest dropped past it): `sync` at the next start repairs any
 * host still missing.
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { serial } from '../../lib/serial.js';
import type { RouteSet, Upstream } from '../../schemas/events.js';

/** A host's current set as the table knows it (RouteTable.current()). */
export interface HostSet {
  host: string;
  tenant: string;
  app: string;
  version: number;
  upstreams: readonly Upstream[];
}

type Row = {
  host: string;
  tenant: string;
  app: string;
  version: number;
  ts: number;
  upstreams: Upstream[];
  reason: string;
  deleted: 0 | 1;
  revision: number;
};

export class RouteSetStore {
  private pending: Row[] = [];
  private revision = 0;
  private readonly turns = serial();

  constructor(
    private readonly ch: ClickHouse,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
    private readonly maxPendingRows = 10_000,
  ) {}

  /** Every host of `current()` as it is now, and a deleted row for each stored host not in it. */
  sync(current: () => readonly HostSet[]): Promise<void> {
    return this.turns.run(async () => {
      const hosts = current();
      const known = new Set(hosts.map((h) => h.host));
      const stored = await this.ch.query<{ host: string }>(
        `SELECT host FROM ${this.ch.table('route_sets')} GROUP BY host HAVING argMax(deleted, revision) = 0`,
      );
      const now = this.clock();
      const rows = hosts.map((h) => this.row({ ...h, ts: now, reason: 'current set at start' }));
      for (const { host } of stored) if (!known.has(host)) rows.push(this.tombstone(host, now));
      await this.write(rows);
      this.log.info({ hosts: hosts.length, forgotten: rows.length - hosts.length }, 'route sets stored in ClickHouse at start');
    });
  }

  /** What the route processor published: sets, or hosts forgotten (tombstones). */
  published(sets: readonly RouteSet[], forgotten: readonly string[] = []): Promise<void> {
    return this.turns.run(async () => {
      const now = this.clock();
      await this.write([...sets.map((s) => this.row(s)), ...forgotten.map((h) => this.tombstone(h, now))]);
    });
  }

  /** Resolves once every write queued so far has been tried. */
  idle(): Promise<void> {
    return this.turns.idle();
  }

  private nextRevision(): number {
    this.revision = Math.max(this.revision + 1, this.clock());
    return this.revision;
  }

  private row(s: HostSet & { ts: number; reason: string }): Row {
    const upstreams = s.upstreams.map((u) => ({ container_id: u.container_id, address: u.address, port: u.port }));
    return { host: s.host, tenant: s.tenant, app: s.app, version: s.version, ts: s.ts, upstreams, reason: s.reason, deleted: 0, revision: this.nextRevision() };
  }

  private tombstone(host: string, now: number): Row {
    return { host, tenant: '', app: '', version: 0, ts: now, upstreams: [], reason: 'host forgotten (tombstone on the routes topic)', deleted: 1, revision: this.nextRevision() };
  }

  private async write(fresh: Row[]): Promise<void> {
    const rows = this.pending.concat(fresh);
    if (rows.length === 0) return;
    try {
      await this.ch.insert('route_sets', rows);
      this.pending = [];
    } catch (err) {
      const over = rows.length - this.maxPendingRows;
      if (over > 0) this.log.warn({ dropped: over }, 'route set rows dropped: ClickHouse failing longer than maxPendingRows rows');
      this.pending = over > 0 ? rows.slice(over) : rows;
      this.log.warn({ err: errorMessage(err), pending: this.pending.length }, 'route sets not stored in ClickHouse; retried with the next write');
    }
  }
}

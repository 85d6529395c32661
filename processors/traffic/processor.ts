/**
 * Traffic: stats samples → per-sample, per-network byte deltas in ClickHouse
 * (`traffic`), internal and external, plus block IO. A row's key is its sample and
 * network, so recomputing a sample replaces its row. The previous counters of a
 * container come from memory, or after a restart or replay from the table itself, so
 * the same input always gives the same deltas.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { TableBatcher } from '../../lib/clickhouse/batcher.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import { counter } from '../../lib/metrics.js';
import type { StatsSample } from '../../schemas/events.js';
import { counterDelta } from './delta.js';

/** The pseudo-network under which a sample's block IO is kept. */
export const BLKIO = '(blkio)';

interface Prev {
  ts: number;
  rx: number;
  tx: number;
  blkio: number;
}

export interface TrafficDeps {
  bus: EventBus;
  ch: ClickHouse;
  logger: Logger;
  registry: Registry;
  batchRows?: number;
  batchMs?: number;
}

export class TrafficState {
  private readonly prev = new Map<string, Prev>();

  constructor(private readonly ch: ClickHouse) {}

  /** The counters of the sample before `ts` for a container and network. */
  async before(container: string, network: string, ts: number): Promise<Prev | undefined> {
    const key = `${container}\0${network}`;
    const hit = this.prev.get(key);
    if (hit && hit.ts < ts) return hit;
    try {
      const rs = await this.ch.client.query({
        query: `SELECT toUnixTimestamp64Milli(ts) AS ts, rx_total AS rx, tx_total AS tx, blkio_total AS blkio FROM ${this.ch.table('traffic')} FINAL
                WHERE container_id = {c:String} AND network = {n:String} AND ts < fromUnixTimestamp64Milli({ts:Int64}) ORDER BY ts DESC LIMIT 1`,
        query_params: { c: container, n: network, ts },
        format: 'JSONEachRow',
      });
      return (await rs.json<Prev>())[0];
    } catch (err) {
      throw new LogmeterError('clickhouse_query_failed', `previous counters: ${errorMessage(err)}`, { retriable: true, cause: err });
    }
  }

  remember(container: string, network: string, p: Prev): void {
    this.prev.set(`${container}\0${network}`, p);
  }
}

/** The rows of one sample: one per network interface, one for block IO. */
export async function trafficRows(s: StatsSample, state: TrafficState): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  const base = { tenant: s.tenant, app: s.app, node: s.node, container_id: s.container_id, ts: s.ts, size: s.size ?? '' };
  for (const i of s.interfaces) {
    const network = i.network ?? `unknown:${i.name}`;
    const prev = await state.before(s.container_id, network, s.ts);
    rows.push({
      ...base,
      event_id: `${s.event_id}:${network}`,
      network,
      traffic_class: i.traffic_class,
      rx_total: i.rx_bytes,
      tx_total: i.tx_bytes,
      rx_bytes: counterDelta(prev?.rx, i.rx_bytes),
      tx_bytes: counterDelta(prev?.tx, i.tx_bytes),
      blkio_total: 0,
      blkio_bytes: 0,
    });
    state.remember(s.container_id, network, { ts: s.ts, rx: i.rx_bytes, tx: i.tx_bytes, blkio: 0 });
  }
  const blkio = s.blkio_read_bytes + s.blkio_write_bytes;
  const prev = await state.before(s.container_id, BLKIO, s.ts);
  rows.push({ ...base, event_id: `${s.event_id}:${BLKIO}`, network: BLKIO, traffic_class: 'none', rx_total: 0, tx_total: 0, rx_bytes: 0, tx_bytes: 0, blkio_total: blkio, blkio_bytes: counterDelta(prev?.blkio, blkio) });
  state.remember(s.container_id, BLKIO, { ts: s.ts, rx: 0, tx: 0, blkio });
  return rows;
}

export async function startTraffic(deps: TrafficDeps): Promise<Subscription> {
  const log = deps.logger.child({ component: 'traffic' });
  const samples = counter(deps.registry, 'logmeter_traffic_samples_total', 'Stats samples turned into traffic rows');
  const state = new TrafficState(deps.ch);
  const table = new TableBatcher(deps.ch, 'traffic', undefined, { maxRows: deps.batchRows ?? 10_000, maxMs: deps.batchMs ?? 200 });
  const sub = await deps.bus.subscribe({
    group: 'traffic',
    topics: ['stats'],
    concurrency: 4,
    handle: async (batch, ctx) => {
      const rows: Record<string, unknown>[] = [];
      for (const m of batch) rows.push(...(await trafficRows(m.event, state)));
      await table.add(rows, `${ctx.partition}`);
      samples.inc(batch.length);
    },
  });
  log.info('traffic processor started');
  return sub;
}

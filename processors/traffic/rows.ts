/**
 * A stats sample → its `traffic` rows: one per network interface, one for block IO,
 * each with the byte deltas since the container's previous sample (delta.ts). A row's
 * key is its sample and network, so recomputing a sample replaces its row. No I/O of
 * its own: the previous counters come from a {@link PreviousCounters}.
 */
import type { StatsSample } from '../../schemas/events.js';
import { counterDelta } from './delta.js';

/** The pseudo-network under which a sample's block IO is kept. */
export const BLKIO = '(blkio)';

export interface PrevCounters {
  ts: number;
  rx: number;
  tx: number;
  blkio: number;
}

/** Where the counters of the sample before `ts` come from (see state.ts). */
export interface PreviousCounters {
  before(container: string, network: string, ts: number): Promise<PrevCounters | undefined>;
  remember(container: string, network: string, p: PrevCounters): void;
}

/** The rows of one sample: one per network interface, one for block IO. */
export async function trafficRows(s: StatsSample, state: PreviousCounters): Promise<Record<string, unknown>[]> {
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

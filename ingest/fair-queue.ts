/**
 * The order in which the sender takes queued events: deficit round robin over one FIFO
 * lane per tenant (Shreedhar & Varghese), by bytes. A tenant with a backlog of megabytes
 * and a tenant with one line both get a turn in every batch, so the quiet tenant's next
 * line goes out in the next request, never behind the backlog.
 *
 * What stays in order: each lane is FIFO, and every container belongs to one tenant, so
 * a container's lines keep their order (Kafka orders per key = container id). Events
 * that belong to no tenant (stats, lifecycle, drop reports, dead letters) share one lane
 * of their own, served like a tenant.
 *
 * The lanes also say how much of the sender's memory bound a tenant may hold: a lane at
 * or over its share (the bound divided by the tenants with something queued, counting
 * the one asking) makes only that tenant's readers wait, so a flood that fills the
 * buffer does not stop the quiet tenants' readers as well.
 *
 * A batch that fills up in the middle of a lane's turn ends that turn: the next batch
 * starts with the next lane, so with the default quantum (16 KiB) and batch (512 KiB) a
 * tenant waits at most for the rest of the current batch.
 *
 * Memory accounting (issue 19). A queued event costs more than its bytes: its objects
 * (the event, its Buffer view, its slot in a lane) live on the V8 heap. `bytes` and
 * `queuedBytes` count each event's *charge*, its value's length plus `eventOverheadBytes`,
 * so a bound over them bounds memory rather than payload. The order (the lanes'
 * deficits, the batch size `take` fills) is by value bytes only, as before.
 */

/** What the queue needs from an event: its size, and whose it is. */
export interface Queued {
  value: Buffer;
  /** The tenant the event belongs to; undefined for the node's own events. */
  tenant?: string | undefined;
}

interface Lane<T> {
  items: T[];
  head: number;
  bytes: number;
  deficit: number;
  /** Whether the lane got its quantum in the current visit (a batch may end mid-visit). */
  granted: boolean;
}

const NODE_LANE = '\0node';

export class FairQueue<T extends Queued> {
  private readonly lanes = new Map<string, Lane<T>>();
  /** Lanes with something queued, in service order; `cursor` is the lane whose turn it is. */
  private ring: string[] = [];
  private cursor = 0;
  private count = 0;
  private total = 0;

  /**
   * @param quantumBytes Bytes a lane may send per turn (more for a line longer than that, over several turns).
   * @param eventOverheadBytes Charged per event on top of its value's length (`bytes`, `queuedBytes`, `chargeOf`).
   */
  constructor(
    private readonly quantumBytes = 16 * 1024,
    readonly eventOverheadBytes = 0,
  ) {}

  /** What `item` counts against a memory bound: its value's length and the per-event overhead. */
  chargeOf(item: Queued): number {
    return item.value.length + this.eventOverheadBytes;
  }

  /** Events queued. */
  get length(): number {
    return this.count;
  }

  /** Bytes charged for what is queued (values and per-event overhead). */
  get bytes(): number {
    return this.total;
  }

  /** Tenants (and the node's own lane) with something queued. */
  get activeLanes(): number {
    return this.ring.length;
  }

  push(item: T): void {
    const key = item.tenant ?? NODE_LANE;
    let lane = this.lanes.get(key);
    if (!lane) this.lanes.set(key, (lane = { items: [], head: 0, bytes: 0, deficit: 0, granted: false }));
    if (lane.items.length === lane.head) this.ring.push(key);
    lane.items.push(item);
    const charge = this.chargeOf(item);
    lane.bytes += charge;
    this.count++;
    this.total += charge;
  }

  /** Bytes charged for what `tenant` has queued. */
  queuedBytes(tenant: string | undefined): number {
    return this.lanes.get(tenant ?? NODE_LANE)?.bytes ?? 0;
  }

  /** Whether `tenant` holds at least its share of `boundBytes` (the bound split among the tenants with something queued, itself included). */
  overShare(tenant: string | undefined, boundBytes: number): boolean {
    const mine = this.queuedBytes(tenant);
    const lanes = this.ring.length + (mine === 0 ? 1 : 0);
    return mine >= boundBytes / lanes;
  }

  /**
   * Takes the next batch: up to `maxBytes` (at least one event when any is queued),
   * lanes in turn, each up to its deficit.
   */
  take(maxBytes: number): T[] {
    const out: T[] = [];
    let bytes = 0;
    while (this.ring.length > 0) {
      if (this.cursor >= this.ring.length) this.cursor = 0;
      const key = this.ring[this.cursor]!;
      const lane = this.lanes.get(key)!;
      if (!lane.granted) {
        // Credit left from a turn cut short by a full batch is kept, up to one more quantum
        // (or the size of the lane's next event, so a long line still gets its turn).
        const cap = Math.max(2 * this.quantumBytes, lane.items[lane.head]!.value.length);
        lane.deficit = Math.min(lane.deficit + this.quantumBytes, cap);
        lane.granted = true;
      }
      while (lane.head < lane.items.length) {
        const item = lane.items[lane.head]!;
        const size = item.value.length;
        if (size > lane.deficit && out.length > 0) break;
        // The batch is full: the next batch starts with the next lane (a lane whose quantum
        // is larger than a batch would otherwise fill batch after batch), this one keeps its credit.
        if (out.length > 0 && bytes + size > maxBytes) {
          lane.granted = false;
          this.cursor++;
          return out;
        }
        out.push(item);
        lane.items[lane.head++] = undefined as unknown as T;
        lane.deficit = Math.max(0, lane.deficit - size);
        const charge = size + this.eventOverheadBytes;
        lane.bytes -= charge;
        bytes += size;
        this.count--;
        this.total -= charge;
      }
      lane.granted = false;
      if (lane.head === lane.items.length) {
        // An empty lane leaves the ring and forgets its deficit (DRR): idleness earns no credit.
        lane.items = [];
        lane.head = 0;
        lane.deficit = 0;
        this.lanes.delete(key);
        this.ring.splice(this.cursor, 1);
      } else {
        if (lane.head > 4096 && lane.head * 2 > lane.items.length) {
          lane.items = lane.items.slice(lane.head);
          lane.head = 0;
        }
        this.cursor++;
      }
      if (bytes >= maxBytes) return out;
    }
    return out;
  }
}

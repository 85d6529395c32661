/**
 * Who publishes which host's route set when the route processor runs as N instances.
 *
 * 1. The routes topic is keyed by host, so a host's sets are all on one partition. The
 *    instances share one consumer group (`routes`) on the routes topic itself: the member
 *    a partition is assigned to is the one publisher of the hosts keyed onto it (found
 *    with the bus's partition-for-key, the producer's own partitioner).
 * 2. A partition that becomes this instance's is read back from its beginning to where it
 *    ended at the assignment; only then are its hosts published, each continuing from its
 *    last version there (`takeOverPlan`). Until then they are not this instance's.
 * 3. When the group starts rebalancing, nothing is published any more until the join says
 *    what is still this instance's (partitions kept are published again at once, they were
 *    never anyone else's meanwhile). A stopping instance publishes nothing from its stop on.
 * 4. While a partition is this instance's, a set on it that this instance did not publish
 *    (`SentSets`) came from another one (a member expelled that did not notice yet): when
 *    its version is above the host's last one here it is taken, so no version is used
 *    twice from then on; one that is not above is a duplicate, logged as such.
 * 5. The group is joined only once the instance's lifecycle groups have read up to where
 *    lifecycle ended at its start (`CatchUp`): a new owner's table is current.
 *
 * The instance's name is kept in `<stateDir>/instance` (created at the first start), so a
 * restarted instance resumes its own lifecycle and http groups.
 *
 * Everything here but `instanceName` is plain code (no Kafka), tested in
 * test/routes-ownership.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { LogmeterError } from '../../lib/errors.js';
import type { RouteSet } from '../../schemas/events.js';

/** The consumer groups of one instance: the owners' group is shared, the others are the instance's own. */
export interface RouteGroups {
  /** Shared by every instance, on the routes topic: its partitions say who publishes which hosts. */
  owners: string;
  /** This instance's reader of the whole lifecycle topic. */
  lifecycle: string;
  /** This instance's reader of the whole http topic (health). */
  http: string;
}

export function routeGroups(stem: string, instance: string): RouteGroups {
  return { owners: stem, lifecycle: `${stem}.lifecycle.${instance}`, http: `${stem}-http.${instance}` };
}

const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * This instance's name: read from `<stateDir>/instance`, or made (host name and a random
 * suffix) and written there at the first start. Two instances must not share a state dir.
 */
export function instanceName(stateDir: string): string {
  const file = path.join(stateDir, 'instance');
  if (existsSync(file)) {
    const name = readFileSync(file, 'utf8').trim();
    if (!NAME_RE.test(name)) throw new LogmeterError('routes_instance_name', `${file} holds "${name.slice(0, 80)}", not an instance name (a-z, 0-9, '-', '_'); fix or remove it (a new name starts new consumer groups)`, { retriable: false });
    return name;
  }
  const base = hostname().toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'routes';
  const name = `${base}-${randomBytes(3).toString('hex')}`;
  // Whole or not at all: a crash while writing leaves no half name behind.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${name}\n`);
  renameSync(tmp, file);
  return name;
}

/** A partition being read back: where it ended at the assignment, and the last word on each host seen so far (`null`: a tombstone). */
export interface ReadBack {
  readonly partition: number;
  readonly end: bigint;
  readonly seen: Map<string, RouteSet | null>;
}

export interface OwnershipView {
  /** Partitions whose hosts this instance publishes now. */
  owned: number[];
  /** Partitions assigned and still being read back. */
  reading: number[];
  rebalancing: boolean;
  closed: boolean;
}

/** The owners' group membership as this instance sees it (rules 1–3 of the header). */
export class Ownership {
  private readonly ready = new Set<number>();
  private readonly reading = new Map<number, ReadBack>();
  private rebalancing = false;
  private closed = false;
  /** The group was joined once: before, no host is known to be another instance's. */
  private joined = false;

  /** `partitionOf(host)`: the routes partition a host's sets are on. */
  constructor(private readonly partitionOf: (host: string) => number) {}

  /** Whether this instance publishes `host` now. */
  owns(host: string): boolean {
    return !this.rebalancing && !this.closed && this.ready.has(this.partitionOf(host));
  }

  /** Whether `host` is surely another instance's now (not this one's, not being read back, no rebalance under way). */
  othersOwn(host: string): boolean {
    const p = this.partitionOf(host);
    return this.joined && !this.rebalancing && !this.ready.has(p) && !this.reading.has(p);
  }

  /** The group is rebalancing: publish nothing until the join. */
  rebalance(): void {
    this.rebalancing = true;
  }

  /** A join: `partitions` are not this instance's any more; those it keeps are published again. */
  revoked(partitions: readonly number[]): void {
    for (const p of partitions) {
      this.ready.delete(p);
      this.reading.delete(p);
    }
    this.rebalancing = false;
    this.joined = true;
  }

  /**
   * Partitions that became this instance's, each with the offset its read starts at and
   * where it ended. Returns the read-backs that are complete already (nothing to read).
   */
  assigned(partitions: readonly { partition: number; start: bigint; end: bigint }[]): ReadBack[] {
    const done: ReadBack[] = [];
    for (const { partition, start, end } of partitions) {
      this.ready.delete(partition);
      const r: ReadBack = { partition, end, seen: new Map() };
      this.reading.set(partition, r);
      if (start >= end) done.push(r);
    }
    return done;
  }

  /**
   * A set (or a tombstone, `null`) read on `partition`: kept when the partition is being
   * read back; `'owned'` when it is this instance's (see `foreign`), else `'other'`.
   */
  read(partition: number, host: string, set: RouteSet | null): 'reading' | 'owned' | 'other' {
    const r = this.reading.get(partition);
    if (r) {
      r.seen.set(host, set);
      return 'reading';
    }
    return this.ready.has(partition) ? 'owned' : 'other';
  }

  /** The group has read `partition` up to `next`: its read-back when that completes it. */
  committed(partition: number, next: bigint): ReadBack | undefined {
    const r = this.reading.get(partition);
    return r && next >= r.end ? r : undefined;
  }

  /** The read-back `r` was taken into the table: its hosts are this instance's from now (false: it was revoked meanwhile). */
  complete(r: ReadBack): boolean {
    if (this.reading.get(r.partition) !== r || this.closed) return false;
    this.reading.delete(r.partition);
    this.ready.add(r.partition);
    return true;
  }

  /** Whether `r` is still the read-back under way of its partition. */
  current(r: ReadBack): boolean {
    return this.reading.get(r.partition) === r && !this.closed;
  }

  /** Stopping: nothing is published from now on. */
  close(): void {
    this.closed = true;
  }

  view(): OwnershipView {
    const sort = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b);
    return { owned: sort(this.ready), reading: sort(this.reading.keys()), rebalancing: this.rebalancing, closed: this.closed };
  }
}

export interface TakeOverStep {
  host: string;
  /** The host's last set on the topic; `null`: none (never published, or deleted by a tombstone). */
  adopt: RouteSet | null;
}

/**
 * What a completed read-back means for the table: each host the topic has a set of
 * continues from it; a host the table knows on this partition and the topic has nothing
 * of, or only a tombstone, starts from version 0. A tombstone does not make the table
 * forget the host: lifecycle read since (a container of it started again) is newer than
 * the tombstone; a host still idle is forgotten again after its grace.
 */
export function takeOverPlan(r: ReadBack, tableHosts: readonly string[], partitionOf: (host: string) => number): TakeOverStep[] {
  const steps: TakeOverStep[] = [...r.seen].map(([host, set]) => ({ host, adopt: set }));
  for (const host of tableHosts) if (!r.seen.has(host) && partitionOf(host) === r.partition) steps.push({ host, adopt: null });
  return steps;
}

/**
 * Rule 4: the sets this instance published lately (host, version, time), so that those read
 * back on its own partitions are told from another instance's. Bounded: the oldest are
 * dropped past `max` (sets published on partitions lost since are never read here).
 */
export class SentSets {
  private readonly sent = new Set<string>();

  constructor(private readonly max = 10_000) {}

  add(sets: readonly RouteSet[]): void {
    for (const s of sets) {
      this.sent.add(SentSets.key(s));
      if (this.sent.size > this.max) this.sent.delete(this.sent.values().next().value!);
    }
  }

  /** Whether `set` is one of this instance's (each is recognised once). */
  ours(set: RouteSet): boolean {
    return this.sent.delete(SentSets.key(set));
  }

  private static key(s: RouteSet): string {
    return `${s.host}\n${s.version}\n${s.ts}\n${s.node}`;
  }
}

/**
 * Rule 5: a consumer group has read a topic up to where it ended at a start. Built from
 * the end offsets then and the group's committed positions; told each commit.
 */
export class CatchUp {
  private readonly remaining = new Map<number, bigint>();

  constructor(ends: readonly { partition: number; low: string; high: string }[], committed: readonly { partition: number; offset: string }[]) {
    for (const e of ends) {
      const at = BigInt(committed.find((c) => c.partition === e.partition)?.offset ?? '-1');
      const from = at < 0n ? BigInt(e.low) : at;
      if (BigInt(e.high) > from) this.remaining.set(e.partition, BigInt(e.high));
    }
  }

  committed(partition: number, next: bigint): void {
    const end = this.remaining.get(partition);
    if (end !== undefined && next >= end) this.remaining.delete(partition);
  }

  done(): boolean {
    return this.remaining.size === 0;
  }

  /** Partitions not read to their end yet, with that end. */
  left(): Record<number, string> {
    return Object.fromEntries([...this.remaining].map(([p, e]) => [p, e.toString()]));
  }
}

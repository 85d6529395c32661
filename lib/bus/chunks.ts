/**
 * Splitting work into bounded pieces, for the bus: publishes into sends the broker accepts
 * (its record-batch limit is `max.message.bytes`, 1 MiB by default, and a refusal is
 * permanent), fetched batches into parts a handler finishes within the group session.
 * Every function keeps the items' order and gives each item exactly once. Pure.
 */
import type { RawBatch, RawMessage } from './bus.js';

/**
 * Consecutive runs of `items` of at most `maxBytes` by `sizeOf` each. An item bigger than
 * `maxBytes` on its own makes a run of its own (the caller's limit, not this split, refuses
 * it). No empty run; none at all for no items.
 */
export function byBytes<T>(items: readonly T[], sizeOf: (item: T) => number, maxBytes: number): T[][] {
  const out: T[][] = [];
  let run: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (run.length > 0 && bytes + size > maxBytes) {
      out.push(run);
      run = [];
      bytes = 0;
    }
    run.push(item);
    bytes += size;
  }
  if (run.length > 0) out.push(run);
  return out;
}

/** Consecutive runs of at most `n` (≥ 1) items. */
export function byCount<T>(items: readonly T[], n: number): T[][] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`byCount: a run of ${n} items`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out;
}

/**
 * Bytes of messages one send carries at most (keys, values and a record's own fields):
 * 768 KiB, a quarter below the broker's default 1 MiB per record batch. One publish of a
 * whole fetch's derived messages (~25,000 access-log lines) as one send was refused as too
 * large in the 30-restart stress run.
 */
export const SEND_MAX_BYTES = 768 * 1024;

/**
 * What a record adds beyond its key and value in Kafka's record-batch format (v2): its
 * length, attributes, timestamp and offset deltas, key and value lengths and header count
 * as varints, at most about 30 bytes; rounded up.
 */
export const RECORD_OVERHEAD_BYTES = 32;

/** A message's estimated bytes in a record batch (uncompressed: compression only makes it smaller). */
export function rawMessageBytes(m: RawMessage): number {
  const key = m.key === null ? 0 : typeof m.key === 'string' ? Buffer.byteLength(m.key) : m.key.length;
  return key + (m.value?.length ?? 0) + RECORD_OVERHEAD_BYTES;
}

/** A publish to one topic as sends of at most `maxBytes`, in order. */
export function sendsOf(messages: readonly RawMessage[], maxBytes = SEND_MAX_BYTES): RawMessage[][] {
  return byBytes(messages, rawMessageBytes, maxBytes);
}

/**
 * A publish to several topics (the collector's batches) as sends of at most `maxBytes`,
 * each with the topics it touches; every topic's messages stay in their order, and a send
 * follows the one before it, so each partition's order is kept when they go one at a time.
 */
export function batchSendsOf(batches: readonly RawBatch[], maxBytes = SEND_MAX_BYTES): RawBatch[][] {
  // The collector's batches (512 KiB by default) fit: passed on as they are, nothing copied.
  let total = 0;
  for (const b of batches) for (const m of b.messages) total += rawMessageBytes(m);
  if (total === 0) return [];
  if (total <= maxBytes) return [[...batches]];
  const packed = new Set(batches.filter((b) => b.pack).map((b) => b.topic));
  const all = batches.flatMap((b) => b.messages.map((m) => ({ topic: b.topic, m })));
  return byBytes(all, (e) => rawMessageBytes(e.m), maxBytes).map((run) => {
    const byTopic = new Map<string, RawMessage[]>();
    for (const { topic, m } of run) {
      const list = byTopic.get(topic);
      if (list) list.push(m);
      else byTopic.set(topic, [m]);
    }
    // A send of several keeps the topic's packing (pack.ts): records are packed within each send.
    return [...byTopic].map(([topic, messages]) => (packed.has(topic) ? { topic, messages, pack: true } : { topic, messages }));
  });
}

/**
 * The messages a publish split into several sends had stored before a send failed (the
 * earlier sends were acknowledged): kept beside the error, by message object, so a caller
 * that sends what was not stored again (the collector's sender isolating a batch Kafka
 * refused) does not store those twice.
 */
const storedBeforeFailure = new WeakMap<object, ReadonlySet<RawMessage>>();

export function markStored(err: unknown, stored: ReadonlySet<RawMessage>): void {
  if (typeof err === 'object' && err !== null && stored.size > 0) storedBeforeFailure.set(err, stored);
}

/** The messages stored by a failed publish's earlier sends (empty when none, or not split). */
export function storedBefore(err: unknown): ReadonlySet<RawMessage> {
  return (typeof err === 'object' && err !== null ? storedBeforeFailure.get(err) : undefined) ?? new Set();
}

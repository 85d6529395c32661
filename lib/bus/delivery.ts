/**
 * What happens to one fetched batch (one topic-partition) before its offset is
 * committed, the same for every bus adapter:
 * 1. decode each payload (the codec, or the subscription's own `decode`); one that cannot
 *    be decoded goes to the dead-letter topic with its position and reason (awaited) — it
 *    would fail the same way on every retry;
 * 2. hand the decoded messages to the handler; an error that may pass (e.g. ClickHouse
 *    down) is retried with jittered backoff, never skipped;
 * 3. an error that cannot pass (a programmer error, a row ClickHouse refuses) is not
 *    retried: the messages are tried one by one and only those that fail go to the
 *    dead-letter topic with the reason, so the partition is not stuck forever.
 * A fetched batch goes through these steps in parts of at most DELIVERY_CHUNK_MESSAGES,
 * each committed (the adapter's `commit`) right after it was handled, with a heartbeat
 * every HEARTBEAT_TICK_MS while it is: a fetch of 25–27k messages handled as one call
 * outlived the 30 s group session under load in the stress run, the member was expelled,
 * its commit refused, and its successor began the same fetch again, for ever. A rejection
 * (stop, rebalance) leaves the part being handled and those after it uncommitted, to be
 * delivered again.
 *
 * A packed record (pack.ts: several messages of one key in one Kafka record) is expanded
 * into its messages before they are decoded, each with the record's offset, key and
 * timestamp; the parts are cut between records, never inside one, so a commit (the offset
 * after a part's last record) never passes messages of a record not yet handled. A frame
 * that cannot be decoded is dead-lettered alone (its letter says which frame), the rest of
 * its record delivered; a packed record that cannot be unpacked is dead-lettered whole.
 *
 * A handler may hand over a promise of its work instead (`deferCommit`): the part's commit
 * then waits for it in the adapter (deferred-commit.ts) and the batch goes on at once. It
 * is the same commit (after the part's last whole record), only later: a deferred offset
 * never lands inside a packed record either.
 *
 * A reader of a compacted topic that asks for tombstones (`onTombstone`) gets each null
 * value in its place between the decoded runs, so a key deleted and written again is
 * seen in that order; without `onTombstone` a null value is undecodable like any other.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../logger.js';
import { errorMessage, isRetriable } from '../errors.js';
import { DecodeError, type AvroCodec } from '../../schemas/codec.js';
import type { DeadLetter, EventMap, TopicName } from '../../schemas/events.js';
import { SEND_MAX_BYTES, byBytes } from './chunks.js';
import { expandRecords, framesIn } from './pack.js';
import { DLQ_MAX_KEY_BYTES, DLQ_MAX_PAYLOAD_BYTES, type BatchHandler, type ConsumedMessage, type PayloadDecoder } from './bus.js';

/** A message as fetched, before decoding. */
export interface FetchedMessage {
  offset: string;
  /** Kafka timestamp, epoch ms (as a string or a number, as the client gives it). */
  timestamp: string | number;
  key: Buffer | null;
  value: Buffer | null;
  /** Of a packed record (set by the expansion, pack.ts): the frame's place in its record. */
  frame?: { index: number; count: number } | undefined;
  /** A packed record that could not be unpacked (pack.ts), dead-lettered whole with this reason. */
  packError?: string | undefined;
}

export interface DeliveryContext<T extends TopicName, E = EventMap[T]> {
  codec: AvroCodec;
  /** The subscription's own decoding (bus.ts `SubscribeOptions.decode`); default `codec.decode`. */
  decode?: PayloadDecoder<T, E> | undefined;
  /** Node name and full group id, written into dead letters. */
  node: string;
  group: string;
  log: Logger;
  handle: BatchHandler<T, E>;
  deadLetter: (letters: DeadLetter[]) => Promise<void>;
  heartbeat: () => Promise<void>;
  /** Aborted on stop: retries end and the batch stays uncommitted. */
  signal: AbortSignal;
  initialMs: number;
  maxMs: number;
  /** A null value (a tombstone on a compacted topic) with its key; see the header. */
  onTombstone?: ((key: Buffer | null) => Promise<void>) | undefined;
  /** Commits that trail the handler (`deferCommit`, deferred-commit.ts); without it a handler's deferCommit says false. */
  deferral?: Deferral | undefined;
}

/** The adapter's side of `deferCommit` for one fetched batch (deferred-commit.ts). */
export interface Deferral {
  /** Whether the part starting at `firstOffset` may be deferred. */
  accepts(firstOffset: string): boolean;
  /** The part's commit waits for `done`; false when the batch is no longer this consumer's. Resolves when the consumer may fetch on. */
  later(lastOffset: string, messages: number, done: Promise<unknown>): Promise<boolean>;
}

type FetchedBatch<T extends TopicName> = { topic: T; fullTopic: string; partition: number; messages: readonly FetchedMessage[] };

/** Messages of a fetched batch handed to the handler (and committed) at a time at most (a packed record of more goes alone). */
export const DELIVERY_CHUNK_MESSAGES = 5000;

/** How often the group is told this member lives while a part is handled (the client sends at most one per its heartbeat interval). */
export const HEARTBEAT_TICK_MS = 1000;

/**
 * Delivers `batch` part by part; after each part, `commit(last offset of the part)`. Resolves
 * `true` when every part was committed, `false` when `commit` said the batch is no longer
 * this consumer's (the rest is left uncommitted, for the partition's next owner).
 */
export async function deliver<T extends TopicName, E = EventMap[T]>(batch: FetchedBatch<T>, c: DeliveryContext<T, E>, commit: (lastOffset: string) => Promise<boolean>, partMessages = DELIVERY_CHUNK_MESSAGES): Promise<boolean> {
  // Parts of whole records, counted in the messages they carry (a packed record holds several).
  for (const records of byBytes(batch.messages, (m) => framesIn(m.value), partMessages)) {
    const messages = expandRecords(records);
    const first = records[0]!.offset;
    const last = records[records.length - 1]!.offset;
    const part = { topic: batch.fullTopic, partition: batch.partition, count: messages.length };
    // The work handed over with deferCommit (when the adapter takes it for this part).
    const deferred: Array<Promise<void>> | undefined = c.deferral?.accepts(first) ? [] : undefined;
    await withHeartbeats(c, part, () => deliverPart({ ...batch, messages }, c, deferred));
    if (deferred && deferred.length > 0) {
      const d = c.deferral!;
      if (!(await withHeartbeats(c, part, () => d.later(last, messages.length, Promise.all(deferred))))) return false;
    } else if (!(await commit(last))) return false;
    // A rebalance found by the ticker while the part was handled ends the batch here (the
    // commit above was still accepted: the member is in the group until it rejoins).
    await c.heartbeat();
  }
  return true;
}

/**
 * Runs `fn` with a heartbeat every HEARTBEAT_TICK_MS. A refused heartbeat (the group is
 * rebalancing, the coordinator moved) cannot stop the handler mid-way: it is logged, and
 * the heartbeat after the part's commit fails the same way and ends the batch.
 */
async function withHeartbeats<R>(c: Pick<DeliveryContext<TopicName>, 'heartbeat' | 'log' | 'signal'>, part: { topic: string; partition: number; count: number }, fn: () => Promise<R>): Promise<R> {
  let refused = false;
  let beating = false;
  const timer = setInterval(() => {
    if (beating || c.signal.aborted) return;
    beating = true;
    c.heartbeat()
      .catch((err: unknown) => {
        if (refused) return;
        refused = true;
        c.log.info({ ...part, err: errorMessage(err) }, 'heartbeat refused while a part of a batch is handled; the batch ends after this part');
      })
      .finally(() => {
        beating = false;
      });
  }, HEARTBEAT_TICK_MS);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

async function deliverPart<T extends TopicName, E>(batch: FetchedBatch<T>, c: DeliveryContext<T, E>, deferred?: Array<Promise<void>>): Promise<void> {
  const onTombstone = c.onTombstone;
  if (!onTombstone || batch.messages.every((m) => m.value !== null)) return deliverDecoded(batch, c, deferred);
  let run: FetchedMessage[] = [];
  for (const m of batch.messages) {
    if (m.value !== null) {
      run.push(m);
      continue;
    }
    if (run.length > 0) await deliverDecoded({ ...batch, messages: run }, c, deferred);
    run = [];
    await retrying(c.log, 'tombstone', c.initialMs, c.maxMs, c.signal, c.heartbeat, () => onTombstone(m.key));
  }
  if (run.length > 0) await deliverDecoded({ ...batch, messages: run }, c, deferred);
}

async function deliverDecoded<T extends TopicName, E>(batch: FetchedBatch<T>, c: DeliveryContext<T, E>, deferred?: Array<Promise<void>>): Promise<void> {
  const { topic, fullTopic, partition } = batch;
  const retry = <R>(what: string, fn: () => Promise<R>) => retrying(c.log, what, c.initialMs, c.maxMs, c.signal, c.heartbeat, fn);
  const good: ConsumedMessage<T, E>[] = [];
  const decode: PayloadDecoder<T, E> = c.decode ?? ((t, p) => c.codec.decode(t, p) as E);
  /** The fetched message of each of `good` (for its dead letter). */
  const goodRaw: FetchedMessage[] = [];
  const dead: DeadLetter[] = [];

  await retry('schema lookup', () => c.codec.prepare(batch.messages.map((m) => m.value)));
  for (const m of batch.messages) {
    if (m.packError !== undefined) {
      dead.push(deadLetter(c.node, fullTopic, partition, m, c.group, 'pack_invalid', m.packError));
      continue;
    }
    try {
      const msg: ConsumedMessage<T, E> = { topic, partition, offset: m.offset, timestamp: Number(m.timestamp), key: m.key, size: m.value?.length ?? 0, event: decode(topic, m.value) };
      if (m.frame) msg.frame = m.frame;
      good.push(msg);
      goodRaw.push(m);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      dead.push(deadLetter(c.node, fullTopic, partition, m, c.group, err.reasonCode, err.message));
    }
  }
  if (dead.length > 0) {
    c.log.warn({ topic: fullTopic, partition, count: dead.length, first: dead[0]!.reason }, 'undecodable messages sent to dead-letter topic');
    for (const part of letterRequests(dead)) await retry('dead-letter publish', () => c.deadLetter(part));
  }
  if (good.length === 0) return;
  const deferCommit = (done: Promise<void>): boolean => {
    if (!deferred) return false;
    // Observed by the adapter once the part is handed over; a rejection before that is not unhandled.
    done.catch(() => undefined);
    deferred.push(done);
    return true;
  };
  const run = (msgs: ConsumedMessage<T, E>[]) => retry('handler', () => c.handle(msgs, { topic, partition, heartbeat: c.heartbeat, deferCommit }));
  try {
    await run(good);
  } catch (err) {
    if (c.signal.aborted || isRetriable(err)) throw err;
    // Cannot succeed on retry. Find the poisoned messages one by one and park only
    // those in the dead-letter topic, with the reason; the rest are handled normally.
    c.log.error({ err, topic: fullTopic, partition, count: good.length }, 'handler failed permanently; isolating the failing messages');
    const letters: DeadLetter[] = [];
    for (const [i, m] of good.entries()) {
      try {
        await run([m]);
      } catch (single) {
        if (c.signal.aborted || isRetriable(single)) throw single;
        // By place, not by offset: the messages of a packed record share theirs.
        const raw = goodRaw[i]!;
        letters.push(deadLetter(c.node, fullTopic, partition, raw, c.group, 'handler_failed', errorMessage(single)));
      }
    }
    if (letters.length > 0) {
      c.log.error({ topic: fullTopic, partition, offsets: letters.map((l) => l.source_offset) }, 'messages sent to dead-letter topic after a permanent handler error');
      for (const part of letterRequests(letters)) await retry('dead-letter publish', () => c.deadLetter(part));
    }
  }
}

/** Bytes of letters (keys, payloads, reasons) one dead-letter publish carries at most. */
export const DLQ_REQUEST_BYTES = SEND_MAX_BYTES;

/**
 * Dead letters split into publishes of at most `maxBytes` of their keys, payloads and
 * reasons (a letter bigger than that alone goes alone: payloads are cut to
 * DLQ_MAX_PAYLOAD_BYTES). A whole fetch of undecodable messages as one request was refused by
 * the broker as too large (16,321 letters, seen in the 30-restart stress run). In order. Pure.
 */
export function letterRequests(letters: readonly DeadLetter[], maxBytes = DLQ_REQUEST_BYTES): DeadLetter[][] {
  return byBytes(letters, (l) => (l.key?.length ?? 0) + (l.payload?.length ?? 0) + Buffer.byteLength(l.reason) + 256, maxBytes);
}

function deadLetter(node: string, topic: string, partition: number, m: FetchedMessage, group: string, code: string, reason: string): DeadLetter {
  // A letter carries its message's bytes, so one near the broker's size limit would not
  // fit with them: past these bounds they are cut, and the reason says so.
  const cut = (b: Buffer | null, max: number, what: string) => (b && b.length > max ? { b: b.subarray(0, max), note: ` (${what} cut to ${max} of ${b.length} bytes)` } : { b, note: '' });
  const key = cut(m.key, DLQ_MAX_KEY_BYTES, 'key');
  const payload = cut(m.value, DLQ_MAX_PAYLOAD_BYTES, 'payload');
  // A frame of a packed record: its place is in the id (the frames share the record's offset) and in the reason.
  const frame = m.frame ? `\0${m.frame.index}` : '';
  const where = m.frame ? ` (frame ${m.frame.index + 1} of ${m.frame.count} of the packed record at offset ${m.offset})` : '';
  return {
    event_id: createHash('sha256').update(`${topic}\0${partition}\0${m.offset}\0${code}${frame}`).digest('hex').slice(0, 32),
    tenant: '',
    app: '',
    node,
    container_id: '',
    ts: Date.now(),
    source_topic: topic,
    source_partition: partition,
    source_offset: Number(m.offset),
    source_timestamp: Number(m.timestamp),
    consumer_group: group,
    key: key.b,
    payload: payload.b,
    error_code: code,
    reason: `${reason.length > 4096 ? `${reason.slice(0, 4096)}…` : reason}${where}${key.note}${payload.note}`,
  };
}

/** Runs `fn` until it succeeds or fails with a non-retriable error; jittered exponential backoff, a log line per attempt. */
async function retrying<R>(log: Logger, what: string, initialMs: number, maxMs: number, signal: AbortSignal, heartbeat: () => Promise<void>, fn: () => Promise<R>): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted || !isRetriable(err)) throw err;
      const delay = Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 16)) * (0.5 + Math.random() / 2);
      log.warn({ err: errorMessage(err), attempt, retryInMs: Math.round(delay) }, `${what} failed; retrying`);
      await sleepWithHeartbeat(delay, heartbeat, signal);
    }
  }
}

async function sleepWithHeartbeat(ms: number, heartbeat: () => Promise<void>, signal: AbortSignal): Promise<void> {
  const end = Date.now() + ms;
  while (!signal.aborted && Date.now() < end) {
    await new Promise((r) => setTimeout(r, Math.min(1000, end - Date.now())));
    // A rebalance makes heartbeat throw: the batch is abandoned uncommitted and redelivered.
    await heartbeat();
  }
}

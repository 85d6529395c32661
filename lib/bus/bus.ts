/**
 * The event bus: what logmeter needs from Kafka, named for what it is used for and not
 * for what a client library offers. `kafkajs.ts` is the one adapter today (kafkajs is in
 * maintenance mode); another client is another adapter implementing `EventBus`, picked in
 * `create.ts`. Nothing outside lib/bus imports a Kafka client or its types.
 *
 * Guarantees every adapter gives:
 * - publish() resolves only when every message is acknowledged by all in-sync
 *   replicas (acks = -1) of an idempotent producer: no duplicates from producer
 *   retries, order kept per partition. It goes out in sends of at most 768 KiB, one
 *   after the other (chunks.ts): a failed send leaves the earlier ones stored, and the
 *   caller's retry sends them again. It rejects with a LogmeterError whose
 *   `retriable` says whether sending the same messages again can succeed (a broker
 *   that is away: yes; a message over the size limit: never).
 * - a publish may pack messages of one key into shared records (`RawBatch.pack`, pack.ts;
 *   the collector does for the logs topic); subscribe() expands them, so a handler sees
 *   the messages one by one, each with its record's partition, offset, key and timestamp.
 * - subscribe() hands each decoded batch (one topic-partition) to the handler, in parts
 *   of at most 5,000 messages (never a packed record split across two), and commits each
 *   part's offset after the handler resolved, i.e. after its work is durable:
 *   at-least-once. A handler may instead hand over a promise of its work (`deferCommit`)
 *   and return: the offset is then committed when that work is done, in order per
 *   partition (deferred-commit.ts); as parts end at record ends, a deferred commit never
 *   lands inside a packed record. Payloads that cannot be decoded, and messages a handler fails on
 *   for good, go to the dead-letter topic (see delivery.ts) before the offset moves on.
 * - a subscription does not stop silently: one that has lag and no batch delivered for
 *   `consumerStallMs`, or whose client gave up on it, is logged, counted and rebuilt
 *   (see watchdog.ts), and reported by consumerStalls() until it reads again.
 *
 * Names: topics and groups given to publish/subscribe/readToEnd are logical (`logs`,
 * `log-sink.logs`) and the bus prepends the topic prefix, so test namespaces never share
 * anything. Positions and group admin take the full names (`bus.topic(name)`,
 * `Subscription.group`), as the dead letters record them.
 */
import type { BaseConfig as Config } from '../config.js';
import type { AvroCodec } from '../../schemas/codec.js';
import type { EventMap, TopicName } from '../../schemas/events.js';
import type { ConsumerStall } from './watchdog.js';

export interface BusConfig {
  brokers: string[];
  clientId: string;
  topicPrefix: string;
  partitions: number;
  replicationFactor: number;
  /** Node name written into dead letters. */
  node: string;
  /** Producer compression. Default snappy (the config's default). */
  compression?: 'gzip' | 'snappy' | 'none';
  /** zlib level of that gzip, 1–9 (lib/bus/kafkajs-gzip.ts). Default the config's (GZIP_LEVEL_DEFAULT). */
  compressionLevel?: number;
  /** Connection / request timeouts in ms (short in tests). Defaults 3000 and 30000. */
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Client retries of admin and consumer requests; default 5 from 300 ms, about 10 s in all. */
  retries?: number;
  /**
   * Consumer watchdog (watchdog.ts): a subscription with lag and no batch delivered for this
   * long is a stall, logged, counted, reported and rebuilt. Default 30000; 0 turns it off.
   */
  consumerStallMs?: number;
  /**
   * Consumer session timeout: a member that stops heartbeating (a killed process) is
   * expelled from its group after this long, and only then are its partitions handed to
   * the others. Default 30000; the broker admits 6000 and up (`group.min.session.timeout.ms`).
   */
  sessionTimeoutMs?: number;
}

/** The bus settings of a logmeter config (kept here so entry points that avoid lib/runtime.ts share it). */
export function busConfig(config: Config): BusConfig {
  return {
    brokers: config.kafka.brokers,
    clientId: config.kafka.clientId,
    topicPrefix: config.kafka.topicPrefix,
    partitions: config.kafka.partitions,
    replicationFactor: config.kafka.replicationFactor,
    compression: config.kafka.compression,
    compressionLevel: config.kafka.compressionLevel,
    consumerStallMs: config.kafka.consumerStallSeconds * 1000,
    sessionTimeoutMs: config.kafka.sessionTimeoutSeconds * 1000,
    node: config.node,
  };
}

export interface OutgoingMessage<T extends TopicName> {
  event: EventMap[T];
  /** Default: the topic's natural key (container id, tenant/app, host, …). */
  key?: string | Buffer;
}

/** An already-framed payload (or, in tests, arbitrary bytes). */
export interface RawMessage {
  key: string | Buffer | null;
  value: Buffer | null;
  /** Kafka timestamp (epoch ms). Default: when sent. */
  timestamp?: number;
}

export interface RawBatch {
  /** Full topic name. */
  topic: string;
  messages: readonly RawMessage[];
  /**
   * Pack the messages of each key into shared records (pack.ts: up to 64 KiB / 500 messages
   * per record, each key's order kept), expanded again on consume before any handler sees
   * them. For the logs topic (the collector's `packLogs`); a reader of the topic outside the
   * bus must unpack (docs/decisions/2026-12-05-packed-log-records.md). Default false.
   */
  pack?: boolean;
}

/** How a raw publish goes out. */
export interface PublishRawOptions {
  /** As `RawBatch.pack`. */
  pack?: boolean;
}

export interface ConsumedMessage<T extends TopicName, E = EventMap[T]> {
  topic: T;
  partition: number;
  offset: string;
  timestamp: number;
  key: Buffer | null;
  /** Size of the framed payload in bytes. */
  size: number;
  /** The decoded payload: the topic's event, or what the subscription's own `decode` made of it. */
  event: E;
  /**
   * Of a packed record (pack.ts): this message's place in it. Its messages share `offset`:
   * whoever commits offsets itself must not commit past that offset before the record's
   * last message (`index === count - 1`) is handled. Absent for a record of one message.
   */
  frame?: { index: number; count: number };
}

export type BatchHandler<T extends TopicName, E = EventMap[T]> = (messages: ConsumedMessage<T, E>[], ctx: BatchContext<T>) => Promise<void>;

/**
 * A subscription's own decoding of a framed payload (instead of `AvroCodec.decode` into the
 * topic's event), e.g. the log sink's, straight from the frame's bytes into its insert
 * (processors/log-sink/log-frame.ts). It must refuse what the codec refuses, with a
 * `DecodeError` (schemas/codec.ts): the message then goes to the dead-letter topic with the
 * reason, as any undecodable payload. Runs after `AvroCodec.prepare` (writer schemas are loaded).
 */
export type PayloadDecoder<T extends TopicName, E> = (topic: T, payload: Buffer | null) => E;

export interface BatchContext<T extends TopicName> {
  topic: T;
  partition: number;
  heartbeat(): Promise<void>;
  /**
   * Commit later (deferred-commit.ts): the handler's work on these messages is `done`
   * when it resolves, and the handler may return before. True: the bus commits their
   * offset only once `done` resolved and every earlier part of the partition is done, and
   * fetches on meanwhile; a rejection commits nothing more and the uncommitted messages are
   * read again (then handled the synchronous way). False (re-reading after such a failure):
   * the handler must await `done` itself, as without this call.
   */
  deferCommit(done: Promise<void>): boolean;
}

export interface SubscribeOptions<T extends TopicName, E = EventMap[T]> {
  /** Consumer group id (logical; the topic prefix is prepended so test namespaces never share groups). */
  group: string;
  topics: readonly T[];
  /** Where a group with no committed offset starts. Default: the beginning (replayable by design). */
  fromBeginning?: boolean;
  /**
   * Start every partition at its first message published at or after this time (epoch
   * ms, by Kafka timestamp), whatever the group committed before. A time before a
   * partition's oldest message reads it from the beginning; a partition created later
   * starts at its end.
   */
  fromTime?: number;
  handle: BatchHandler<T, E>;
  /** How payloads become the handlers' events; default the codec's decode into the topic's event (required when `E` is not that). */
  decode?: PayloadDecoder<T, E>;
  /** Backoff bounds for retriable handler errors. Defaults 200 and 30000 ms. */
  retry?: { initialMs?: number; maxMs?: number };
  /** Partitions handled at the same time (lets a batching handler fill its batches). Default 1. */
  concurrency?: number;
  /** Messages whose commit may wait for work handed over with `deferCommit`, at most; beyond it the consumer stops fetching until some is done. Default 100,000. */
  maxDeferredMessages?: number;
  /** After each commit: the group has handled everything of `topic`/`partition` before offset `next`. */
  onCommitted?(topic: T, partition: number, next: bigint): void;
  /** A compacted topic's tombstone (null value) for `key`, in order with the batches; without it a null value is dead-lettered as undecodable. */
  onTombstone?: (key: Buffer | null) => Promise<void>;
  /**
   * Replay on assignment, for N members of one group that each keep state of their
   * partitions: every partition that becomes this member's (at the first join and at each
   * rebalance) starts at its first message published at or after `replayFrom()` (epoch
   * ms, Kafka timestamp), whatever the group committed, and none of its messages is
   * handled before that position is set. Not with `fromTime`.
   */
  replayFrom?: () => number;
  /** The group is rebalancing: this member may be about to lose partitions (called before it rejoins). */
  onRebalancing?(): void;
  /**
   * Told at every join of the group (after `onRebalancing`), before any further batch is
   * handled: the partitions that are no longer this member's (often none). Also when the
   * member's consumer is torn down to be rebuilt (the bus's recovery from a stall or a
   * crash): all of its partitions, before any of the new consumer's (whose join tells them
   * to `onAssigned` as new, replayed with `replayFrom`).
   */
  onRevoked?(partitions: readonly TopicPartition<T>[]): void;
  /**
   * Told at every join of the group, after `onRevoked` (with none when nothing is new):
   * the partitions that became this member's, before any of their batches; with
   * `replayFrom`, each with the offset it starts at and `end`, the offset the next message
   * got when it was assigned (handled up to `end`, the partition's state is rebuilt).
   */
  onAssigned?(partitions: readonly AssignedPartition<T>[]): void;
}

export interface TopicPartition<T extends TopicName> {
  topic: T;
  partition: number;
}

export interface AssignedPartition<T extends TopicName> extends TopicPartition<T> {
  /** First offset handled (with `replayFrom`; else `-1`, the group's committed position). */
  start: bigint;
  /** The partition's end offset when it was assigned. */
  end: bigint;
}

export interface Subscription {
  /** The full group id. */
  readonly group: string;
  stop(): Promise<void>;
}

export interface ReadToEndOptions<T extends TopicName> {
  topic: T;
  /**
   * A consumer group (logical) of this reader alone: it reads from the beginning, and is
   * deleted on stop (a group resuming from a committed offset would miss what is older).
   */
  group: string;
  handle: BatchHandler<T>;
  /** A key deleted from the table (a tombstone), in order with the batches. */
  onTombstone?: (key: Buffer | null) => Promise<void>;
  /** Keep following the topic after the end at start (a table kept current) or not (a seed). Default true. */
  follow?: boolean;
}

/** A topic read as a table (e.g. the compacted routes topic): everything on it at start, then (when following) what comes. */
export interface TopicReader {
  /** Resolves `true` once every message on the topic at start was handled, `false` if stopped first. */
  readonly caughtUp: Promise<boolean>;
  /** Whether everything on the topic at start has been handled by now. */
  complete(): boolean;
  /** Stops reading and deletes the reader's group. */
  stop(): Promise<void>;
}

/** A partition's bounds: `low` is its oldest offset, `high` the offset its next message gets. */
export interface PartitionOffsets {
  partition: number;
  low: string;
  high: string;
}

/** A group's committed position in a partition: the next offset it reads (`-1`: none committed). */
export interface CommittedOffset {
  partition: number;
  offset: string;
}

export interface EventBus {
  readonly config: BusConfig;
  readonly codec: AvroCodec;
  /** Full topic name of a logical topic. */
  topic(name: TopicName): string;
  /** Creates missing topics with their partitions and settings (`topicConfig`); returns those created. Idempotent. */
  ensureTopics(names?: readonly TopicName[]): Promise<string[]>;

  /** Encodes and sends; resolves when all messages are acknowledged by all in-sync replicas. */
  publish<T extends TopicName>(topic: T, messages: readonly OutgoingMessage<T>[]): Promise<void>;
  /** Deletes keys from a compacted topic: one tombstone (null value) per key, acknowledged like publish(). */
  publishTombstones(topic: TopicName, keys: readonly string[]): Promise<void>;
  /** Sends framed payloads to a full topic name (packed with `opts.pack`, see RawBatch). */
  publishRaw(topic: string, messages: readonly RawMessage[], opts?: PublishRawOptions): Promise<void>;
  /** Sends framed payloads to several topics in one request when they fit in 768 KiB (the collector's batches), else in several. */
  publishRawBatch(batches: readonly RawBatch[]): Promise<void>;
  /**
   * Tears down the producer and builds a new one at the next publish (a request left
   * unanswered, a stall the watchdog found). Sends pending on the old producer are
   * abandoned (they may still land: the caller sends them again, with the same ids).
   */
  resetProducer(reason: string): Promise<void>;
  /** The partition the producer sent `key` to on `topic`, when known (for stall reports). */
  partitionOf(topic: string, key: string): number | undefined;
  /** The partition publish() sends a message keyed `key` to, on a topic of `partitions` partitions. */
  partitionForKey(key: string, partitions: number): number;

  /** Consumes with a manual commit after each handled batch (at-least-once, see the header). */
  subscribe<T extends TopicName, E = EventMap[T]>(opts: SubscribeOptions<T, E>): Promise<Subscription>;
  /** The consumer stalls being recovered from (see watchdog.ts); empty when every subscription reads. */
  consumerStalls(): ConsumerStall[];
  /** Reads a topic from its beginning, saying when it has read up to where it ended at the start. */
  readToEnd<T extends TopicName>(opts: ReadToEndOptions<T>): Promise<TopicReader>;

  /** A topic's partitions and their bounds (full topic name). */
  endOffsets(topic: string): Promise<PartitionOffsets[]>;
  /** Where a group (full id) stands in a topic (full name), per partition. */
  committedOffsets(group: string, topic: string): Promise<CommittedOffset[]>;
  /** Deletes consumer groups (full ids) that have no running member. */
  deleteGroups(groups: readonly string[]): Promise<void>;
  /** A topic's effective settings (e.g. `max.message.bytes`, `cleanup.policy`), by name; unknown names are left out. */
  topicSettings(topic: string, names: readonly string[]): Promise<Record<string, string>>;
  /** Rejects unless the cluster answers (health check). */
  ping(): Promise<void>;

  close(): Promise<void>;
}

/** Per-topic Kafka settings: routes is compacted (latest set per host), the rest kept for replay. */
export function topicConfig(name: TopicName): { name: string; value: string }[] {
  switch (name) {
    case 'routes':
      return [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.cleanable.dirty.ratio', value: '0.1' },
        { name: 'segment.ms', value: String(60 * 60 * 1000) },
      ];
    case 'dlq':
      return [{ name: 'retention.ms', value: String(30 * 24 * 3600 * 1000) }];
    default:
      return [{ name: 'retention.ms', value: String(7 * 24 * 3600 * 1000) }];
  }
}

/**
 * The natural message key of each topic: per-container topics by container, rollups by
 * tenant/app, routes by host. HTTP requests by the app they count for (`tenant/app`), so
 * one member of a group owns all of an app's requests; the access-log parser gives the
 * load balancer's requests the key of the app they were routed to (see its processor).
 */
export function naturalKey<T extends TopicName>(topic: T, event: EventMap[T]): string {
  switch (topic) {
    case 'http':
    case 'usage':
    case 'autoscale':
      return `${event.tenant}/${event.app}`;
    case 'routes':
      return (event as EventMap['routes']).host;
    case 'dlq': {
      const d = event as EventMap['dlq'];
      return `${d.source_topic}/${d.source_partition}`;
    }
    default:
      return event.container_id;
  }
}

/** Bytes of a message kept in its dead letter (the broker's default limit is 1 MiB per message). */
export const DLQ_MAX_PAYLOAD_BYTES = 512 * 1024;
export const DLQ_MAX_KEY_BYTES = 16 * 1024;

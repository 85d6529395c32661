/**
 * The event bus: logmeter's own seam over kafkajs (kafkajs is in maintenance mode;
 * nothing outside this folder imports it).
 *
 * Guarantees:
 * - publish() resolves only when every message is acknowledged by all in-sync
 *   replicas (acks = -1) of an idempotent producer: no duplicates from producer
 *   retries, order kept per partition.
 * - subscribe() hands each decoded batch (one topic-partition) to the handler and
 *   commits the offset after the handler resolved, i.e. after its work is durable:
 *   at-least-once. Payloads that cannot be decoded go to the dead-letter topic with
 *   their position and reason (awaited) before the offset moves past them. A handler
 *   error that may pass (e.g. ClickHouse down) is retried with jittered backoff, never
 *   skipped; one that cannot (a programmer error) sends the batch to the dead-letter
 *   topic with the reason, so the partition is not stuck forever.
 */
import './kafkajs-fixes.js';
import { createHash } from 'node:crypto';
import {
  Kafka,
  Partitioners,
  CompressionTypes,
  type Admin,
  type Consumer,
  type Producer,
  type KafkaMessage,
  type ITopicConfig,
  type ICustomPartitioner,
  type Message,
} from 'kafkajs';
import type { Logger } from '../logger.js';
import type { BaseConfig as Config } from '../config.js';
import { kafkaLevel, kafkaLogCreator } from '../logger.js';
import { LogmeterError, errorMessage, isRetriable } from '../errors.js';
import { AvroCodec, DecodeError } from '../../schemas/codec.js';
import { TOPIC_NAMES, type DeadLetter, type EventMap, type TopicName } from '../../schemas/events.js';

export interface BusConfig {
  brokers: string[];
  clientId: string;
  topicPrefix: string;
  partitions: number;
  replicationFactor: number;
  /** Node name written into dead letters. */
  node: string;
  /** Producer compression. Default gzip (built into kafkajs). */
  compression?: 'gzip' | 'none';
  /** Connection / request timeouts in ms (short in tests). */
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** kafkajs client retries (admin, consumer); default 5 from 300 ms, about 10 s in all. */
  retries?: number;
}

/**
 * kafkajs' default partitioner (murmur2 of the key, so the same partitions as every
 * Kafka client), remembering each string key's partition per topic and partition count:
 * the collector sends thousands of messages per second under one key (the container id),
 * and hashing each of them was the producer's largest single cost.
 */
export const keyedPartitioner: ICustomPartitioner = () => {
  const base = Partitioners.DefaultPartitioner();
  /** Per topic: the partition count the entries were computed for, and each key's partition. */
  const topics = new Map<string, { count: number; byKey: Map<string, number> }>();
  return (args) => {
    const { topic, partitionMetadata, message } = args;
    if (typeof message.key !== 'string' || (message.partition !== undefined && message.partition !== null)) return base(args);
    let t = topics.get(topic);
    // A topic that gained partitions maps its keys anew; keys come and go with containers,
    // so a topic's map starts over rather than grow without bound.
    if (!t || t.count !== partitionMetadata.length || t.byKey.size >= 100_000) topics.set(topic, (t = { count: partitionMetadata.length, byKey: new Map() }));
    let p = t.byKey.get(message.key);
    if (p === undefined) {
      p = base(args);
      t.byKey.set(message.key, p);
    }
    return p;
  };
};

/** The bus settings of a logmeter config (kept here so entry points that avoid lib/runtime.ts share it). */
export function busConfig(config: Config): BusConfig {
  return {
    brokers: config.kafka.brokers,
    clientId: config.kafka.clientId,
    topicPrefix: config.kafka.topicPrefix,
    partitions: config.kafka.partitions,
    replicationFactor: config.kafka.replicationFactor,
    compression: config.kafka.compression,
    node: config.node,
  };
}

export interface OutgoingMessage<T extends TopicName> {
  event: EventMap[T];
  /** Default: the topic's natural key (container id, tenant/app, host, …). */
  key?: string | Buffer;
}

export interface ConsumedMessage<T extends TopicName> {
  topic: T;
  partition: number;
  offset: string;
  timestamp: number;
  key: Buffer | null;
  /** Size of the framed payload in bytes. */
  size: number;
  event: EventMap[T];
}

export type BatchHandler<T extends TopicName> = (messages: ConsumedMessage<T>[], ctx: { topic: T; partition: number; heartbeat(): Promise<void> }) => Promise<void>;

export interface SubscribeOptions<T extends TopicName> {
  /** Consumer group id (logical; the topic prefix is prepended so test namespaces never share groups). */
  group: string;
  topics: readonly T[];
  /** Where a group with no committed offset starts. Default: the beginning (replayable by design). */
  fromBeginning?: boolean;
  handle: BatchHandler<T>;
  /** Backoff bounds for retriable handler errors. */
  retry?: { initialMs?: number; maxMs?: number };
  /** Partitions handled at the same time (lets a batching handler fill its batches). Default 1. */
  concurrency?: number;
}

export interface Subscription {
  readonly group: string;
  stop(): Promise<void>;
}

export class EventBus {
  readonly kafka: Kafka;
  private producerP: Promise<Producer> | undefined;
  private readonly consumers = new Set<Consumer>();
  private readonly log: Logger;

  constructor(
    readonly config: BusConfig,
    readonly codec: AvroCodec,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'bus' });
    this.kafka = new Kafka({
      clientId: config.clientId,
      brokers: config.brokers,
      connectionTimeout: config.connectionTimeoutMs ?? 3000,
      requestTimeout: config.requestTimeoutMs ?? 30000,
      retry: { initialRetryTime: 300, maxRetryTime: 5000, retries: config.retries ?? 5 },
      logLevel: kafkaLevel(this.log),
      logCreator: kafkaLogCreator(this.log.child({ component: 'kafkajs' })),
    });
  }

  /** Full topic name of a logical topic. */
  topic(name: TopicName): string {
    return `${this.config.topicPrefix}${name}`;
  }

  /** Creates missing topics: per-container topics keyed by container id, routes compacted. Idempotent. */
  async ensureTopics(names: readonly TopicName[] = TOPIC_NAMES): Promise<string[]> {
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      const existing = new Set(await admin.listTopics());
      const topics: ITopicConfig[] = names
        .filter((n) => !existing.has(this.topic(n)))
        .map((n) => ({
          topic: this.topic(n),
          numPartitions: this.config.partitions,
          replicationFactor: this.config.replicationFactor,
          configEntries: topicConfig(n),
        }));
      if (topics.length > 0) {
        await admin.createTopics({ topics, waitForLeaders: true });
        // Leaders are elected, but a broker may still answer "not the leader" to the first
        // offset requests for a moment: wait until every new topic answers one.
        for (const t of topics) {
          for (let attempt = 1; ; attempt++) {
            try {
              await admin.fetchTopicOffsets(t.topic);
              break;
            } catch (err) {
              if (attempt >= 50 || !isRetriable(err)) throw err;
              await new Promise((r) => setTimeout(r, 100));
            }
          }
        }
        this.log.info({ topics: topics.map((t) => t.topic) }, 'topics created');
      }
      return topics.map((t) => t.topic);
    } catch (err) {
      throw kafkaError(err, this.config.brokers);
    } finally {
      await admin.disconnect();
    }
  }

  async admin<R>(fn: (admin: Admin) => Promise<R>): Promise<R> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      return await fn(admin);
    } finally {
      await admin.disconnect();
    }
  }

  private producer(): Promise<Producer> {
    this.producerP ??= (async () => {
      const p = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        // An idempotent producer retries until acknowledged (kafkajs' own default); callers
        // that must not block get a clear error from ensureTopics() at start instead.
        retry: { initialRetryTime: 300, maxRetryTime: 10_000, retries: Number.MAX_SAFE_INTEGER },
        createPartitioner: keyedPartitioner,
        allowAutoTopicCreation: false,
      });
      try {
        await p.connect();
      } catch (err) {
        this.producerP = undefined;
        throw kafkaError(err, this.config.brokers);
      }
      return p;
    })();
    return this.producerP;
  }

  /** Encodes and sends; resolves when all messages are acknowledged by all in-sync replicas. */
  async publish<T extends TopicName>(topic: T, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (messages.length === 0) return;
    const encoded = messages.map((m) => ({ key: m.key ?? naturalKey(topic, m.event), value: this.codec.encode(topic, m.event) }));
    await this.publishRaw(this.topic(topic), encoded);
  }

  /** Sends already-framed payloads (or, in tests, arbitrary bytes) to a full topic name. */
  async publishRaw(topic: string, messages: readonly { key: string | Buffer | null; value: Buffer | null }[]): Promise<void> {
    const producer = await this.producer();
    try {
      await producer.send({
        topic,
        acks: -1,
        compression: this.config.compression === 'none' ? CompressionTypes.None : CompressionTypes.GZIP,
        messages: messages.map((m) => ({ key: m.key, value: m.value })),
      });
    } catch (err) {
      throw kafkaError(err, this.config.brokers, [{ topic, messages }]);
    }
  }

  /** Sends framed payloads to several topics in one request (the collector's batches). */
  async publishRawBatch(batches: readonly { topic: string; messages: readonly { key: string | Buffer | null; value: Buffer | null }[] }[]): Promise<void> {
    const producer = await this.producer();
    try {
      await producer.sendBatch({
        acks: -1,
        compression: this.config.compression === 'none' ? CompressionTypes.None : CompressionTypes.GZIP,
        // kafkajs only reads the messages: passed as they are, not copied.
        topicMessages: batches.map((b) => ({ topic: b.topic, messages: b.messages as Message[] })),
      });
    } catch (err) {
      throw kafkaError(err, this.config.brokers, batches);
    }
  }

  async subscribe<T extends TopicName>(opts: SubscribeOptions<T>): Promise<Subscription> {
    const groupId = `${this.config.topicPrefix}${opts.group}`;
    const log = this.log.child({ group: groupId });
    const consumer = this.kafka.consumer({ groupId, allowAutoTopicCreation: false, sessionTimeout: 30000, heartbeatInterval: 3000 });
    const byFullName = new Map(opts.topics.map((t) => [this.topic(t), t] as const));
    let stopping = false;
    const abort = new AbortController();
    const initialMs = opts.retry?.initialMs ?? 200;
    const maxMs = opts.retry?.maxMs ?? 30_000;

    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [...byFullName.keys()], fromBeginning: opts.fromBeginning ?? true });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      throw kafkaError(err, this.config.brokers);
    }

    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: opts.concurrency ?? 1,
      eachBatchAutoResolve: false,
      eachBatch: async (payload) => {
        const { batch } = payload;
        const heartbeat = () => payload.heartbeat();
        const topic = byFullName.get(batch.topic);
        if (!topic || batch.messages.length === 0) return;
        const { partition } = batch;
        const last = batch.messages[batch.messages.length - 1]!;
        const good: ConsumedMessage<T>[] = [];
        const dead: DeadLetter[] = [];

        await this.retrying(log, 'schema lookup', initialMs, maxMs, abort.signal, heartbeat, () =>
          this.codec.prepare(batch.messages.map((m) => m.value)),
        );
        for (const m of batch.messages) {
          try {
            good.push({ topic, partition, offset: m.offset, timestamp: Number(m.timestamp), key: m.key, size: m.value?.length ?? 0, event: this.codec.decode(topic, m.value) });
          } catch (err) {
            if (!(err instanceof DecodeError)) throw err;
            dead.push(this.deadLetter(batch.topic, partition, m, groupId, err.reasonCode, err.message));
          }
        }
        if (dead.length > 0) {
          log.warn({ topic: batch.topic, partition, count: dead.length, first: dead[0]!.reason }, 'undecodable messages sent to dead-letter topic');
          await this.retrying(log, 'dead-letter publish', initialMs, maxMs, abort.signal, heartbeat, () => this.publish('dlq', dead.map((event) => ({ event }))));
        }
        if (good.length > 0) {
          const run = (msgs: ConsumedMessage<T>[]) =>
            this.retrying(log, 'handler', initialMs, maxMs, abort.signal, heartbeat, () => opts.handle(msgs, { topic, partition, heartbeat }));
          try {
            await run(good);
          } catch (err) {
            if (abort.signal.aborted || isRetriable(err)) throw err;
            // Cannot succeed on retry. Find the poisoned messages one by one and park only
            // those in the dead-letter topic, with the reason; the rest are handled normally.
            log.error({ err, topic: batch.topic, partition, count: good.length }, 'handler failed permanently; isolating the failing messages');
            const letters: DeadLetter[] = [];
            for (const m of good) {
              try {
                await run([m]);
              } catch (single) {
                if (abort.signal.aborted || isRetriable(single)) throw single;
                const raw = batch.messages.find((r) => r.offset === m.offset)!;
                letters.push(this.deadLetter(batch.topic, partition, raw, groupId, 'handler_failed', errorMessage(single)));
              }
            }
            if (letters.length > 0) {
              log.error({ topic: batch.topic, partition, offsets: letters.map((l) => l.source_offset) }, 'messages sent to dead-letter topic after a permanent handler error');
              await this.retrying(log, 'dead-letter publish', initialMs, maxMs, abort.signal, heartbeat, () => this.publish('dlq', letters.map((event) => ({ event }))));
            }
          }
        }
        if (!payload.isRunning() || payload.isStale()) return;
        const next = (BigInt(last.offset) + 1n).toString();
        await consumer.commitOffsets([{ topic: batch.topic, partition, offset: next }]);
        // resolveOffset keeps kafkajs' in-memory position in step with the commit.
        payload.resolveOffset(last.offset);
        await heartbeat();
      },
    });
    this.consumers.add(consumer);
    log.info({ topics: [...byFullName.keys()] }, 'subscribed');
    return {
      group: groupId,
      stop: async () => {
        if (stopping) return;
        stopping = true;
        abort.abort();
        this.consumers.delete(consumer);
        await consumer.disconnect();
      },
    };
  }

  private deadLetter(topic: string, partition: number, m: KafkaMessage, group: string, code: string, reason: string): DeadLetter {
    // A letter carries its message's bytes, so one near the broker's size limit would not
    // fit with them: past these bounds they are cut, and the reason says so.
    const cut = (b: Buffer | null, max: number, what: string) => (b && b.length > max ? { b: b.subarray(0, max), note: ` (${what} cut to ${max} of ${b.length} bytes)` } : { b, note: '' });
    const key = cut(m.key, DLQ_MAX_KEY_BYTES, 'key');
    const payload = cut(m.value, DLQ_MAX_PAYLOAD_BYTES, 'payload');
    return {
      event_id: createHash('sha256').update(`${topic}\0${partition}\0${m.offset}\0${code}`).digest('hex').slice(0, 32),
      tenant: '',
      app: '',
      node: this.config.node,
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
      reason: `${reason.length > 4096 ? `${reason.slice(0, 4096)}…` : reason}${key.note}${payload.note}`,
    };
  }

  /** Runs `fn` until it succeeds or fails with a non-retriable error; jittered exponential backoff, a log line per attempt. */
  private async retrying<R>(
    log: Logger,
    what: string,
    initialMs: number,
    maxMs: number,
    signal: AbortSignal,
    heartbeat: () => Promise<void>,
    fn: () => Promise<R>,
  ): Promise<R> {
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

  async close(): Promise<void> {
    await Promise.all([...this.consumers].map((c) => c.disconnect().catch(() => undefined)));
    this.consumers.clear();
    if (this.producerP) {
      const p = await this.producerP.catch(() => undefined);
      this.producerP = undefined;
      await p?.disconnect().catch(() => undefined);
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

/** The natural message key of each topic: per-container topics by container, rollups by tenant/app, routes by host. */
export function naturalKey<T extends TopicName>(topic: T, event: EventMap[T]): string {
  switch (topic) {
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

function kafkaError(err: unknown, brokers: string[], sent?: readonly { topic: string; messages: readonly { key: string | Buffer | null; value: Buffer | null }[] }[]): LogmeterError {
  if (err instanceof LogmeterError) return err;
  const retriable = typeof err === 'object' && err !== null && 'retriable' in err ? Boolean((err).retriable) : true;
  const name = err instanceof Error ? err.name : 'Error';
  if (sent && (err as { type?: string }).type === 'MESSAGE_TOO_LARGE') {
    // Never passes on retry; say which topic and how large, so the producer's owner can act.
    const sizes = sent.flatMap((b) => b.messages.map((m) => ({ topic: b.topic, bytes: (m.value?.length ?? 0) + (m.key?.length ?? 0) })));
    const largest = sizes.reduce((a, b) => (b.bytes > a.bytes ? b : a), { topic: '', bytes: 0 });
    return new LogmeterError('kafka_message_too_large', `Kafka (${brokers.join(',')}): ${sizes.length} message(s) refused as too large; the largest is ${largest.bytes} bytes, for ${largest.topic} (over the broker's message.max.bytes or the topic's max.message.bytes): ${errorMessage(err)}`, { retriable: false, cause: err });
  }
  const code = /Connection|Broker|NumberOfRetriesExceeded/.test(name) ? 'kafka_unreachable' : 'kafka_error';
  return new LogmeterError(code, `Kafka (${brokers.join(',')}): ${errorMessage(err)}`, { retriable: retriable || code === 'kafka_unreachable', cause: err });
}

/**
 * The event bus over kafkajs: the one file that knows kafkajs (with kafkajs-fixes.ts,
 * which must load first). The guarantees are those of bus.ts; what each batch goes
 * through before its commit is delivery.ts, shared with any other adapter.
 *
 * kafkajs specifics kept here:
 * - one idempotent producer per bus (acks from all in-sync replicas, one request in
 *   flight), retrying until acknowledged; the collector's keys are partitioned with a
 *   remembered murmur2 (`keyedPartitioner`);
 * - a consumer per subscription, `autoCommit` off, offsets committed after the batch;
 *   watched (watchdog.ts) and rebuilt when it stalls or when kafkajs gives up on it
 *   after a crash (a CRASH event with `restart: false`);
 * - admin requests on a short-lived admin client each (they are rare);
 * - kafkajs' logs go through pino (its `logCreator`), at the logger's level.
 */
import './kafkajs-fixes.js';
import {
  Kafka,
  Partitioners,
  CompressionTypes,
  logLevel,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type Producer,
  type ITopicConfig,
  type ICustomPartitioner,
  type Message,
  type logCreator,
} from 'kafkajs';
import type { Logger } from '../logger.js';
import { LogmeterError, errorMessage, isRetriable } from '../errors.js';
import type { AvroCodec } from '../../schemas/codec.js';
import { TOPIC_NAMES, type TopicName } from '../../schemas/events.js';
import {
  naturalKey,
  topicConfig,
  type BusConfig,
  type CommittedOffset,
  type EventBus,
  type OutgoingMessage,
  type PartitionOffsets,
  type RawBatch,
  type RawMessage,
  type ReadToEndOptions,
  type AssignedPartition,
  type SubscribeOptions,
  type TopicPartition,
  type Subscription,
  type TopicReader,
} from './bus.js';
import { deliver } from './delivery.js';
import { ConsumerWatch, watchdogMetrics, type ConsumerStall, type PartitionLag, type WatchdogMetrics } from './watchdog.js';
import type { Registry } from '../metrics.js';
import { readToEnd } from './read-to-end.js';

/**
 * kafkajs' default partitioner (murmur2 of the key, so the same partitions as every
 * Kafka client), remembering each string key's partition per topic and partition count:
 * the collector sends thousands of messages per second under one key (the container id),
 * and hashing each of them was the producer's largest single cost.
 */
export const keyedPartitioner: ICustomPartitioner = () => keyedPartitionerOver(new Map());

/** Per topic: the partition count the entries were computed for, and each key's partition. */
type KeyPartitions = Map<string, { count: number; byKey: Map<string, number> }>;

/** keyedPartitioner remembering into `topics`, which the bus reads for stall reports. */
function keyedPartitionerOver(topics: KeyPartitions): ReturnType<ICustomPartitioner> {
  const base = Partitioners.DefaultPartitioner();
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
}

/** Each subscription's consumer of the moment (for `stopFetching`). */
const runningConsumer = new WeakMap<Subscription, () => { consumer: Consumer; topics: readonly string[] } | undefined>();

/**
 * For tests of the watchdog: the subscription's consumer stops fetching (kafkajs' pause of
 * every partition it reads), as a consumer left behind by a broker restart does, while it
 * stays a member of its group. The way out is the watchdog's: a rebuilt consumer is not
 * paused.
 */
export function stopFetching(sub: Subscription): void {
  const running = runningConsumer.get(sub)?.();
  if (!running) throw new Error(`${sub.group}: no consumer running`);
  running.consumer.pause(running.topics.map((topic) => ({ topic })));
}

/**
 * The error a replaced consumer's batch fails with. In kafkajs 2.2.4, `disconnect()` of a
 * consumer whose runner is still joining (a restart after a crash) returns at once and
 * forgets that runner: it joins later, fetches and heartbeats, a member holding partitions
 * that nothing handles, out of reach of any further `disconnect()`. An error kafkajs takes as
 * permanent, thrown from its batch handler, makes that runner crash and stop (and the
 * consumer not restart); the group expels it after its session timeout.
 */
function replacedRunnerError(groupId: string): Error {
  return Object.assign(new Error(`${groupId}: this consumer was replaced by a rebuild; its runner stops`), { name: 'ReplacedConsumer', retriable: false });
}

/** What a consumer's GROUP_JOIN events made of its assignment (see KafkajsBus.membership). */
interface Membership {
  /** Whether a batch of `topic`/`partition` may be handled (with `replayFrom`: once its replay position is set). */
  started(topic: string, partition: number): boolean;
  /** The consumer is being torn down: its partitions are told as revoked. */
  leave(): void;
}

/** kafkajs' ConfigResourceTypes.TOPIC (its enum is not among the names Node can import from the CommonJS module). */
const TOPIC_RESOURCE = 2;

export class KafkajsBus implements EventBus {
  private readonly kafka: Kafka;
  private producerP: Promise<Producer> | undefined;
  private readonly keyPartitions: KeyPartitions = new Map();
  private readonly consumers = new Set<Consumer>();
  private readonly log: Logger;
  private readonly watchdog: WatchdogMetrics;
  private readonly watches = new Set<ConsumerWatch>();
  private watchTimer: NodeJS.Timeout | undefined;
  private watchAdminP: Promise<Admin> | undefined;

  constructor(
    readonly config: BusConfig,
    readonly codec: AvroCodec,
    logger: Logger,
    registry?: Registry,
  ) {
    this.log = logger.child({ component: 'bus' });
    this.watchdog = watchdogMetrics(registry);
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

  topic(name: TopicName): string {
    return `${this.config.topicPrefix}${name}`;
  }

  async ensureTopics(names: readonly TopicName[] = TOPIC_NAMES): Promise<string[]> {
    return this.admin(async (admin) => {
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
    });
  }

  /** Runs `fn` on a short-lived admin client; its errors become LogmeterErrors (see kafkaError). */
  private async admin<R>(fn: (admin: Admin) => Promise<R>): Promise<R> {
    try {
      return await this.rawAdmin(fn);
    } catch (err) {
      throw kafkaError(err, this.config.brokers);
    }
  }

  private async rawAdmin<R>(fn: (admin: Admin) => Promise<R>): Promise<R> {
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      return await fn(admin);
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Right after a topic is created a partition may not have its leader known everywhere
   * yet (NOT_LEADER_FOR_PARTITION, retriable): retried with jittered backoff for about 10 s.
   */
  async endOffsets(topic: string): Promise<PartitionOffsets[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        const offsets = await this.rawAdmin((a) => a.fetchTopicOffsets(topic));
        return offsets.map((o) => ({ partition: o.partition, low: o.low, high: o.high }));
      } catch (err) {
        // kafkajs' own flag: a broker that stays away (retries exhausted) fails at once.
        if (attempt >= 8 || !isRetriable(err)) throw kafkaError(err, this.config.brokers);
        const delay = Math.min(2000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
        this.log.warn({ topic, attempt, err: errorMessage(err), retryInMs: Math.round(delay) }, 'reading the end offsets failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async committedOffsets(group: string, topic: string): Promise<CommittedOffset[]> {
    const [t] = await this.admin((a) => a.fetchOffsets({ groupId: group, topics: [topic] }));
    return (t?.partitions ?? []).map((p) => ({ partition: p.partition, offset: p.offset }));
  }

  async deleteGroups(groups: readonly string[]): Promise<void> {
    await this.admin((a) => a.deleteGroups([...groups]));
  }

  async topicSettings(topic: string, names: readonly string[]): Promise<Record<string, string>> {
    const res = await this.admin((a) => a.describeConfigs({ includeSynonyms: false, resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: [...names] }] }));
    return Object.fromEntries((res.resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]));
  }

  async ping(): Promise<void> {
    await this.admin((a) => a.describeCluster());
  }

  private producer(): Promise<Producer> {
    this.producerP ??= (async () => {
      const p = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        // A few retries of kafkajs' own (a leader moving, a broker restarting: ~10 s of backoff),
        // then the send fails and its caller retries: the collector's sender with its deadline
        // and backoff, a processor's handler through the bus's delivery retries. Not "until
        // acknowledged": a producer torn down after a stall (resetProducer) would keep retrying
        // its request for ever — its sockets alive, the process unable to exit, and the request
        // landing as a second copy beside the one its replacement sends (issue 13).
        retry: { initialRetryTime: 300, maxRetryTime: 10_000, retries: 5 },
        createPartitioner: () => keyedPartitionerOver(this.keyPartitions),
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

  resetProducer(reason: string): Promise<void> {
    const old = this.producerP;
    this.producerP = undefined;
    if (!old) return Promise.resolve();
    this.log.warn({ reason }, 'tearing down the Kafka producer; a new one connects at the next send');
    // Not waited for: the producer being replaced may be the one that hangs (its connect
    // or its requests time out on their own and close its sockets).
    void old.then((p) => p.disconnect()).catch(() => undefined);
    return Promise.resolve();
  }

  /**
   * Where the producer sent `key`; for a key it has not sent yet (e.g. a producer that never
   * got metadata), where murmur2 puts it among the configured partitions.
   */
  partitionOf(topic: string, key: string): number | undefined {
    const known = this.keyPartitions.get(topic)?.byKey.get(key);
    if (known !== undefined) return known;
    const partitionMetadata = Array.from({ length: this.config.partitions }, (_, partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
    return Partitioners.DefaultPartitioner()({ topic, partitionMetadata, message: { key, value: null } });
  }

  async publish<T extends TopicName>(topic: T, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (messages.length === 0) return;
    const encoded = messages.map((m) => ({ key: m.key ?? naturalKey(topic, m.event), value: this.codec.encode(topic, m.event) }));
    await this.publishRaw(this.topic(topic), encoded);
  }

  publishTombstones(topic: TopicName, keys: readonly string[]): Promise<void> {
    return this.publishRaw(this.topic(topic), keys.map((key) => ({ key, value: null })));
  }

  async publishRaw(topic: string, messages: readonly RawMessage[]): Promise<void> {
    const used = this.producer();
    const producer = await used;
    try {
      await producer.send({
        topic,
        acks: -1,
        compression: this.compression(),
        messages: messages.map((m) => (m.timestamp === undefined ? { key: m.key, value: m.value } : { key: m.key, value: m.value, timestamp: String(m.timestamp) })),
      });
    } catch (err) {
      throw this.sendError(err, used, [{ topic, messages }]);
    } finally {
      this.closeIfReplaced(used, producer);
    }
  }

  async publishRawBatch(batches: readonly RawBatch[]): Promise<void> {
    const used = this.producer();
    const producer = await used;
    try {
      await producer.sendBatch({
        acks: -1,
        compression: this.compression(),
        // kafkajs only reads the messages: passed as they are, not copied (a number
        // timestamp is taken as well as kafkajs' string one).
        topicMessages: batches.map((b) => ({ topic: b.topic, messages: b.messages as Message[] })),
      });
    } catch (err) {
      throw this.sendError(err, used, batches);
    } finally {
      this.closeIfReplaced(used, producer);
    }
  }

  /**
   * A send of a producer torn down meanwhile (resetProducer) has settled: disconnect it again.
   * kafkajs' retries of that send reconnect the client after the first disconnect, and
   * nothing else would close those sockets (they kept a test process alive for minutes).
   */
  private closeIfReplaced(used: Promise<Producer>, producer: Producer): void {
    if (this.producerP !== used) void producer.disconnect().catch(() => undefined);
  }

  /**
   * A send's error. A refusal of the producer's own state (its sequence numbers: a broker
   * restarted after appending a batch whose answer was lost, or that lost it) fails every
   * later send to that partition with kafkajs 2.2.4, which neither retries it nor bumps the
   * producer's epoch: the producer is torn down (the next send gets a new producer id, its
   * sequences from 0) and the error is retriable. The unacknowledged messages may then be
   * stored twice; every consumer of the bus takes them at least once by design.
   */
  private sendError(err: unknown, used: Promise<Producer>, sent: readonly RawBatch[]): LogmeterError {
    const state = producerStateError(err);
    if (state === undefined) return kafkaError(err, this.config.brokers, sent);
    if (this.producerP === used) void this.resetProducer(`the broker refused the producer's state (${state})`);
    return new LogmeterError('kafka_producer_reset', `Kafka (${this.config.brokers.join(',')}): ${errorMessage(err)}; the producer is rebuilt`, { retriable: true, cause: err });
  }

  private compression(): CompressionTypes {
    return this.config.compression === 'none' ? CompressionTypes.None : CompressionTypes.GZIP;
  }

  async subscribe<T extends TopicName>(opts: SubscribeOptions<T>): Promise<Subscription> {
    const groupId = `${this.config.topicPrefix}${opts.group}`;
    const log = this.log.child({ group: groupId });
    const byFullName = new Map(opts.topics.map((t) => [this.topic(t), t] as const));
    const topics = [...byFullName.keys()];
    const initialMs = opts.retry?.initialMs ?? 200;
    const maxMs = opts.retry?.maxMs ?? 30_000;
    let stopping = false;
    /** The consumer running now and what stops its handlers; replaced by each rebuild. */
    let current: { consumer: Consumer; abort: AbortController; membership: Membership } | undefined;
    /** Per topic, the partitions this member was assigned at its last join (none yet: all of them count). */
    let assigned: Record<string, number[]> | undefined;
    let rebuilding: Promise<void> | undefined;
    /** Why the consumer was rebuilt, until the new one has joined its group. */
    let rejoinFor: string | undefined;

    const eachBatch = (consumer: Consumer, abort: AbortController, membership: Membership) => async (payload: EachBatchPayload) => {
      const { batch } = payload;
      const topic = byFullName.get(batch.topic);
      if (!topic || batch.messages.length === 0) return;
      // A partition whose replay position is not set yet is paused; a batch fetched before the pause is not handled.
      if (!membership.started(batch.topic, batch.partition)) return;
      // A replaced consumer still fetching (see GROUP_JOIN): its batches belong to the current
      // one. Its runner may be one kafkajs' disconnect() no longer reaches (see replacedRunnerError):
      // failing the batch makes that runner crash and stop, without a restart.
      if (abort.signal.aborted) {
        void consumer.disconnect().catch(() => undefined);
        throw replacedRunnerError(groupId);
      }
      const heartbeat = () => payload.heartbeat();
      watch.batchStarted();
      let handled = false;
      try {
        await deliver(
          { topic, fullTopic: batch.topic, partition: batch.partition, messages: batch.messages },
          {
            codec: this.codec,
            node: this.config.node,
            group: groupId,
            log,
            handle: opts.handle,
            onTombstone: opts.onTombstone,
            deadLetter: (letters) => this.publish('dlq', letters.map((event) => ({ event }))),
            heartbeat,
            signal: abort.signal,
            initialMs,
            maxMs,
          },
        );
        if (!payload.isRunning() || payload.isStale() || abort.signal.aborted) return;
        const last = batch.messages[batch.messages.length - 1]!;
        const next = BigInt(last.offset) + 1n;
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next.toString() }]);
        // resolveOffset keeps kafkajs' in-memory position in step with the commit.
        payload.resolveOffset(last.offset);
        opts.onCommitted?.(topic, batch.partition, next);
        handled = true;
        await heartbeat();
      } finally {
        watch.batchEnded(handled);
      }
    };

    /** A consumer of the group, connected and running (it joins and reads from the committed offsets). */
    const build = async (fromBeginning: boolean) => {
      // A fetch waits at most 1 s for data (kafkajs: 5 s): a stop waits for the fetch in flight.
      const consumer = this.kafka.consumer({ groupId, allowAutoTopicCreation: false, sessionTimeout: 30000, heartbeatInterval: 3000, maxWaitTimeInMs: 1000 });
      const abort = new AbortController();
      const membership = this.membership(consumer, opts, byFullName, log, () => stopping || abort.signal.aborted);
      // While run() joins, this consumer is not `current` yet; a crash then fails the build.
      let building = true;
      let gaveUp: unknown;
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        if (!building && current?.consumer !== consumer) {
          // A consumer torn down while kafkajs was restarting it (its restart had begun before
          // the disconnect) joins anyway: a member that takes partitions and never commits.
          log.warn({ assigned: e.payload.memberAssignment }, 'a replaced consumer joined its group; disconnecting it');
          // After the join's promise chain: kafkajs' runner counts as running (and its stop()
          // leaves the group) only once the join has resolved.
          setImmediate(() => void consumer.disconnect().catch(() => undefined));
          return;
        }
        assigned = e.payload.memberAssignment;
        if (rejoinFor === undefined) return;
        log.warn({ reason: rejoinFor, assigned }, 'consumer back in its group after a rebuild');
        rejoinFor = undefined;
      });
      consumer.on(consumer.events.CRASH, (e) => {
        const { error, restart } = e.payload;
        if (restart) {
          if (abort.signal.aborted) {
            // A consumer torn down while kafkajs was (re)starting it: kafkajs' disconnect() does
            // not stop a runner that has not joined yet, and that runner's crash restarts it
            // (again and again while no broker answers: an extra member at every restart, that
            // joins when the broker is back). kafkajs schedules the restart right after this
            // event; a disconnect then cancels it (its stop() clears the restart timer).
            log.warn({ err: errorMessage(error) }, 'a replaced consumer crashed; disconnecting it instead of letting its client restart it');
            setImmediate(() => void consumer.disconnect().catch(() => undefined));
            return;
          }
          log.warn({ err: errorMessage(error) }, 'consumer crashed; the client restarts it');
          return;
        }
        if (building) {
          gaveUp = error;
          return;
        }
        // kafkajs gives up on an error it takes as permanent although it is not: a
        // KafkaJSGroupCoordinatorNotFound when no broker answers while the consumer (re)joins,
        // as during a broker restart. Left alone the subscription would be gone for good.
        if (stopping || current?.consumer !== consumer) return;
        log.error({ err: errorMessage(error) }, 'consumer crashed and its client does not restart it; rebuilding the consumer');
        this.watchdog.restarts.inc({ group: groupId, cause: 'crash' });
        void rebuild(`crash: ${errorMessage(error)}`);
      });
      try {
        await consumer.connect();
        await consumer.subscribe({ topics, fromBeginning });
        await consumer.run({ autoCommit: false, partitionsConsumedConcurrently: opts.concurrency ?? 1, eachBatchAutoResolve: false, eachBatch: eachBatch(consumer, abort, membership) });
        building = false;
        // kafkajs' run() resolves after a crash it does not restart from (it was handled by then).
        if (gaveUp !== undefined) throw gaveUp instanceof Error ? gaveUp : new Error(errorMessage(gaveUp));
      } catch (err) {
        building = false;
        await consumer.disconnect().catch(() => undefined);
        throw kafkaError(err, this.config.brokers);
      }
      return { consumer, abort, membership };
    };

    /** Stops `old` without waiting for ever: a consumer being replaced may be the one that hangs. */
    const tearDown = async (old: { consumer: Consumer; abort: AbortController; membership: Membership }) => {
      old.abort.abort();
      // Its partitions are told as revoked now: the new consumer's join gives them again as
      // new (replayed with `replayFrom`), and some may go to another member meanwhile.
      old.membership.leave();
      this.consumers.delete(old.consumer);
      let timer: NodeJS.Timeout | undefined;
      const gone = await Promise.race([
        old.consumer.disconnect().then(
          () => true,
          () => true,
        ),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.config.requestTimeoutMs ?? 30_000))),
      ]);
      clearTimeout(timer);
      if (!gone) log.warn('the old consumer did not stop in time; left to its own timeouts');
    };

    /** Tears the consumer down and builds another, trying until it runs (or the subscription stops). */
    const rebuild = (reason: string): Promise<void> =>
      (rebuilding ??= (async () => {
        const old = current;
        current = undefined;
        assigned = undefined;
        rejoinFor = reason;
        if (old) await tearDown(old);
        for (let attempt = 1; !stopping; attempt++) {
          try {
            // The group has its offsets by now (or starts where a new group does).
            const next = await build(opts.fromBeginning ?? true);
            if (stopping) {
              await tearDown(next);
              return;
            }
            current = next;
            this.consumers.add(next.consumer);
            watch.restarted();
            // kafkajs' run() may resolve before the join (a crash it restarts from): the join is logged apart.
            log.warn({ reason, attempt }, 'consumer rebuilt: rejoining the group from its committed offsets');
            return;
          } catch (err) {
            const delay = Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 16)) * (0.5 + Math.random() / 2);
            log.warn({ err: errorMessage(err), attempt, retryInMs: Math.round(delay) }, 'rebuilding the consumer failed; retrying');
            await new Promise((r) => setTimeout(r, delay));
          }
        }
      })().finally(() => {
        rebuilding = undefined;
      }));

    const watch = new ConsumerWatch({
      group: groupId,
      stallMs: this.config.consumerStallMs ?? 30_000,
      log,
      metrics: this.watchdog,
      lag: () => this.lagOf(groupId, topics, assigned, opts.fromBeginning ?? true),
      rebuild,
    });

    try {
      const fromBeginning = opts.fromTime === undefined ? (opts.fromBeginning ?? true) : await this.seekToTime(groupId, topics, opts.fromTime);
      current = await build(fromBeginning);
    } catch (err) {
      throw kafkaError(err, this.config.brokers);
    }
    this.consumers.add(current.consumer);
    this.watches.add(watch);
    this.startWatchdog();
    log.info({ topics }, 'subscribed');
    const sub: Subscription = {
      group: groupId,
      stop: async () => {
        if (stopping) return;
        stopping = true;
        this.watches.delete(watch);
        await rebuilding;
        const c = current;
        current = undefined;
        if (!c) return;
        c.abort.abort();
        this.consumers.delete(c.consumer);
        await c.consumer.disconnect();
      },
    };
    runningConsumer.set(sub, () => (current ? { consumer: current.consumer, topics } : undefined));
    return sub;
  }

  /**
   * Follows this member's assignment (GROUP_JOIN): tells revocations at once; with
   * `replayFrom`, pauses each partition new to it, seeks it to the first message at or
   * after `replayFrom()` and resumes it only then (so nothing of it is handled from the
   * group's committed position). A join that comes while a previous one's partitions are
   * still being positioned takes them over (they are still paused and not started).
   * `leave()`, when the consumer is torn down to be rebuilt, tells its whole assignment as
   * revoked; a consumer stopped or replaced tells nothing more (a replaced one that kafkajs
   * restarts and that joins again is not this subscription's member).
   */
  private membership<T extends TopicName>(consumer: Consumer, opts: SubscribeOptions<T>, byFullName: ReadonlyMap<string, T>, log: Logger, stopping: () => boolean): Membership {
    const key = (topic: string, partition: number) => `${partition}@${topic}`;
    let assigned = new Map<string, TopicPartition<T> & { full: string }>();
    const started = new Set<string>();
    let joins = 0;
    const tracking = opts.replayFrom !== undefined || opts.onAssigned !== undefined || opts.onRevoked !== undefined;
    if (opts.onRebalancing) consumer.on(consumer.events.REBALANCING, () => {
        if (!stopping()) opts.onRebalancing?.();
      });
    if (!tracking) return { started: () => true, leave: () => undefined };
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (stopping()) return;
      const join = ++joins;
      const now = new Map<string, TopicPartition<T> & { full: string }>();
      for (const [full, partitions] of Object.entries(e.payload.memberAssignment)) {
        const topic = byFullName.get(full);
        if (topic) for (const partition of partitions) now.set(key(full, partition), { topic, partition, full });
      }
      const revoked = [...assigned].filter(([k]) => !now.has(k)).map(([, p]) => ({ topic: p.topic, partition: p.partition }));
      for (const k of started) if (!now.has(k)) started.delete(k);
      assigned = now;
      opts.onRevoked?.(revoked);
      const fresh = [...now].filter(([k]) => !started.has(k)).map(([, p]) => p);
      if (fresh.length === 0) {
        opts.onAssigned?.([]);
        return;
      }
      const byTopic = (ps: readonly { full: string; partition: number }[]) => [...new Set(ps.map((p) => p.full))].map((topic) => ({ topic, partitions: ps.filter((p) => p.full === topic).map((p) => p.partition) }));
      if (opts.replayFrom) consumer.pause(byTopic(fresh));
      const position = async (): Promise<void> => {
        const time = opts.replayFrom?.();
        const out: AssignedPartition<T>[] = [];
        for (const full of new Set(fresh.map((p) => p.full))) {
          const [bounds, byTime] = await this.admin((a) => Promise.all([a.fetchTopicOffsets(full), time === undefined ? Promise.resolve(undefined) : a.fetchTopicOffsetsByTimestamp(full, time)]));
          for (const p of fresh.filter((f) => f.full === full)) {
            const end = BigInt(bounds.find((b) => b.partition === p.partition)?.high ?? '0');
            const at = byTime?.find((b) => b.partition === p.partition)?.offset;
            // Offsets-for-time answers -1 when no message is that recent: start at the end.
            const start = at === undefined ? -1n : BigInt(at) < 0n ? end : BigInt(at);
            out.push({ topic: p.topic, partition: p.partition, start, end });
          }
        }
        if (join !== joins || stopping()) return;
        for (const p of out) {
          const full = this.topic(p.topic);
          if (opts.replayFrom) consumer.seek({ topic: full, partition: p.partition, offset: p.start.toString() });
          started.add(key(full, p.partition));
        }
        opts.onAssigned?.(out);
        if (opts.replayFrom) consumer.resume(byTopic(fresh));
      };
      const attempt = (n: number): void => {
        position().catch((err: unknown) => {
          if (join !== joins || stopping()) return;
          const delay = Math.min(5000, 200 * 2 ** n);
          log.warn({ err: errorMessage(err), retryInMs: delay }, 'positioning newly assigned partitions failed; retrying');
          setTimeout(() => attempt(n + 1), delay).unref();
        });
      };
      attempt(0);
    });
    return {
      started: (topic, partition) => !opts.replayFrom || started.has(key(topic, partition)),
      leave: () => {
        const gone = [...assigned.values()].map((p) => ({ topic: p.topic, partition: p.partition }));
        assigned = new Map();
        started.clear();
        // A positioning under way for the last join does not tell onAssigned any more.
        joins++;
        if (gone.length > 0) opts.onRevoked?.(gone);
      },
    };
  }

  /**
   * End minus committed offset of each partition `groupId` reads (those assigned to this
   * member, or all when it has none). A partition without a commit counts from its start
   * when the group starts at the beginning, and as 0 otherwise (where it starts is unknown).
   */
  private async lagOf(groupId: string, topics: readonly string[], assigned: Record<string, number[]> | undefined, fromBeginning: boolean): Promise<PartitionLag[]> {
    const admin = await this.watchAdmin();
    try {
      const out: PartitionLag[] = [];
      for (const topic of topics) {
        const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId, topics: [topic] })]);
        const mine = assigned ? new Set(assigned[topic] ?? []) : undefined;
        for (const e of ends) {
          if (mine && !mine.has(e.partition)) continue;
          const c = committed?.partitions.find((p) => p.partition === e.partition);
          const at = c && Number(c.offset) >= 0 ? Number(c.offset) : fromBeginning ? Number(e.low) : Number(e.high);
          out.push({ topic, partition: e.partition, lag: Math.max(0, Number(e.high) - at) });
        }
      }
      return out;
    } catch (err) {
      // A fresh admin client at the next look (its connection may be the broken part).
      this.watchAdminP = undefined;
      void admin.disconnect().catch(() => undefined);
      throw err;
    }
  }

  /** One admin client for the watchdog's lag reads (every few seconds per idle subscription). */
  private watchAdmin(): Promise<Admin> {
    this.watchAdminP ??= (async () => {
      const a = this.kafka.admin();
      try {
        await a.connect();
      } catch (err) {
        this.watchAdminP = undefined;
        throw err;
      }
      return a;
    })();
    return this.watchAdminP;
  }

  /** Ticks every watched subscription (every `consumerStallMs` / 6, at most 5 s apart). */
  private startWatchdog(): void {
    const stallMs = this.config.consumerStallMs ?? 30_000;
    if (this.watchTimer || stallMs <= 0) return;
    this.watchTimer = setInterval(() => {
      for (const w of this.watches) void w.tick();
    }, Math.max(100, Math.min(5000, stallMs / 6)));
    this.watchTimer.unref();
  }

  /** The stalls being recovered from, one per subscription (for `/healthz`). */
  consumerStalls(): ConsumerStall[] {
    return [...this.watches].flatMap((w) => (w.stall ? [w.stall] : []));
  }

  /**
   * Sets a new group's offsets to the first message at or after `time` (offsets-for-time)
   * and says whether the group should rather start from the beginning: when `time` is
   * before every partition's first message, nothing is set (kafkajs' setOffsets joins the
   * group and waits for one fetch: a few seconds saved on every start of a young topic).
   */
  private async seekToTime(groupId: string, topics: readonly string[], time: number): Promise<boolean> {
    return this.admin(async (a) => {
      const seeks = await Promise.all(
        topics.map(async (topic) => {
          const [byTime, bounds] = await Promise.all([a.fetchTopicOffsetsByTimestamp(topic, time), a.fetchTopicOffsets(topic)]);
          return { topic, byTime, atStart: byTime.every((p) => p.offset === bounds.find((b) => b.partition === p.partition)?.low) };
        }),
      );
      if (seeks.every((s) => s.atStart)) return true;
      // Every partition gets its offset here; one created later starts at its end.
      for (const s of seeks) await a.setOffsets({ groupId, topic: s.topic, partitions: s.byTime });
      return false;
    });
  }

  readToEnd<T extends TopicName>(opts: ReadToEndOptions<T>): Promise<TopicReader> {
    return readToEnd(this, this.log, opts);
  }

  async close(): Promise<void> {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    this.watches.clear();
    const admin = this.watchAdminP;
    this.watchAdminP = undefined;
    await admin?.then((a) => a.disconnect()).catch(() => undefined);
    await Promise.all([...this.consumers].map((c) => c.disconnect().catch(() => undefined)));
    this.consumers.clear();
    if (this.producerP) {
      const p = await this.producerP.catch(() => undefined);
      this.producerP = undefined;
      await p?.disconnect().catch(() => undefined);
    }
  }
}

/**
 * A kafkajs error as a LogmeterError whose `retriable` says whether trying again can help:
 * - a message over the size limit never passes: `kafka_message_too_large`, not retriable,
 *   naming the topic and the size, so the producer's owner can act;
 * - a broker that cannot be reached, or kafkajs giving up after its own retries
 *   (KafkaJSNumberOfRetriesExceeded, which kafkajs marks non-retriable although its cause,
 *   a broker away or a leader moving, may well pass later): `kafka_unreachable`, retriable;
 * - anything else: `kafka_error` with kafkajs' own `retriable` flag (retriable when absent).
 */
export function kafkaError(err: unknown, brokers: string[], sent?: readonly RawBatch[]): LogmeterError {
  if (err instanceof LogmeterError) return err;
  const retriable = typeof err === 'object' && err !== null && 'retriable' in err ? Boolean(err.retriable) : true;
  if (sent && causes(err).some((e) => (e as { type?: unknown }).type === 'MESSAGE_TOO_LARGE')) {
    const sizes = sent.flatMap((b) => b.messages.map((m) => ({ topic: b.topic, bytes: (m.value?.length ?? 0) + (m.key?.length ?? 0) })));
    const largest = sizes.reduce((a, b) => (b.bytes > a.bytes ? b : a), { topic: '', bytes: 0 });
    return new LogmeterError('kafka_message_too_large', `Kafka (${brokers.join(',')}): ${sizes.length} message(s) refused as too large; the largest is ${largest.bytes} bytes, for ${largest.topic} (over the broker's message.max.bytes or the topic's max.message.bytes): ${errorMessage(err)}`, { retriable: false, cause: err });
  }
  // kafkajs wraps a broker away (a connection refused, a lock or metadata timeout during a
  // restart) in its non-retriable errors: the whole cause chain says what it was.
  const away = causes(err).some((e) => /Connection|Timeout|Broker|NumberOfRetriesExceeded|Metadata|Coordinator/.test(e instanceof Error ? e.name : ''));
  const code = away ? 'kafka_unreachable' : 'kafka_error';
  return new LogmeterError(code, `Kafka (${brokers.join(',')}): ${errorMessage(err)}`, { retriable: retriable || code === 'kafka_unreachable', cause: err });
}

/** Kafka's refusals of an idempotent producer's state, which only a new producer gets past. */
const PRODUCER_STATE_ERRORS = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH']);

/** The refusal of the producer's state in `err`'s cause chain (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER), if any. */
export function producerStateError(err: unknown): string | undefined {
  return causes(err)
    .map((e) => (e as { type?: unknown }).type)
    .find((t): t is string => typeof t === 'string' && PRODUCER_STATE_ERRORS.has(t));
}

/** The error and the errors it wraps (kafkajs wraps a refusal in its retry errors). */
function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err; typeof e === 'object' && e !== null && out.length < 10; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

/** A kafkajs logCreator writing through `logger` (kafkajs' own level is mapped to pino's). */
function kafkaLogCreator(logger: Logger): logCreator {
  return () =>
    ({ level, log }) => {
      const { message, timestamp: _timestamp, logger: source, ...extra } = log as { message: string; timestamp?: unknown; logger?: unknown; [k: string]: unknown };
      const fields = { kafka: source, ...extra };
      switch (level) {
        case logLevel.ERROR:
        case logLevel.NOTHING:
          logger.error(fields, message);
          break;
        case logLevel.WARN:
          logger.warn(fields, message);
          break;
        case logLevel.INFO:
          logger.info(fields, message);
          break;
        default:
          logger.debug(fields, message);
      }
    };
}

/** kafkajs level matching a pino level, so kafkajs does not format lines pino would drop. */
function kafkaLevel(logger: Logger): logLevel {
  switch (logger.level) {
    case 'trace':
    case 'debug':
      return logLevel.DEBUG;
    case 'info':
      return logLevel.INFO;
    case 'warn':
      return logLevel.WARN;
    case 'silent':
      return logLevel.NOTHING;
    default:
      return logLevel.ERROR;
  }
}

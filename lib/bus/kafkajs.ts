/**
 * The event bus over kafkajs: with its kafkajs-*.ts parts, the only code that knows
 * kafkajs (kafkajs-fixes.ts must load first). The guarantees are those of bus.ts; what each batch goes
 * through before its commit is delivery.ts, shared with any other adapter.
 *
 * kafkajs specifics kept here:
 * - one idempotent producer per bus (kafkajs-producer.ts: acks from all in-sync replicas,
 *   one request in flight, sends of at most 768 KiB), with a few retries of kafkajs' own
 *   before its caller retries; the collector's keys are partitioned with a remembered
 *   murmur2 (kafkajs-partitioner.ts);
 * - a consumer per subscription, `autoCommit` off, offsets committed after each part of
 *   a batch (delivery.ts); its lag read for the watchdog by kafkajs-lag.ts;
 *   watched (watchdog.ts) and rebuilt when it stalls or when kafkajs gives up on it
 *   after a crash (a CRASH event with `restart: false`);
 * - admin requests on a short-lived admin client each (they are rare);
 * - kafkajs' logs go through pino (its `logCreator`), at the logger's level;
 * - fetched gzip batches inflated in one output chunk of their size (kafkajs-gzip.ts).
 */
import './kafkajs-fixes.js';
import './kafkajs-gzip.js';
import './kafkajs-snappy.js';
import { Kafka, type Admin, type Consumer, type EachBatchPayload, type ITopicConfig } from 'kafkajs';
import type { Logger } from '../logger.js';
import { errorMessage, isRetriable } from '../errors.js';
import type { AvroCodec } from '../../schemas/codec.js';
import { TOPIC_NAMES, type EventMap, type TopicName } from '../../schemas/events.js';
import {
  naturalKey,
  topicConfig,
  type BusConfig,
  type CommittedOffset,
  type EventBus,
  type OutgoingMessage,
  type PartitionOffsets,
  type PublishRawOptions,
  type RawBatch,
  type RawMessage,
  type ReadToEndOptions,
  type SubscribeOptions,
  type Subscription,
  type TopicReader,
} from './bus.js';
import { deliver } from './delivery.js';
import { KafkajsDeferrals } from './kafkajs-deferral.js';
import { KafkajsProducer } from './kafkajs-producer.js';
import { KafkajsLagReader } from './kafkajs-lag.js';
import { followMembership, seekToTime, type Membership } from './kafkajs-membership.js';
import { kafkaError, producerStateError } from './kafkajs-errors.js';
import { kafkaLevel, kafkaLogCreator } from './kafkajs-logging.js';
import { keyedPartitioner, partitionForKey } from './kafkajs-partitioner.js';
import { ConsumerWatch, watchdogMetrics, type ConsumerStall, type WatchdogMetrics } from './watchdog.js';
import type { Registry } from '../metrics.js';
import { readToEnd } from './read-to-end.js';

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

/** kafkajs' ConfigResourceTypes.TOPIC (its enum is not among the names Node can import from the CommonJS module). */
const TOPIC_RESOURCE = 2;

export class KafkajsBus implements EventBus {
  private readonly kafka: Kafka;
  private readonly producer: KafkajsProducer;
  private readonly consumers = new Set<Consumer>();
  private readonly log: Logger;
  private readonly watchdog: WatchdogMetrics;
  private readonly watches = new Set<ConsumerWatch>();
  private watchTimer: NodeJS.Timeout | undefined;
  private readonly lags: KafkajsLagReader;

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
    this.lags = new KafkajsLagReader(this.kafka);
    this.producer = new KafkajsProducer(this.kafka, this.log, config.brokers, config.partitions, config.compression, config.compressionLevel);
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
        // Not kafkajs' waitForLeaders: it retries only LEADER_NOT_AVAILABLE, and a KRaft
        // broker whose metadata has not caught up with the creation answers
        // UNKNOWN_TOPIC_OR_PARTITION for a moment (a test's before hook failed on it).
        await admin.createTopics({ topics, waitForLeaders: false });
        // Wait until every new topic answers an offset request (unknown or "not the leader"
        // for a moment after the creation, under load for seconds).
        const until = Date.now() + 30_000;
        for (const t of topics) {
          for (;;) {
            try {
              await admin.fetchTopicOffsets(t.topic);
              break;
            } catch (err) {
              if (Date.now() > until || !isRetriable(err)) throw err;
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

  resetProducer(reason: string): Promise<void> {
    return this.producer.reset(reason);
  }

  partitionOf(topic: string, key: string): number | undefined {
    return this.producer.partitionOf(topic, key);
  }

  partitionForKey(key: string, partitions: number): number {
    return partitionForKey(key, partitions);
  }

  async publish<T extends TopicName>(topic: T, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (messages.length === 0) return;
    const encoded = messages.map((m) => ({ key: m.key ?? naturalKey(topic, m.event), value: this.codec.encode(topic, m.event) }));
    await this.publishRaw(this.topic(topic), encoded);
  }

  publishTombstones(topic: TopicName, keys: readonly string[]): Promise<void> {
    return this.publishRaw(this.topic(topic), keys.map((key) => ({ key, value: null })));
  }

  publishRaw(topic: string, messages: readonly RawMessage[], opts?: PublishRawOptions): Promise<void> {
    return this.producer.publishRaw(topic, messages, opts?.pack === true);
  }

  publishRawBatch(batches: readonly RawBatch[]): Promise<void> {
    return this.producer.publishRawBatch(batches);
  }

  async subscribe<T extends TopicName, E = EventMap[T]>(opts: SubscribeOptions<T, E>): Promise<Subscription> {
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
    // Commits that trail their handlers (deferCommit): on the consumer of the moment (kafkajs-deferral.ts).
    const deferred = new KafkajsDeferrals({ current: () => current, stopping: () => stopping, rebuild: (why) => void rebuild(why), byFullName, onCommitted: (t, p, next) => opts.onCommitted?.(t, p, next), maxMessages: opts.maxDeferredMessages ?? 100_000, log });

    const eachBatch = (consumer: Consumer, abort: AbortController, membership: Membership) => async (payload: EachBatchPayload) => {
      const { batch } = payload;
      const topic = byFullName.get(batch.topic);
      // A stop drains (kafkajs-deferral.ts): a batch fetched meanwhile is left for the next start.
      if (!topic || batch.messages.length === 0 || stopping) return;
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
        handled = await deferred.track(deliver(
          { topic, fullTopic: batch.topic, partition: batch.partition, messages: batch.messages },
          {
            codec: this.codec,
            decode: opts.decode,
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
            deferral: deferred.forBatch(payload, abort.signal),
          },
          (lastOffset) => deferred.commitNow(consumer, payload, abort.signal, lastOffset),
        ));
      } finally {
        watch.batchEnded(handled);
      }
    };

    /** A consumer of the group, connected and running (it joins and reads from the committed offsets). */
    const build = async (fromBeginning: boolean) => {
      // A fetch waits at most 1 s for data (kafkajs: 5 s): a stop waits for the fetch in flight.
      const sessionTimeout = this.config.sessionTimeoutMs ?? 30000;
      // Heartbeats at a third of the session timeout at most, as Kafka advises.
      const consumer = this.kafka.consumer({ groupId, allowAutoTopicCreation: false, sessionTimeout, heartbeatInterval: Math.min(3000, Math.floor(sessionTimeout / 3)), maxWaitTimeInMs: 1000 });
      const abort = new AbortController();
      const membership = followMembership(consumer, opts, byFullName, log, () => stopping || abort.signal.aborted, { admin: (fn) => this.admin(fn), topic: (name) => this.topic(name) });
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
        // Revoked partitions: their deferred commits are the new owner's to make.
        deferred.commits.retain(assigned);
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
        deferred.commits.reset();
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
      lag: () => this.lags.lagOf(groupId, topics, assigned, opts.fromBeginning ?? true),
      rebuild,
    });

    try {
      const fromBeginning = opts.fromTime === undefined ? (opts.fromBeginning ?? true) : await seekToTime({ admin: (fn) => this.admin(fn), topic: (name) => this.topic(name) }, groupId, topics, opts.fromTime, this.log);
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
        // The work queued and its commits first (as long as a consumer's teardown may take).
        if (c) await deferred.drain(c.consumer, topics, this.config.requestTimeoutMs ?? 30_000);
        deferred.commits.reset();
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

  readToEnd<T extends TopicName>(opts: ReadToEndOptions<T>): Promise<TopicReader> {
    return readToEnd(this, this.log, opts);
  }

  async close(): Promise<void> {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    this.watches.clear();
    await this.lags.close();
    await Promise.all([...this.consumers].map((c) => c.disconnect().catch(() => undefined)));
    this.consumers.clear();
    await this.producer.close();
  }
}

export { keyedPartitioner, kafkaError, producerStateError };

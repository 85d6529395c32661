/**
 * The bus's producer over kafkajs (used by kafkajs.ts): one idempotent producer per bus
 * (acks from all in-sync replicas, one request in flight), built at the first send and
 * rebuilt after a teardown (`reset`); every publish in sends of at most SEND_MAX_BYTES,
 * one after the other (chunks.ts); the collector's keys partitioned with a remembered
 * murmur2 (kafkajs-partitioner.ts); send errors classified (kafkajs-errors.ts); the
 * messages of a topic published with `pack` packed per key into shared records within each
 * send (pack.ts), so a send's messages are stored, or not, together with their records;
 * gzip at the configured zlib level (kafkajs-gzip.ts), gzip on the wire whatever the level.
 */
import { CompressionTypes, type Kafka, type Message, type Producer } from 'kafkajs';
import type { Logger } from '../logger.js';
import { LogmeterError, errorMessage } from '../errors.js';
import type { RawBatch, RawMessage } from './bus.js';
import { batchSendsOf, markStored, sendsOf } from './chunks.js';
import { packRecordsLazily } from './pack.js';
import { gzipCompression } from './kafkajs-gzip.js';
import { GZIP_LEVEL_DEFAULT } from '../config.js';
import { kafkaError, producerStateError } from './kafkajs-errors.js';
import { keyedPartitionerOver, partitionForKey, type KeyPartitions } from './kafkajs-partitioner.js';

export class KafkajsProducer {
  private producerP: Promise<Producer> | undefined;
  private readonly keyPartitions: KeyPartitions = new Map();
  /** kafkajs' compression value of every send: none, snappy (kafkajs-snappy.ts), or gzip at the configured level (kafkajs-gzip.ts). */
  readonly compression: CompressionTypes;

  constructor(
    private readonly kafka: Kafka,
    private readonly log: Logger,
    private readonly brokers: string[],
    /** Configured partitions per topic (for `partitionOf` before any metadata). */
    private readonly partitions: number,
    compressionSetting: 'gzip' | 'snappy' | 'none' | undefined,
    compressionLevel: number = GZIP_LEVEL_DEFAULT,
  ) {
    this.compression = compressionSetting === 'none' ? CompressionTypes.None : compressionSetting === 'gzip' ? gzipCompression(compressionLevel) : CompressionTypes.Snappy;
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
        throw kafkaError(err, this.brokers);
      }
      return p;
    })();
    return this.producerP;
  }

  reset(reason: string): Promise<void> {
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
    return partitionForKey(key, this.partitions);
  }

  publishRaw(topic: string, messages: readonly RawMessage[], pack = false): Promise<void> {
    return this.sendInTurn(sendsOf(messages).map((run) => [pack ? { topic, messages: run, pack } : { topic, messages: run }]));
  }

  publishRawBatch(batches: readonly RawBatch[]): Promise<void> {
    return this.sendInTurn(batchSendsOf(batches));
  }

  /**
   * Sends of at most SEND_MAX_BYTES each (chunks.ts), one after the other: each partition
   * gets its messages in order (one request in flight). A send that fails ends the publish;
   * the sends before it are stored (the error names them: chunks.ts' storedBefore), and a
   * caller that retries the whole publish sends them again (at-least-once).
   */
  private async sendInTurn(sends: readonly RawBatch[][]): Promise<void> {
    const stored = new Set<RawMessage>();
    for (const batches of sends) {
      // Asked for each send: a send that failed may have replaced the producer (sendError).
      const used = this.producer();
      const producer = await used;
      try {
        await producer.sendBatch({
          acks: -1,
          compression: this.compression,
          // kafkajs only reads the messages: passed as they are, not copied (a number
          // timestamp is taken as well as kafkajs' string one). Packed after the split into
          // sends (by the messages' bytes, which a pack only makes smaller), so `stored`
          // below names the messages themselves, as the sender's isolation needs. Packed
          // values go as PackedFrames: the request encoder (kafkajs-encoding.ts) copies their
          // frames straight into the batch.
          topicMessages: batches.map((b) => ({ topic: b.topic, messages: (b.pack ? packRecordsLazily(b.messages) : b.messages) as Message[] })),
        });
        if (sends.length > 1) for (const b of batches) for (const m of b.messages) stored.add(m);
      } catch (err) {
        const failed = this.sendError(err, used, batches);
        markStored(failed, stored);
        throw failed;
      } finally {
        this.closeIfReplaced(used, producer);
      }
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
    if (state === undefined) return kafkaError(err, this.brokers, sent);
    if (this.producerP === used) void this.reset(`the broker refused the producer's state (${state})`);
    return new LogmeterError('kafka_producer_reset', `Kafka (${this.brokers.join(',')}): ${errorMessage(err)}; the producer is rebuilt`, { retriable: true, cause: err });
  }

  /** Disconnects the producer (at the bus's close). */
  async close(): Promise<void> {
    const p = await this.producerP?.catch(() => undefined);
    this.producerP = undefined;
    await p?.disconnect().catch(() => undefined);
  }
}

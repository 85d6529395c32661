/**
 * The collector's way to Kafka: batches by bytes and time, one request in flight (so a
 * container's lines keep their order even when a request is retried), and a bound on
 * the bytes held in memory. Readers await `capacity()` before reading more from Docker:
 * when Kafka is slow or down the collector stops reading (Docker keeps the logs) and
 * resumes when the acknowledgements come back. `onAck` runs only after Kafka
 * acknowledged the message (acks from all in-sync replicas).
 */
import type { Logger } from '../lib/logger.js';
import { errorMessage } from '../lib/errors.js';

/** Told of acknowledgements by number: one object per log stream instead of a closure per line. */
export interface AckTarget {
  produced(n: number): void;
}

export interface Outgoing {
  topic: string;
  key: string;
  value: Buffer;
  onAck?: (() => void) | undefined;
  /** With `n`: `ackTarget.produced(n)` runs after the acknowledgement (after `onAck`, if both are set). */
  ackTarget?: AckTarget | undefined;
  n?: number;
}

export type PublishBatch = (batches: { topic: string; messages: Outgoing[] }[]) => Promise<void>;

export interface SenderOptions {
  batchBytes: number;
  lingerMs: number;
  maxBufferedBytes: number;
  /** Called after each failed send, before the retry. */
  onError?: (err: unknown) => void;
  onSent?: (messages: number, bytes: number) => void;
}

export class Sender {
  /** Waiting messages are `queue[head..]`; the consumed front is dropped now and then, not per batch. */
  private queue: Outgoing[] = [];
  private head = 0;
  private queuedBytes = 0;
  private inFlightBytes = 0;
  private peak = 0;
  private waiters: Array<() => void> = [];
  private flushWaiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private closed = false;

  constructor(
    private readonly publish: PublishBatch,
    private readonly opts: SenderOptions,
    private readonly log: Logger,
  ) {}

  /** Bytes waiting or in flight. */
  get buffered(): number {
    return this.queuedBytes + this.inFlightBytes;
  }

  /** True when readers should wait for `capacity()`. */
  get full(): boolean {
    return this.buffered >= this.opts.maxBufferedBytes;
  }

  /** Highest `buffered` seen. */
  get peakBuffered(): number {
    return this.peak;
  }

  enqueue(o: Outgoing): void {
    if (this.closed) throw new Error('sender closed');
    this.queue.push(o);
    this.queuedBytes += o.value.length;
    if (this.buffered > this.peak) this.peak = this.buffered;
    if (this.queuedBytes >= this.opts.batchBytes) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.opts.lingerMs);
  }

  /** Resolves once the buffer is below its bound. */
  capacity(): Promise<void> {
    if (this.buffered < this.opts.maxBufferedBytes) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /** Sends everything queued and waits for its acknowledgement. */
  flush(): Promise<void> {
    if (this.queue.length === this.head && !this.sending) return Promise.resolve();
    const p = new Promise<void>((r) => this.flushWaiters.push(r));
    this.kick();
    return p;
  }

  /**
   * Sends what is queued and waits up to `timeoutMs` for the acknowledgements. What is
   * not acknowledged by then stays unacknowledged: its checkpoints do not move, so it is
   * read again at the next start (nothing is lost; a stop never hangs on a dead broker).
   */
  async close(timeoutMs = 15_000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const acked = await Promise.race([
      this.flush().then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (!acked) this.log.warn({ bufferedBytes: this.buffered }, 'stopping with events not acknowledged by Kafka; they will be read again at the next start');
    return acked;
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.sending) void this.loop();
  }

  private async loop(): Promise<void> {
    this.sending = true;
    let attempt = 0;
    while (this.queue.length > this.head) {
      // Take up to one batch's worth (at least one message).
      let bytes = 0;
      let end = this.head;
      while (end < this.queue.length && (end === this.head || bytes + this.queue[end]!.value.length <= this.opts.batchBytes)) bytes += this.queue[end++]!.value.length;
      const batch = this.queue.slice(this.head, end);
      this.head = end;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      } else if (this.head > 65_536 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      this.queuedBytes -= bytes;
      this.inFlightBytes += bytes;
      const byTopic = new Map<string, Outgoing[]>();
      for (const m of batch) {
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        list.push(m);
      }
      for (;;) {
        try {
          await this.publish([...byTopic].map(([topic, messages]) => ({ topic, messages })));
          attempt = 0;
          break;
        } catch (err) {
          attempt++;
          this.opts.onError?.(err);
          const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
          this.log.warn({ err: errorMessage(err), attempt, messages: batch.length, retryInMs: Math.round(delay) }, 'Kafka send failed; retrying');
          await new Promise((r) => setTimeout(r, delay));
        }
      }
      this.inFlightBytes -= bytes;
      this.opts.onSent?.(batch.length, bytes);
      for (const m of batch) {
        m.onAck?.();
        m.ackTarget?.produced(m.n!);
      }
      this.release();
    }
    this.sending = false;
    const fw = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of fw) w();
  }

  private release(): void {
    if (this.buffered >= this.opts.maxBufferedBytes) return;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

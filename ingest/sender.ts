/**
 * The collector's way to Kafka: batches by bytes and time, one request in flight (so a
 * container's lines keep their order even when a request is retried), and a bound on
 * the bytes held in memory. Readers await `capacity()` before reading more from Docker:
 * when Kafka is slow or down the collector stops reading (Docker keeps the logs) and
 * resumes when the acknowledgements come back. `onAck` runs only after Kafka
 * acknowledged the message (acks from all in-sync replicas).
 *
 * Retry policy. An error that may pass (broker down, leader moving, a timeout: kafkajs'
 * `retriable`, see lib/errors.ts `isRetriable`) is retried with jittered exponential
 * backoff, a log line per attempt, for as long as it takes: nothing is dropped because
 * Kafka was away. An error that can never pass for this batch (a record over the topic's
 * `max.message.bytes`) is not retried as it is: the batch is sent again one message at a
 * time, in order, so that only the message(s) Kafka refuses are set aside. Each refused
 * one is logged with the reason, counted (`onRejected`), dead-lettered when a
 * `deadLetter` is given (the letter is sent under the same policy; a letter refused in
 * turn is logged and counted, never dead-lettered again), and then accounted for
 * (`ackTarget.rejected`), so the queue and the readers' checkpoints go on.
 *
 * No request waits for ever (issue 13: after a broker restart a produce request could be
 * left hanging, and with one request in flight the collector then stopped without a
 * word). Each attempt has a deadline (`requestTimeoutMs`): one not answered by then is
 * abandoned, the producer is torn down and rebuilt (`resetProducer`), and the batch is
 * sent again. The abandoned request may still land: its lines are then in Kafka twice
 * with the same event ids, which downstream removes (at-least-once, as after a crash).
 * On top of that, a watchdog (`stallMs`): when events are buffered and nothing has been
 * acknowledged for that long, the sender logs an error naming the topic, partition and
 * in-flight request, reports it (`onStall`, `stalled`), and rebuilds the producer the
 * same way. Every recovery (an acknowledgement after failures) is logged.
 */
import type { Logger } from '../lib/logger.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { FairQueue } from './fair-queue.js';
import type { CloseReport, InFlight, Outgoing, PublishBatch, SenderOptions, Stall } from './sender-types.js';
import { isPermanentSendError, permanent } from './send-errors.js';
import { storedBefore } from '../lib/bus/chunks.js';

export { isPermanentSendError, rejectedLetter } from './send-errors.js';
export type { AckTarget, CloseReport, InFlight, Outgoing, PublishBatch, SenderOptions, Stall } from './sender-types.js';

/**
 * What a buffered event costs beyond its encoded bytes, charged against `maxBufferedBytes`
 * (issue 19): its objects on the V8 heap (the Outgoing event, its Buffer view, its slot in
 * a lane). Measured at full speed with a full GC every 500 ms (bench/memory-full-speed.ts
 * `--live-every-ms`): ~200 B of live heap per buffered event (226k events, +44 MiB), and
 * RSS grows by ~516 B per buffered event of ~296 B (BENCHMARKS.md). Before, only the bytes
 * were counted and 64 MiB of them held ~560k events (+223 MiB of heap).
 */
export const EVENT_OVERHEAD_BYTES = 256;

/** A send answered after this long is logged as a recovery (ms). */
const SLOW_SEND_MS = 2000;

/** Thrown into an abandoned attempt. */
class Abandoned extends LogmeterError {}

/** What sendRetrying gives back when the sender was closed before Kafka answered. */
const CLOSED = Symbol('closed');

export class Sender {
  /** Waiting messages, taken tenant by tenant in turn (see fair-queue.ts). */
  private readonly queue: FairQueue<Outgoing>;
  /** Value bytes queued (a batch is sent once they fill one). */
  private queuedBytes = 0;
  /** Bytes charged for the batch in flight (values and per-event overhead). */
  private inFlightBytes = 0;
  private inFlightEvents = 0;
  /** Bytes waiting readers hold of their sources, outside the queue (hold()). */
  private heldTotal = 0;
  private peak = 0;
  private waiters: Array<{ tenant: string | undefined; resume: () => void }> = [];
  private flushWaiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private closed = false;
  /** The send loop, while it runs (close() waits for it). */
  private looping: Promise<void> | undefined;
  /** Ends the backoff before a retry early (close). */
  private wakeRetry: (() => void) | undefined;
  private inFlight: InFlight | undefined;
  /** Rejects the current attempt (deadline or watchdog). */
  private abandon: ((err: Abandoned) => void) | undefined;
  private maxAge = 0;
  /** Last acknowledgement, or when events started waiting with none in the buffer. */
  private progressAt = Date.now();
  private stall: Stall | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly publish: PublishBatch,
    private readonly opts: SenderOptions,
    private readonly log: Logger,
  ) {
    // Many turns per batch (16 KiB of 512 KiB by default): a tenant with something queued is in the next batch.
    this.queue = new FairQueue<Outgoing>(Math.max(1, Math.min(16 * 1024, Math.floor(opts.batchBytes / 32))), opts.eventOverheadBytes ?? EVENT_OVERHEAD_BYTES);
  }

  /** Bytes charged for the events waiting or in flight: their values and the per-event overhead (what the bound counts). */
  get buffered(): number {
    return this.queue.bytes + this.inFlightBytes;
  }

  /** Events waiting or in flight. */
  get bufferedEvents(): number {
    return this.queue.length + this.inFlightEvents;
  }

  /**
   * Bytes charged for what waiting readers hold of their sources (hold()), at most half the
   * bound in total, so held bytes alone never keep every reader out.
   */
  get held(): number {
    return Math.min(this.heldTotal, this.opts.maxBufferedBytes / 2);
  }

  /**
   * A reader waiting for room charges (`bytes` > 0) or releases (< 0) what it holds of its
   * source meanwhile (issue 19: 200 waiting followers hold tens of MiB of Docker stream).
   * Only waiting readers charge, so the first wait still comes at a full buffer. A release
   * may let other waiting readers go on.
   */
  hold(bytes: number): void {
    this.heldTotal += bytes;
    if (bytes < 0) this.release();
  }

  /** True when readers should wait for `capacity()`: the buffered events and the held bytes (`held`) reach the bound. */
  get full(): boolean {
    return this.buffered + this.held >= this.opts.maxBufferedBytes;
  }

  /**
   * True when a reader of `tenant` should wait for `capacity(tenant)`: the buffer is full
   * and this tenant holds at least its share of it, so a flood that filled it does not
   * stop the other tenants' readers.
   */
  fullFor(tenant: string | undefined): boolean {
    // Shares of what may wait (the bound less what is in flight and held), so a tenant alone waits exactly when `full`.
    return this.full && this.queue.overShare(tenant, this.opts.maxBufferedBytes - this.inFlightBytes - this.held);
  }

  /** Highest `buffered` seen. */
  get peakBuffered(): number {
    return this.peak;
  }

  /** The request being waited for, if any. */
  get current(): InFlight | undefined {
    return this.inFlight;
  }

  /** How long the current attempt has waited for Kafka (0 when none is in flight). */
  inFlightAgeMs(now = Date.now()): number {
    return this.inFlight ? Math.max(0, now - this.inFlight.since) : 0;
  }

  /** Longest any attempt waited for Kafka's answer so far (answered, failed or abandoned). */
  get maxInFlightAgeMs(): number {
    return Math.max(this.maxAge, this.inFlightAgeMs());
  }

  /** The stall the watchdog found, until Kafka acknowledges again. */
  get stalled(): Stall | undefined {
    return this.stall;
  }

  enqueue(o: Outgoing): void {
    if (this.closed) throw new Error('sender closed');
    if (this.buffered === 0) this.progressAt = Date.now();
    this.startWatchdog();
    this.queue.push(o);
    this.queuedBytes += o.value.length;
    if (this.buffered > this.peak) this.peak = this.buffered;
    if (this.queuedBytes >= this.opts.batchBytes) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.opts.lingerMs);
  }

  /** Resolves once the buffer is below its bound (with `tenant`: once `fullFor(tenant)` is false). */
  capacity(tenant?: string): Promise<void> {
    if (tenant === undefined ? !this.full : !this.fullFor(tenant)) return Promise.resolve();
    return new Promise((resume) => this.waiters.push({ tenant, resume }));
  }

  /** Sends everything queued and waits for its acknowledgement. */
  flush(): Promise<void> {
    if ((this.queue.length === 0 && !this.sending) || this.closed) return Promise.resolve();
    const p = new Promise<void>((r) => this.flushWaiters.push(r));
    this.kick();
    return p;
  }

  /**
   * Sends what is queued and waits up to `timeoutMs` for the acknowledgements. What is
   * not acknowledged by then stays unacknowledged: its checkpoints do not move, so it is
   * read again at the next start (nothing is lost; a stop never hangs on a dead broker).
   * Past the deadline the request in flight is abandoned and nothing is retried any more;
   * readers still waiting for room are woken. Resolves once the send loop has ended.
   */
  async close(timeoutMs = 15_000): Promise<CloseReport> {
    let timer: NodeJS.Timeout | undefined;
    const acked = await Promise.race([
      this.flush().then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    // No retry after close: the attempt in flight and a backoff are cut short.
    this.abandon?.(new Abandoned('sender_closed', 'the sender was closed before Kafka answered', { retriable: true }));
    this.wakeRetry?.();
    await this.looping;
    const report: CloseReport = { acked, unsentEvents: this.bufferedEvents, unsentBytes: this.buffered };
    for (const w of this.waiters) w.resume();
    this.waiters = [];
    if (report.unsentEvents > 0) this.log.warn(report, `stopping with ${report.unsentEvents} events (${report.unsentBytes} bytes) not acknowledged by Kafka; they will be read again at the next start`);
    return report;
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.sending && !this.closed) this.looping = this.loop();
  }

  private async loop(): Promise<void> {
    this.sending = true;
    while (this.queue.length > 0 && !this.closed) {
      // Up to one batch's worth (at least one message), tenants in turn.
      const batch = this.queue.take(this.opts.batchBytes);
      let bytes = 0;
      for (const m of batch) bytes += m.value.length;
      const charged = bytes + batch.length * this.queue.eventOverheadBytes;
      this.queuedBytes -= bytes;
      this.inFlightBytes += charged;
      this.inFlightEvents += batch.length;
      const byTopic = new Map<string, Outgoing[]>();
      for (const m of batch) {
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        list.push(m);
      }
      const err = await this.sendRetrying(byTopic, batch.length);
      // Closed before Kafka answered: the batch stays counted in flight, as not acknowledged (close() reports it).
      if (err === CLOSED) break;
      // Refused for good: acknowledged one by one as they go through, while still counted in flight.
      const settled = err ? await this.isolate(batch, err) : batch.length;
      const gone = settled === batch.length ? charged : batch.slice(0, settled).reduce((n, m) => n + m.value.length + this.queue.eventOverheadBytes, 0);
      this.inFlightBytes -= gone;
      this.inFlightEvents -= settled;
      this.opts.onSent?.(settled, bytes);
      if (!err) {
        for (const m of batch) {
          m.onAck?.();
          m.ackTarget?.produced(m.n!);
        }
      }
      this.release();
      if (settled < batch.length) break;
    }
    this.sending = false;
    this.looping = undefined;
    const fw = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of fw) w();
  }

  /**
   * Sends one batch, retrying what may pass. Resolves when it went through (undefined),
   * or with the error when it never will.
   */
  private async sendRetrying(byTopic: Map<string, Outgoing[]>, messages: number): Promise<LogmeterError | undefined | typeof CLOSED> {
    const t0 = Date.now();
    let failures = 0;
    for (let attempt = 1; ; attempt++) {
      // A closed sender does not retry: what was not acknowledged is read again at the next start.
      if (this.closed) return CLOSED;
      try {
        await this.attempt(byTopic, messages, attempt);
        this.progressed();
        // A send that failed or waited long went through a disturbance (a broker restarting,
        // a leader moving; the client may have retried inside): its end is said once.
        const tookMs = Date.now() - t0;
        if (failures > 0 || tookMs >= SLOW_SEND_MS) this.log.info({ attempts: attempt, failures, messages, tookMs }, 'Kafka send recovered: acknowledged after a failed or slow attempt');
        return undefined;
      } catch (err) {
        if (!(err instanceof Abandoned) && isPermanentSendError(err)) {
          // Refused for good is an answer too: the watchdog counts it as progress.
          this.progressed();
          return permanent(err);
        }
        if (this.closed) return CLOSED;
        failures++;
        this.opts.onError?.(err);
        if (err instanceof Abandoned) {
          // A request that was never answered: the producer holding it is torn down, so the
          // retry goes out on a fresh connection instead of queueing behind it.
          this.log.warn({ err: err.message, attempt, messages, inFlight: this.describe() }, 'Kafka send abandoned; rebuilding the producer and sending again');
          await this.reset(err.message);
          continue;
        }
        const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
        this.log.warn({ err: errorMessage(err), attempt, messages, retryInMs: Math.round(delay) }, 'Kafka send failed; retrying');
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay);
          this.wakeRetry = () => {
            clearTimeout(t);
            r();
          };
        });
        this.wakeRetry = undefined;
      }
    }
  }

  /** One send attempt: settles with Kafka's answer, or rejects with Abandoned at the deadline or when the watchdog fires. */
  private attempt(byTopic: Map<string, Outgoing[]>, messages: number, attempt: number): Promise<void> {
    let bytes = 0;
    const topics: InFlight['topics'] = [];
    for (const [topic, list] of byTopic) {
      const keys = [...new Set(list.map((m) => m.key))];
      for (const m of list) bytes += m.value.length;
      const partitions = [...new Set(keys.map((k) => this.opts.partitionOf?.(topic, k)).filter((p): p is number => p !== undefined))].sort((a, b) => a - b);
      topics.push({ topic, partitions, keys: keys.slice(0, 5), messages: list.length });
    }
    this.inFlight = { since: Date.now(), attempt, messages, bytes, topics };
    const deadlineMs = this.opts.requestTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const sent = this.publish([...byTopic].map(([topic, list]) => ({ topic, messages: list })));
    let done = false;
    return new Promise<void>((resolve, reject) => {
      const settle = (fn: () => void) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        timer = undefined;
        if (this.inFlight) this.maxAge = Math.max(this.maxAge, Date.now() - this.inFlight.since);
        this.inFlight = undefined;
        this.abandon = undefined;
        fn();
      };
      this.abandon = (err) => settle(() => reject(err));
      timer = setTimeout(() => this.abandon?.(new Abandoned('kafka_timeout', `no answer from Kafka within ${deadlineMs} ms`, { retriable: true })), deadlineMs);
      sent.then(
        () => settle(resolve),
        (err: unknown) => settle(() => reject(err instanceof Error ? err : new Error(errorMessage(err)))),
      );
    }).finally(() => {
      // An abandoned request's late answer is of no use any more (its batch was sent again).
      sent.catch(() => undefined);
    });
  }

  private async reset(reason: string): Promise<void> {
    try {
      await this.opts.resetProducer?.(reason);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'rebuilding the Kafka producer failed; the next send tries again');
    }
  }

  /** Something was acknowledged (or accounted for): the watchdog starts counting again. */
  private progressed(): void {
    this.progressAt = Date.now();
    if (!this.stall) return;
    this.log.info({ stalledForMs: this.progressAt - this.stall.since }, 'Kafka acknowledges again; the stall is over');
    this.stall = undefined;
  }

  private startWatchdog(): void {
    const stallMs = this.opts.stallMs ?? 30_000;
    if (this.watchdog || stallMs <= 0 || this.closed) return;
    this.watchdog = setInterval(() => this.check(stallMs), Math.max(50, Math.min(1000, stallMs / 4)));
    this.watchdog.unref();
  }

  private check(stallMs: number): void {
    const now = Date.now();
    this.maxAge = Math.max(this.maxAge, this.inFlightAgeMs(now));
    if (this.buffered === 0 || now - this.progressAt < stallMs) return;
    const inFlight = this.inFlight ? { ...this.inFlight } : undefined;
    const reason = `nothing acknowledged by Kafka for ${Math.round((now - this.progressAt) / 1000)} s with ${this.buffered} bytes of events buffered${inFlight ? `; in flight: ${this.describe()}` : ''}`;
    this.stall = { since: this.stall?.since ?? this.progressAt, bufferedBytes: this.buffered, inFlight, reason };
    // The next report comes after another stallMs without an acknowledgement, not every tick.
    this.progressAt = now;
    this.log.error({ stall: this.stall, inFlight }, `Kafka stall: ${reason}; rebuilding the producer`);
    this.opts.onStall?.(this.stall);
    if (this.abandon) this.abandon(new Abandoned('kafka_stall', reason, { retriable: true }));
    else void this.reset(reason);
  }

  /** The in-flight request in one phrase, for logs and the health report. */
  private describe(): string {
    const f = this.inFlight;
    if (!f) return 'none';
    const where = f.topics.map((t) => `${t.topic} partition ${t.partitions.length > 0 ? t.partitions.join(',') : '?'} (${t.messages} messages, keys ${t.keys.join(',')})`).join('; ');
    return `attempt ${f.attempt} of ${f.messages} messages / ${f.bytes} bytes, waiting ${Date.now() - f.since} ms: ${where}`;
  }

  /**
   * A batch Kafka refused for good: its messages one at a time, in order (but those already
   * stored), so only the refused ones are set aside. Returns how many were settled (all, unless closed meanwhile).
   */
  private async isolate(batch: Outgoing[], err: LogmeterError): Promise<number> {
    this.log.warn({ err: err.message, code: err.code, messages: batch.length }, 'Kafka refused a batch for good; sending its messages one by one to set the refused ones aside');
    const stored = storedBefore(err); // a batch the bus split: the sends before the refused one are stored
    let settled = 0;
    for (const m of batch) {
      const refused = stored.has(m) ? undefined : await this.sendRetrying(new Map([[m.topic, [m]]]), 1);
      if (refused === CLOSED) return settled;
      settled++;
      if (!refused) {
        m.onAck?.();
        m.ackTarget?.produced(m.n!);
        continue;
      }
      this.reject(m, refused);
      const letter = this.opts.deadLetter?.(m, refused);
      if (letter) {
        const letterRefused = await this.sendRetrying(new Map([[letter.topic, [letter]]]), 1);
        if (letterRefused === CLOSED) this.log.warn({ topic: letter.topic, key: letter.key }, 'dead letter not sent: the sender was closed');
        else if (letterRefused) this.reject(letter, letterRefused);
        else letter.onAck?.();
      }
      m.ackTarget?.rejected?.(m.n!);
    }
    return settled;
  }

  private reject(m: Outgoing, err: LogmeterError): void {
    this.log.error({ code: err.code, err: err.message, topic: m.topic, key: m.key, bytes: m.value.length }, `Kafka refused a message for good (${err.code}); it is set aside and the queue goes on`);
    this.opts.onRejected?.(m, err);
  }

  private release(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.tenant === undefined ? this.full : this.fullFor(w.tenant)) still.push(w);
      else w.resume();
    }
    this.waiters = still;
  }
}

/**
 * Follows one container's logs from its checkpoint to Kafka.
 *
 * Guarantees: every line read is either acknowledged by Kafka as a log event or counted
 * in an acknowledged drop report before the checkpoint moves past it; after a crash the
 * lines after the checkpoint are read again and get the same event ids (container,
 * stream, Docker timestamp, sequence), so downstream removes the repeats.
 *
 * Diagnosable (diagnose()): the phase it is in and since when, and the most bytes it ever
 * held for unfinished lines and the chunk being read (what the line cap bounds). stop()
 * wakes it wherever it waits: for room in the Kafka buffer, or before following again.
 */
import type Docker from 'dockerode';
import type { Logger } from '../lib/logger.js';
import { errorMessage } from '../lib/errors.js';
import type { AvroCodec } from '../schemas/codec.js';
import { LogFrameWriter } from '../schemas/log-frame.js';
import type { CheckpointStore } from './checkpoint.js';
import type { CollectorConfig } from './config.js';
import type { DropReporter } from './drops.js';
import { type Identity } from '../lib/identity.js';
import type { ContainerFacts } from '../lib/container.js';
import { LineAssembler, MessageReader, sinceParam, type Line, type Message } from './logstream.js';
import { PositionTracker, START, type ResumePoint } from './position.js';
import type { TenantLimiter } from './ratelimit.js';
import type { Sender } from './sender.js';
import type { CollectorMetrics } from './telemetry.js';
import { withDeadline } from './docker-calls.js';
import { heldBytes, heldCharge, readStream } from './stream-read.js';
import type { LogSource } from './docker-logs.js';

/**
 * What a follower is doing: asking Docker for the log stream (`attaching`), reading it,
 * waiting for room in the Kafka buffer, asking Docker about the container after the stream
 * ended (`inspecting`), waiting before following again (`backing off`), or not following.
 */
export type FollowerPhase = 'attaching' | 'reading' | 'waiting for room' | 'inspecting' | 'backing off' | 'ended';

export interface FollowerDiagnosis {
  phase: FollowerPhase;
  /** When it entered that phase (epoch ms). */
  since: number;
  /** Lines handed on so far, and acknowledged (or accounted for as dropped). */
  lines: number;
  ackedLines: number;
  /** Bytes held for unfinished lines and the rest of a frame; at most so far, with the chunk being read. */
  retainedBytes: number;
  retainedPeakBytes: number;
  /**
   * Bytes taken from Docker and not handed on (outside the Kafka buffer's bound): the rest of
   * a frame or chunk, unfinished lines, and what waits in the log stream's and its socket's
   * buffers; now.
   */
  heldBytes: number;
}

export interface FollowerDeps {
  docker: Docker;
  /** Opens the container's log stream (docker-logs.ts: Docker's logs endpoint read directly where it can be). */
  logs: LogSource;
  store: CheckpointStore;
  sender: Sender;
  limiter: TenantLimiter;
  drops: DropReporter;
  codec: AvroCodec;
  logsTopic: string;
  node: string;
  cfg: CollectorConfig;
  metrics: CollectorMetrics;
  log: Logger;
  /** How far before the newest timestamp a resume asks Docker to start (ms). */
  overlapMs: number;
  /** How often a resume point is taken while lines flow (ms). */
  candidateEveryMs: number;
}

interface Candidate {
  upTo: number;
  point: ResumePoint;
  final: boolean;
}

export class Follower {
  private running: Promise<void> | undefined;
  private stream: NodeJS.ReadableStream & { destroy?: () => void } | undefined;
  private stopped = false;
  /** Lines handed on (sent or dropped), numbered from 1. */
  private emitted = 0;
  private ackedUpTo = 0;
  private readonly ackedAhead = new Set<number>();
  private candidates: Candidate[] = [];
  private lastCandidateAt = 0;
  /** Resume point after the last line handed on: where a re-follow starts. */
  private readPoint: ResumePoint;
  private committed: ResumePoint & { finished: boolean };
  private writeTimer: NodeJS.Timeout | undefined;
  /** When checkpoint writes started failing (0: they do not), and when that was last logged. */
  private checkpointFailingSince = 0;
  private checkpointErrorLoggedAt = 0;
  private oldestPendingMs = 0;
  /** The current run's position and unfinished lines, for a last resume point on stop. */
  private current: { tracker: PositionTracker; assembler: LineAssembler } | undefined;
  private readonly log: Logger;
  /** The read counters' children per stream, resolved once instead of per line. */
  private readonly readStdout;
  private readonly readStderr;
  /** Lines and bytes read per stream since the counters were last told (once per chunk, not per line). */
  private readonly unreported = { stdoutLines: 0, stdoutBytes: 0, stderrLines: 0, stderrBytes: 0 };
  private reportQueued = false;
  /** Lines acknowledged since the produced-lines counter was last told (reportProduced, queued as a microtask). */
  private producedUnreported = 0;
  /** This container's log events, framed (schemas/log-frame.ts). */
  private readonly frames: LogFrameWriter;
  private phase: FollowerPhase = 'ended';
  private phaseSince = Date.now();
  private retained = 0;
  private retainedPeak = 0;
  /** The current run's heldBytes (see FollowerDiagnosis), while it reads, and what is charged for it to the sender's bound (only while waiting for room). */
  private held: (() => number) | undefined;
  private charged = 0;
  /** Ends a wait (for room, or before following again) early: stop() calls it. */
  private wake: (() => void) | undefined;
  /** Aborted by stop(): a Docker call in progress is given up at once. */
  private readonly stopSignal = new AbortController();

  constructor(
    readonly facts: ContainerFacts,
    readonly identity: Identity,
    private readonly deps: FollowerDeps,
  ) {
    const cp = deps.store.get(facts.id);
    this.readPoint = cp ?? START;
    this.committed = cp ? { ...cp } : { ...START, finished: false };
    this.log = deps.log.child({ container: facts.name, containerId: facts.id.slice(0, 12), tenant: identity.tenant, app: identity.app });
    const m = deps.metrics;
    this.readStdout = { lines: m.linesRead.labels({ stream: 'stdout' }), bytes: m.bytesRead.labels({ stream: 'stdout' }) };
    this.readStderr = { lines: m.linesRead.labels({ stream: 'stderr' }), bytes: m.bytesRead.labels({ stream: 'stderr' }) };
    this.frames = new LogFrameWriter(deps.codec, {
      tenant: identity.tenant,
      app: identity.app,
      node: deps.node,
      containerId: facts.id,
      containerName: facts.name,
      tty: facts.tty,
      logFormat: identity.logFormat,
    });
  }

  /**
   * Tells the read counters once the chunks being handled in this turn are done: through
   * dockerode's HTTP response each log message is a chunk of its own, where telling them per
   * chunk was per line (prom-client's inc with labels, 3 % of the collector's CPU).
   */
  private reportSoon(): void {
    if (this.reportQueued) return;
    this.reportQueued = true;
    queueMicrotask(() => {
      this.reportQueued = false;
      this.reportRead();
    });
  }

  /** Tells the produced-lines counter, once per batch the sender settles rather than per line. */
  private readonly reportProduced = (): void => {
    this.deps.metrics.linesProduced.inc(this.producedUnreported);
    this.producedUnreported = 0;
  };

  /** Tells the read counters what was read since they were last told. */
  private reportRead(): void {
    const u = this.unreported;
    if (u.stdoutLines > 0) {
      this.readStdout.lines.inc(u.stdoutLines);
      this.readStdout.bytes.inc(u.stdoutBytes);
      u.stdoutLines = u.stdoutBytes = 0;
    }
    if (u.stderrLines > 0) {
      this.readStderr.lines.inc(u.stderrLines);
      this.readStderr.bytes.inc(u.stderrBytes);
      u.stderrLines = u.stderrBytes = 0;
    }
  }

  get active(): boolean {
    return this.running !== undefined;
  }

  /** Milliseconds since the oldest line not yet checkpointed was printed (0 when all are). */
  lagMs(now: number): number {
    return this.ackedUpTo < this.emitted && this.oldestPendingMs > 0 ? Math.max(0, now - this.oldestPendingMs) : 0;
  }

  /** Starts following (again) if not already; resolves when this run ends. */
  start(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.run().finally(() => {
      this.running = undefined;
      this.setPhase('ended');
    });
    return this.running;
  }

  /** The phase and since when, lines and bytes held (for collector.diagnose()). */
  diagnose(): FollowerDiagnosis {
    return { phase: this.phase, since: this.phaseSince, lines: this.emitted, ackedLines: this.ackedUpTo, retainedBytes: this.retained, retainedPeakBytes: this.retainedPeak, heldBytes: this.held?.() ?? this.retained };
  }

  /** Charges `bytes` held of the log stream to the sender's bound, in place of what was charged before. */
  private charge(bytes: number): void {
    if (bytes === this.charged) return;
    this.deps.sender.hold(bytes - this.charged);
    this.charged = bytes;
  }

  private setPhase(phase: FollowerPhase): void {
    if (phase === this.phase) return;
    this.phase = phase;
    this.phaseSince = Date.now();
  }

  /** Waits `ms`, or less when stop() comes first. */
  private pause(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return this.until(new Promise((r) => (timer = setTimeout(r, ms)))).finally(() => clearTimeout(timer));
  }

  /** Waits for `p`, or less when stop() comes first. */
  private async until(p: Promise<void>): Promise<void> {
    if (this.stopped) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      void p.then(resolve);
    });
    this.wake = undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stream?.destroy?.();
    this.wake?.();
    this.stopSignal.abort();
    await this.running;
    // Lines read since the last resume point are on their way to Kafka: mark where they end,
    // so the checkpoint can move past them once they are acknowledged.
    const cur = this.current;
    this.current = undefined;
    if (cur && cur.assembler.clean && !cur.tracker.replaying) this.maybeCandidate(cur.tracker, false, true);
    await this.writeCheckpoint();
  }

  /** True when every line handed on is acknowledged and checkpointed as finished. */
  get finished(): boolean {
    return this.committed.finished;
  }

  private async run(): Promise<void> {
    let attempt = 0;
    // After a follow stream that ended with the container: one more read, without follow.
    let drain = false;
    while (!this.stopped) {
      const from = this.readPoint;
      const before = this.emitted;
      let ended: 'stopped' | 'finished' | 'early' | 'exited';
      try {
        ended = await this.follow(from, drain);
      } catch (err) {
        if (this.stopped) break;
        this.deps.metrics.dockerErrors.inc({ call: 'logs' });
        // 409 on the logs call: the container is dead or marked for removal (Docker serves no more of its logs).
        const gone = (err as { statusCode?: number }).statusCode === 409 || (await this.isGone());
        if (gone) {
          // Removed, or being removed (Docker refuses its logs with 409): nothing more to read.
          this.log.info({ err: errorMessage(err) }, 'container gone; its log stream ends');
          break;
        }
        this.log.warn({ err: errorMessage(err) }, 'log stream failed');
        // As on stop(): the lines read so far are handed on, the next stream starts after them.
        const cur = this.current;
        if (cur && cur.assembler.clean && !cur.tracker.replaying) this.maybeCandidate(cur.tracker, false, true);
        attempt = this.emitted > before ? 1 : attempt + 1;
        this.setPhase('backing off');
        await this.pause(Math.min(5000, 200 * 2 ** attempt));
        continue;
      }
      if (ended === 'exited') {
        // Docker can end a follow stream as the container exits before it delivered every
        // line the log driver holds (seen with a container printing a million lines in a
        // second: 29,840 delivered). A new request for the exited container streams all it
        // holds and then ends; lines already handed on come again and are skipped by the
        // position tracker.
        drain = true;
        continue;
      }
      if (ended !== 'early') break;
      // Docker ended the stream while the container still runs (seen under heavy load):
      // not the container's end. Followed again from the read point, after a backoff that
      // grows only while Docker keeps ending streams without a line.
      attempt = this.emitted > before ? 1 : attempt + 1;
      this.setPhase('backing off');
      await this.pause(Math.min(5000, 100 * 2 ** attempt));
    }
  }

  /**
   * One logs request: `exited` when the stream ended with the container (the rest is read
   * by a `drain` request, which ends `finished`), `early` when it ended while the container
   * still runs, `stopped` on stop().
   */
  private async follow(from: ResumePoint, drain = false): Promise<'stopped' | 'finished' | 'early' | 'exited'> {
    this.setPhase('attaching');
    // Only the call until Docker starts answering has a deadline: the stream lives on.
    const stream = await withDeadline(
      'a logs request',
      this.deps.cfg.dockerTimeoutSeconds * 1000,
      (abortSignal) => this.deps.logs(this.facts.id, { follow: true, since: sinceParam(from.sinceMs), abortSignal }),
      this.stopSignal.signal,
    );
    if (this.stopped) {
      stream.destroy();
      return 'stopped';
    }
    this.stream = stream;
    this.setPhase('reading');
    this.log.info({ since: from.sinceMs, skip: from.skip, drain }, drain ? 'reading the rest of the logs of an exited container' : 'following logs');
    const reader = new MessageReader(this.facts.tty);
    const assembler = new LineAssembler(this.deps.cfg.maxLineBytes);
    const tracker = new PositionTracker(this.deps.overlapMs, from);
    this.current = { tracker, assembler };
    // The clock for resume points, read once per chunk (and after a wait), not once per line.
    let now = Date.now();
    this.held = () => heldBytes(reader, assembler, stream);
    const onMessage = (m: Message) => {
      const replay = tracker.observe(m);
      const line = assembler.push(m);
      if (line && !replay) this.emit(line);
      if (assembler.clean && !tracker.replaying) this.maybeCandidate(tracker, false, false, now);
    };
    const tenant = this.identity.tenant;
    try {
      await readStream(stream, reader, {
        onMessage,
        // Waiting here (per message, not per chunk) keeps the memory bound within one line.
        full: () => this.deps.sender.fullFor(tenant),
        waitForRoom: () => {
          this.reportRead();
          this.setPhase('waiting for room');
          return this.until(this.deps.sender.capacity(tenant));
        },
        resumed: () => {
          this.setPhase('reading');
          now = Date.now();
        },
        charge: () => this.charge(heldCharge(reader, assembler, stream)),
        uncharge: () => this.charge(0),
        stopped: () => this.stopped,
        beforeChunk: () => {
          now = Date.now();
        },
        afterChunk: (chunk) => {
          this.reportSoon();
          // Held: the pieces of unfinished lines and the rest of a frame; at the peak, this chunk
          // too (an upper bound: pieces may point into it).
          this.retained = reader.pending + assembler.held;
          if (chunk.length + this.retained > this.retainedPeak) this.retainedPeak = chunk.length + this.retained;
        },
      });
    } finally {
      this.charge(0);
      this.reportRead();
      this.stream = undefined;
      this.held = undefined;
      this.retained = reader.pending + assembler.held;
    }
    if (this.stopped) return 'stopped';
    const state = drain ? 'exited' : await this.stateAfterEnd();
    if (state === 'exited' && !drain) {
      // The container's end, but not necessarily the end of its logs: read the rest in a new request.
      if (assembler.clean && !tracker.replaying) this.maybeCandidate(tracker, false, true);
      return 'exited';
    }
    if (state !== 'exited') {
      this.deps.metrics.dockerErrors.inc({ call: 'logs' });
      // The lines read so far stay handed on; a re-follow starts after the last clean point
      // (lines after it come again with the same event ids). Never marked finished here.
      if (assembler.clean && !tracker.replaying) this.maybeCandidate(tracker, false, true);
      this.log.warn({ lines: this.emitted, state, since: this.readPoint.sinceMs }, 'log stream ended while the container is still running; following again from the last read point');
      return 'early';
    }
    now = Date.now();
    for (const m of reader.end()) onMessage(m);
    for (const line of assembler.flush()) this.emit(line);
    this.reportRead();
    this.maybeCandidate(tracker, true);
    this.log.info({ lines: this.emitted }, 'log stream ended');
    return 'finished';
  }

  /**
   * What the container is doing once its log stream ended: `exited` (or removed) means the
   * stream ended with it; `running` or `unknown` (Docker did not answer) means follow again.
   */
  private async stateAfterEnd(): Promise<'exited' | 'running' | 'unknown'> {
    this.setPhase('inspecting');
    try {
      const info = await this.inspect();
      return info.State.Running ? 'running' : 'exited';
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return 'exited';
      this.log.warn({ err: errorMessage(err) }, 'inspect after the log stream ended failed; following again');
      return 'unknown';
    }
  }

  private emit(line: Line): void {
    const n = ++this.emitted;
    if (this.ackedUpTo === n - 1) this.oldestPendingMs = line.tsMs;
    const m = this.deps.metrics;
    const u = this.unreported;
    if (line.stream === 'stderr') {
      u.stderrLines++;
      u.stderrBytes += line.originalLength;
    } else {
      u.stdoutLines++;
      u.stdoutBytes += line.originalLength;
    }
    if (line.truncated) m.linesTruncated.inc();
    const refused = this.deps.limiter.check(this.identity.tenant, line.bytes.length);
    if (refused) {
      m.linesDropped.inc({ reason: refused.reason, tenant: this.identity.tenant });
      this.deps.drops.add(this.identity, this.facts.id, this.facts.name, refused.reason, refused.detail, line.bytes.length, () => this.acked(n));
      return;
    }
    // The event id is eventId(container id, stream, Docker timestamp, seq) (lib/event-id.ts).
    this.deps.sender.enqueue({
      topic: this.deps.logsTopic,
      key: this.facts.id,
      tenant: this.identity.tenant,
      value: this.frames.frame(line),
      ackTarget: this,
      n,
    });
  }

  private maybeCandidate(tracker: PositionTracker, final: boolean, force = false, now = Date.now()): void {
    if (!final && !force && now - this.lastCandidateAt < this.deps.candidateEveryMs) return;
    this.lastCandidateAt = now;
    const point = tracker.snapshot();
    this.readPoint = point;
    const last = this.candidates[this.candidates.length - 1];
    if (last && last.upTo === this.emitted && !final) last.point = point;
    else this.candidates.push({ upTo: this.emitted, point, final });
    this.advance();
  }

  /** Line `n` of this stream is acknowledged by Kafka (the sender calls this). */
  produced(n: number): void {
    if (this.producedUnreported++ === 0) queueMicrotask(this.reportProduced);
    this.acked(n);
  }

  /** Line `n` of this stream was refused by Kafka for good (the sender logged, counted and dead-lettered it). */
  rejected(n: number): void {
    this.acked(n);
  }

  /** Line `n` of this stream is acknowledged by Kafka, or accounted for as dropped. */
  private acked(n: number): void {
    if (n === this.ackedUpTo + 1) {
      this.ackedUpTo = n;
      while (this.ackedAhead.delete(this.ackedUpTo + 1)) this.ackedUpTo++;
    } else this.ackedAhead.add(n);
    this.advance();
  }

  /** Moves the committed point to the newest candidate whose lines are all acknowledged. */
  private advance(): void {
    let moved: Candidate | undefined;
    while (this.candidates.length > 0 && this.candidates[0]!.upTo <= this.ackedUpTo) moved = this.candidates.shift();
    if (!moved) return;
    this.committed = { ...moved.point, finished: moved.final };
    this.writeTimer ??= setTimeout(() => void this.writeCheckpoint(), 50);
  }

  private async writeCheckpoint(): Promise<void> {
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
    const prev = this.deps.store.get(this.facts.id);
    const cp = this.committed;
    if (prev && prev.sinceMs === cp.sinceMs && prev.skip === cp.skip && prev.finished === cp.finished) return;
    const m = this.deps.metrics;
    try {
      await this.deps.store.put({ ...cp, containerId: this.facts.id, updatedAt: Date.now() });
      if (this.checkpointFailingSince > 0) {
        this.log.warn({ dir: this.deps.store.dir, failedForMs: Date.now() - this.checkpointFailingSince }, 'checkpoint written again');
        this.checkpointFailingSince = 0;
      }
      if (!this.deps.store.failing) m.checkpointWriteFailing.set(0);
    } catch (err) {
      m.checkpointWriteErrors.inc();
      m.checkpointWriteFailing.set(1);
      const now = Date.now();
      // Loud, but one line per container every 10 s, not one per attempt.
      if (now - this.checkpointErrorLoggedAt >= 10_000) {
        this.checkpointErrorLoggedAt = now;
        this.log.error(
          { err: errorMessage(err), dir: this.deps.store.dir },
          `checkpoint not written: ${this.deps.store.dir} refuses writes; the checkpoint stays where it was (lines after it are read again after a restart) until it is writable`,
        );
      }
      this.checkpointFailingSince ||= now;
      // Retried on its own: a container that has gone quiet must still get its checkpoint once the disk is back.
      if (!this.stopped) this.writeTimer ??= setTimeout(() => void this.writeCheckpoint(), 1000);
    }
  }

  private inspect(): Promise<Docker.ContainerInspectInfo> {
    const c = this.deps.docker.getContainer(this.facts.id);
    return withDeadline('an inspect', this.deps.cfg.dockerTimeoutSeconds * 1000, (abortSignal) => c.inspect({ abortSignal }), this.stopSignal.signal);
  }

  private async isGone(): Promise<boolean> {
    this.setPhase('inspecting');
    try {
      await this.inspect();
      return false;
    } catch (err) {
      return (err as { statusCode?: number }).statusCode === 404;
    }
  }
}

/**
 * The per-node collector: follows Docker's events and every tenant container's logs,
 * samples their counters, and hands it all to Kafka as Avro events keyed by container.
 * Which containers are attached and detached is decided by attach.ts' rules; this file
 * does what they say (inspect, follow, send) and wires the parts together.
 *
 * Start-up order matters for "nothing lost": the events stream is opened first (from
 * the last event seen before a restart), then existing containers are listed, so a
 * container started in between is seen by one or the other.
 *
 * Nothing waits on Docker or Kafka for ever: every Docker call has a deadline
 * (docker-calls.ts), stop() wakes readers waiting for room and gives Kafka
 * `stopFlushSeconds` before it reports what is left unsent, and diagnose() says what each
 * part is doing and since when, so that a stall can be told from a quiet node.
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { Degraded } from '../lib/http.js';
import type { EventBus } from '../lib/bus/bus.js';
import { createBus } from '../lib/bus/create.js';
import type { AvroCodec } from '../schemas/codec.js';
import { afterLifecycle, eventStep, startupStep } from './attach.js';
import { CheckpointStore } from './checkpoint.js';
import type { CollectorConfig } from './config.js';
import { DockerEvents } from './docker-events.js';
import { withDeadline } from './docker-calls.js';
import { DropReporter } from './drops.js';
import { Follower } from './follower.js';
import { identityFromLabels, identityProblem, type Identity } from '../lib/identity.js';
import { refusedContainerLetter, toLifecycleEvent, type DockerEvent } from './lifecycle.js';
import { factsFromInspect, type ContainerFacts } from '../lib/container.js';
import { TenantLimiter } from './ratelimit.js';
import { logSourceFor, type LogSource } from './docker-logs.js';
import { Sender, rejectedLetter, type Outgoing } from './sender.js';
import type { CollectorDiagnosis, SenderDiagnosis } from './diagnosis.js';

export type { CollectorDiagnosis } from './diagnosis.js';
import { sampleContainer, StatsRounds } from './stats.js';
import { collectorMetrics, type CollectorMetrics } from './telemetry.js';

export interface CollectorDeps {
  cfg: CollectorConfig;
  node: string;
  /** Checkpoints and the collector's own state live here. */
  stateDir: string;
  docker: Docker;
  /** Opens containers' log streams; default logSourceFor(docker) (Docker's logs endpoint read directly where it can be). */
  logs?: LogSource;
  bus: EventBus;
  codec: AvroCodec;
  logger: Logger;
  registry: Registry;
  /**
   * The bus lifecycle events go out on: a producer and connection of their own, so a
   * container start never waits behind a log batch in flight (issue 15; the producer is
   * idempotent with one request in flight, and a log batch of 512 KiB takes tens of ms
   * to be acknowledged on a busy node). Default: a second bus with `bus`'s settings,
   * made and closed by the collector. Pass `bus` itself for one producer for everything.
   */
  lifecycleBus?: EventBus;
}

/** What stop() left behind: events never acknowledged by Kafka (both senders), read again at the next start. */
export interface StopReport {
  unsentEvents: number;
  unsentBytes: number;
}

export interface Collector {
  start(): Promise<void>;
  /** Resolves even when Kafka or Docker do not answer; says what was left unsent. */
  stop(): Promise<StopReport>;
  diagnose(): CollectorDiagnosis;
  /** Totals for the live summary of `logmeter up`. */
  summary(): Promise<{ containers: number; linesProduced: number; linesDropped: number; bufferedBytes: number }>;
  /** Containers currently known with a tenant (for status output and tests). */
  followed(): Array<{ id: string; name: string; tenant: string; app: string; active: boolean }>;
  readonly sender: Sender;
  /** The lifecycle events' sender (on `lifecycleBus`): nothing else is queued on it. */
  readonly lifecycleSender: Sender;
  /** For `/healthz`: resolves when healthy, throws a Degraded naming the stall otherwise. */
  health(): Promise<void>;
}

/** What the collector remembers across restarts (`collector-state.json`). */
interface State {
  /** Newest Docker event time handled (ns), to replay what happened while down. */
  lastEventNano: number;
  /** When the collector last ran, to pick up containers that stopped while it was down. */
  aliveAt: number;
}

export function createCollector(deps: CollectorDeps): Collector {
  const c = new NodeCollector(deps);
  // A plain object, as before: callers may spread it ({ ...collector, stop }) to wrap one method.
  return {
    sender: c.sender,
    lifecycleSender: c.lifecycleSender,
    start: () => c.start(),
    stop: () => c.stop(),
    diagnose: () => c.diagnose(),
    summary: () => c.summary(),
    followed: () => c.followed(),
    health: () => c.health(),
  };
}

type MacCache = NonNullable<Parameters<typeof sampleContainer>[2]['macCache']>;

class NodeCollector implements Collector {
  readonly sender: Sender;
  readonly lifecycleSender: Sender;
  private readonly lifecycleBus: EventBus;
  /** Whether the collector made `lifecycleBus` (and closes it). */
  private readonly ownLifecycleBus: boolean;
  private readonly log: Logger;
  private readonly metrics: CollectorMetrics;
  private readonly store: CheckpointStore;
  private readonly stateFile: string;
  private readonly state: State;
  private readonly limiter: TenantLimiter;
  private readonly logs: LogSource;
  private readonly topics: { logs: string; lifecycle: string; stats: string; dlq: string };
  private readonly drops: DropReporter;
  private readonly events: DockerEvents;
  private readonly followers = new Map<string, Follower>();
  private readonly facts = new Map<string, ContainerFacts>();
  private readonly ignored = new Set<string>();
  private readonly macCache: MacCache = new Map();
  private statsRounds: StatsRounds | undefined;
  private stopping = false;
  private stopped: Promise<StopReport> | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: CollectorDeps) {
    const { cfg, bus, codec, node } = deps;
    this.log = deps.logger.child({ component: 'collector' });
    this.metrics = collectorMetrics(deps.registry);
    this.store = new CheckpointStore(path.join(deps.stateDir, 'checkpoints'));
    this.stateFile = path.join(deps.stateDir, 'collector-state.json');
    this.state = readState(this.stateFile);
    this.topics = { logs: bus.topic('logs'), lifecycle: bus.topic('lifecycle'), stats: bus.topic('stats'), dlq: bus.topic('dlq') };
    const shortName = new Map(Object.entries(this.topics).map(([short, full]) => [full, short]));
    // The logs topic's lines of a container go packed into shared records (lib/bus/pack.ts).
    const pack = (batches: { topic: string; messages: Outgoing[] }[]) => (cfg.packLogs ? batches.map((x) => (x.topic === this.topics.logs ? { ...x, pack: true } : x)) : batches);
    const senderFor = (b: EventBus, lingerMs: number) =>
      new Sender(
        (batches) => b.publishRawBatch(pack(batches)),
        {
          batchBytes: cfg.batchBytes,
          lingerMs,
          maxBufferedBytes: cfg.maxBufferedBytes,
          onError: () => this.metrics.kafkaErrors.inc(),
          requestTimeoutMs: b.config.requestTimeoutMs ?? 30_000,
          stallMs: cfg.stallSeconds * 1000,
          resetProducer: (reason) => b.resetProducer(reason),
          onStall: () => {
            this.metrics.stalls.inc();
            // What the Docker side does meanwhile: a reader waiting for room is the stall's effect, one attaching for long a second problem.
            this.log.error({ diagnosis: this.diagnose() }, 'collector state at the Kafka stall');
          },
          partitionOf: (topic, key) => b.partitionOf(topic, key),
          onRejected: (m, err) => this.metrics.eventsRejected.inc({ topic: shortName.get(m.topic) ?? 'other', code: err.code }),
          // A letter refused in turn is not dead-lettered again.
          deadLetter: (m, err) => (m.topic === this.topics.dlq ? undefined : { topic: this.topics.dlq, key: m.key, value: codec.encode('dlq', rejectedLetter(m, err, node, Date.now())) }),
        },
        this.log,
      );
    this.sender = senderFor(bus, cfg.lingerMs);
    this.ownLifecycleBus = deps.lifecycleBus === undefined;
    this.lifecycleBus = deps.lifecycleBus ?? createBus(bus.config, codec, deps.logger.child({ component: 'collector-lifecycle' }));
    // Lifecycle events are few and waited for (routes): no linger, and a producer of their own unless told otherwise.
    this.lifecycleSender = this.lifecycleBus === bus ? this.sender : senderFor(this.lifecycleBus, 0);
    this.limiter = new TenantLimiter(cfg.rateLimit);
    this.logs = deps.logs ?? logSourceFor(deps.docker);
    this.drops = new DropReporter({ sender: this.sender, codec, topic: this.topics.lifecycle, node, intervalMs: cfg.dropReportSeconds * 1000 });
    this.events = new DockerEvents({
      docker: deps.docker,
      log: this.log,
      since: () => this.state.lastEventNano,
      onEvent: (e) => this.onEvent(e),
      onError: () => this.metrics.dockerErrors.inc({ call: 'events' }),
      timeoutMs: cfg.dockerTimeoutSeconds * 1000,
    });
  }

  async summary() {
    const total = async (m: { get(): Promise<{ values: Array<{ value: number }> }> }) => (await m.get()).values.reduce((a, v) => a + v.value, 0);
    return {
      containers: this.activeCount(),
      linesProduced: await total(this.metrics.linesProduced),
      linesDropped: await total(this.metrics.linesDropped),
      bufferedBytes: this.sender.buffered + (this.lifecycleSender === this.sender ? 0 : this.lifecycleSender.buffered),
    };
  }

  health(): Promise<void> {
    const stall = this.sender.stalled ?? this.lifecycleSender.stalled;
    return stall ? Promise.reject(new Degraded(`Kafka stall since ${new Date(stall.since).toISOString()}: ${stall.reason}`)) : Promise.resolve();
  }

  diagnose(): CollectorDiagnosis {
    const senderState = (s: Sender): SenderDiagnosis => ({ bufferedEvents: s.bufferedEvents, bufferedBytes: s.buffered, heldBytes: s.held, inFlight: s.current, stalled: s.stalled });
    return {
      at: Date.now(),
      dockerEvents: this.events.diagnose(),
      followers: [...this.followers.values()].map((f) => ({ containerId: f.facts.id, name: f.facts.name, tenant: f.identity.tenant, app: f.identity.app, ...f.diagnose() })),
      sender: senderState(this.sender),
      lifecycleSender: senderState(this.lifecycleSender),
    };
  }

  followed() {
    return [...this.followers.values()].map((f) => ({ id: f.facts.id, name: f.facts.name, tenant: f.identity.tenant, app: f.identity.app, active: f.active }));
  }

  async start(): Promise<void> {
    const { cfg, docker } = this.deps;
    this.drops.start();
    this.events.start();
    let list: Docker.ContainerInfo[];
    try {
      list = await withDeadline('the container list', cfg.dockerTimeoutSeconds * 1000, (abortSignal) => docker.listContainers({ all: true, filters: { label: [`${cfg.labelPrefix}tenant`] }, abortSignal }));
    } catch (err) {
      void this.events.stop();
      throw new LogmeterError('docker_unreachable', `Docker Engine API unreachable: ${errorMessage(err)}`, { retriable: true, cause: err });
    }
    for (const c of list) {
      const f = await this.inspect(c.Id);
      if (!f) continue;
      const step = startupStep(f, this.store.get(c.Id), this.state.aliveAt);
      if (step === 'follow') this.follow(f);
      else if (step === 'ready') {
        // Known and fully read: kept ready for a restart.
        const identity = this.identityOf(f);
        if (identity) this.followers.set(f.id, this.newFollower(f, identity));
      }
    }
    this.statsRounds = new StatsRounds(() => this.sampleAll(), cfg.statsIntervalSeconds * 1000);
    this.statsRounds.start();
    this.gaugeTimer = setInterval(() => {
      const now = Date.now();
      this.metrics.containersFollowed.set(this.activeCount());
      this.metrics.bufferedBytes.set(this.sender.buffered);
      this.metrics.heldBytes.set(this.sender.held);
      this.metrics.inFlightAge.set(this.sender.inFlightAgeMs(now) / 1000);
      this.metrics.inFlightAgeMax.set(this.sender.maxInFlightAgeMs / 1000);
      this.metrics.checkpointLag.set(Math.max(0, ...[...this.followers.values()].map((f) => f.lagMs(now))) / 1000);
      this.saveState();
    }, 1000);
    this.saveState();
    this.log.info({ containers: this.followers.size, stateDir: this.deps.stateDir }, 'collector started');
  }

  stop(): Promise<StopReport> {
    // Once: a second call gets the first one's report.
    this.stopped ??= this.stopOnce();
    return this.stopped;
  }

  private async stopOnce(): Promise<StopReport> {
    this.stopping = true;
    // The stats round under way (if any) ends first: its samples go out with the rest.
    await this.statsRounds?.stop();
    if (this.gaugeTimer) clearInterval(this.gaugeTimer);
    await this.events.stop();
    // Readers waiting for room in the buffer are woken (follower.ts): none waits for Kafka here.
    await Promise.all([...this.followers.values()].map((f) => f.stop()));
    this.drops.stop();
    // Both at once: a dead broker costs stopFlushSeconds once, not once per sender.
    const flushMs = this.deps.cfg.stopFlushSeconds * 1000;
    const senders = this.lifecycleSender === this.sender ? [this.sender] : [this.sender, this.lifecycleSender];
    const reports = await Promise.all(senders.map((s) => s.close(flushMs)));
    const report: StopReport = { unsentEvents: 0, unsentBytes: 0 };
    for (const r of reports) {
      report.unsentEvents += r.unsentEvents;
      report.unsentBytes += r.unsentBytes;
    }
    if (this.ownLifecycleBus) {
      // Bounded: kafkajs disconnects a producer still connecting to a broker that does not
      // answer only once its connect timed out (28 s seen); the process exits without it.
      let timer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([this.lifecycleBus.close().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), flushMs)))]);
      clearTimeout(timer);
      if (!closed) this.log.warn({ waitedMs: flushMs }, "the lifecycle events' Kafka client is still disconnecting (the broker does not answer); not waited for");
    }
    // Acks that arrived during close moved the committed points: write them.
    await Promise.all([...this.followers.values()].map((f) => f.stop()));
    this.saveState();
    if (report.unsentEvents > 0) this.log.warn({ ...report }, `collector stopped with ${report.unsentEvents} events not acknowledged by Kafka; their lines are read again at the next start`);
    else this.log.info('collector stopped');
    return report;
  }

  private activeCount(): number {
    return [...this.followers.values()].filter((f) => f.active).length;
  }

  private identityOf(f: ContainerFacts | undefined, attrs?: Record<string, string>): Identity | undefined {
    return identityFromLabels(f?.labels ?? attrs, this.deps.cfg.labelPrefix);
  }

  /**
   * A container's facts from Docker. A failure other than 404 (Docker busy, or not answering
   * within the deadline) is logged and tried again, up to 3 times; then the facts known
   * before (if any) are used.
   */
  private async inspect(id: string): Promise<ContainerFacts | undefined> {
    const ms = this.deps.cfg.dockerTimeoutSeconds * 1000;
    const c = this.deps.docker.getContainer(id);
    for (let attempt = 1; ; attempt++) {
      try {
        const f = factsFromInspect(await withDeadline('an inspect', ms, (abortSignal) => c.inspect({ abortSignal })));
        this.facts.set(id, f);
        return f;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) return this.facts.get(id);
        this.metrics.dockerErrors.inc({ call: 'inspect' });
        const retry = attempt < 3 && !this.stopping;
        this.log.warn({ containerId: id, err: errorMessage(err), attempt }, retry ? 'inspect failed; trying again' : 'inspect failed');
        if (!retry) return this.facts.get(id);
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  /** Rule 4 of attach.ts: not collected, said once; refused labels are dead-lettered too. */
  private ignore(f: ContainerFacts): void {
    const { cfg, codec, node } = this.deps;
    if (this.ignored.has(f.id)) return;
    this.ignored.add(f.id);
    const problem = identityProblem(f.labels, cfg.labelPrefix);
    this.metrics.containersIgnored.inc({ reason: problem ? 'bad_label' : 'no_tenant' });
    if (!problem) return this.log.info({ container: f.name, containerId: f.id.slice(0, 12), label: `${cfg.labelPrefix}tenant` }, 'container has no tenant label; not collected');
    // Refused, not just unlabelled: said loudly, and dead-lettered so it shows where all refusals are kept.
    this.log.warn({ container: f.name, containerId: f.id.slice(0, 12), problem }, `container not collected: ${problem}`);
    this.sender.enqueue({ topic: this.topics.dlq, key: f.id, value: codec.encode('dlq', refusedContainerLetter(f, problem, cfg.labelPrefix, node, Date.now())) });
  }

  private newFollower(f: ContainerFacts, identity: Identity): Follower {
    const { docker, codec, node, cfg } = this.deps;
    return new Follower(f, identity, {
      docker, logs: this.logs, store: this.store, sender: this.sender, limiter: this.limiter, drops: this.drops, codec, logsTopic: this.topics.logs, node, cfg, metrics: this.metrics, log: this.log,
      overlapMs: 2000,
      candidateEveryMs: 100,
    });
  }

  private follow(f: ContainerFacts): void {
    const identity = this.identityOf(f);
    if (!identity) return this.ignore(f);
    let fl = this.followers.get(f.id);
    if (!fl) {
      fl = this.newFollower(f, identity);
      this.followers.set(f.id, fl);
      this.log.info({ container: f.name, containerId: f.id.slice(0, 12), tenant: identity.tenant, app: identity.app }, 'container attached');
    }
    if (!fl.active) void fl.start().then(() => this.log.info({ container: f.name, containerId: f.id.slice(0, 12) }, 'container detached'));
  }

  private async onEvent(e: DockerEvent): Promise<void> {
    if (e.timeNano && e.timeNano > this.state.lastEventNano) this.state.lastEventNano = e.timeNano;
    const step = eventStep(e, (id) => this.facts.has(id));
    if (step.kind === 'skip') return;
    if (step.kind === 'refresh') {
      this.macCache.delete(step.containerId);
      // Not awaited: a container being removed is disconnected while Docker holds its lock
      // (an inspect then waits 100-400 ms), and later events, other containers' starts too, would wait with it.
      void this.inspect(step.containerId);
      return;
    }
    const { containerId: id, action } = step;
    const f = step.inspect ? await this.inspect(id) : this.facts.get(id);
    const identity = this.identityOf(f, e.Actor?.Attributes);
    if (!identity) {
      if (f) this.ignore(f);
      return;
    }
    const ev = toLifecycleEvent(e, f, identity, this.deps.node);
    this.lifecycleSender.enqueue({ topic: this.topics.lifecycle, key: id, value: this.deps.codec.encode('lifecycle', ev), onAck: () => this.metrics.eventsProduced.inc({ topic: 'lifecycle' }) });
    // Routes wait on lifecycle events (a start is a new upstream): sent now, not after lingerMs.
    void this.lifecycleSender.flush();
    const next = afterLifecycle(action, f !== undefined);
    if (next === 'attach') this.follow(f!);
    else if (next === 'detach') await this.detach(id);
  }

  private async detach(id: string): Promise<void> {
    const fl = this.followers.get(id);
    this.followers.delete(id);
    this.facts.delete(id);
    this.macCache.delete(id);
    if (fl) {
      await fl.stop();
      // Its logs are gone with it; once everything read is acknowledged the checkpoint has no use.
      if (fl.finished) await this.store.remove(id);
    } else await this.store.remove(id);
  }

  private async sampleAll(): Promise<void> {
    const { cfg, docker, node, codec } = this.deps;
    const classes = { internalNetworks: cfg.internalNetworks, externalNetworks: cfg.externalNetworks, defaultTrafficClass: cfg.defaultTrafficClass };
    await Promise.all(
      [...this.followers.values()].map(async (fl) => {
        try {
          const sample = await withDeadline('a stats sample', cfg.dockerTimeoutSeconds * 1000, (abortSignal) => sampleContainer(docker, fl.facts.id, { identity: fl.identity, node, classes, macCache: this.macCache, abortSignal }));
          if (!sample) return;
          this.metrics.statsSamples.inc();
          this.sender.enqueue({ topic: this.topics.stats, key: fl.facts.id, value: codec.encode('stats', sample), onAck: () => this.metrics.eventsProduced.inc({ topic: 'stats' }) });
        } catch (err) {
          this.metrics.dockerErrors.inc({ call: 'stats' });
          this.log.warn({ containerId: fl.facts.id.slice(0, 12), err: errorMessage(err) }, 'stats sample failed');
        }
      }),
    );
  }

  private saveState(): void {
    this.state.aliveAt = Date.now();
    const tmp = `${this.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.state));
    renameSync(tmp, this.stateFile);
  }
}

function readState(file: string): State {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as State;
  } catch {
    return { lastEventNano: 0, aliveAt: 0 };
  }
}

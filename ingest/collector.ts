/**
 * The per-node collector: follows Docker's events and every tenant container's logs,
 * samples their counters, and hands it all to Kafka as Avro events keyed by container.
 *
 * Start-up order matters for "nothing lost": the events stream is opened first (from
 * the last event seen before a restart), then existing containers are listed, so a
 * container started in between is seen by one or the other.
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import type { EventBus } from '../lib/bus/bus.js';
import type { AvroCodec } from '../schemas/codec.js';
import { CheckpointStore } from './checkpoint.js';
import type { CollectorConfig } from './config.js';
import { DropReporter } from './drops.js';
import { Follower } from './follower.js';
import { identityFromLabels, identityProblem, type Identity } from '../lib/identity.js';
import { LIFECYCLE_ACTIONS, baseAction, needsInspect, refusedContainerLetter, toLifecycleEvent, type DockerEvent } from './lifecycle.js';
import { factsFromInspect, type ContainerFacts } from '../lib/container.js';
import { TenantLimiter } from './ratelimit.js';
import { Sender } from './sender.js';
import { sampleContainer } from './stats.js';
import { collectorMetrics } from './telemetry.js';

export interface CollectorDeps {
  cfg: CollectorConfig;
  node: string;
  /** Checkpoints and the collector's own state live here. */
  stateDir: string;
  docker: Docker;
  bus: EventBus;
  codec: AvroCodec;
  logger: Logger;
  registry: Registry;
}

export interface Collector {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Totals for the live summary of `logmeter up`. */
  summary(): Promise<{ containers: number; linesProduced: number; linesDropped: number; bufferedBytes: number }>;
  /** Containers currently known with a tenant (for status output and tests). */
  followed(): Array<{ id: string; name: string; tenant: string; app: string; active: boolean }>;
  readonly sender: Sender;
}

interface State {
  /** Newest Docker event time handled (ns), to replay what happened while down. */
  lastEventNano: number;
  /** When the collector last ran, to pick up containers that stopped while it was down. */
  aliveAt: number;
}

export function createCollector(deps: CollectorDeps): Collector {
  const { cfg, docker, bus, codec, node } = deps;
  const log = deps.logger.child({ component: 'collector' });
  const metrics = collectorMetrics(deps.registry);
  const store = new CheckpointStore(path.join(deps.stateDir, 'checkpoints'));
  const stateFile = path.join(deps.stateDir, 'collector-state.json');
  const state: State = readState(stateFile);
  const sender = new Sender((batches) => bus.publishRawBatch(batches), {
    batchBytes: cfg.batchBytes,
    lingerMs: cfg.lingerMs,
    maxBufferedBytes: cfg.maxBufferedBytes,
    onError: () => metrics.kafkaErrors.inc(),
  }, log);
  const limiter = new TenantLimiter(cfg.rateLimit);
  const topics = { logs: bus.topic('logs'), lifecycle: bus.topic('lifecycle'), stats: bus.topic('stats') };
  const drops = new DropReporter({ sender, codec, topic: topics.lifecycle, node, intervalMs: cfg.dropReportSeconds * 1000 });
  const followers = new Map<string, Follower>();
  const facts = new Map<string, ContainerFacts>();
  const ignored = new Set<string>();
  const macCache: NonNullable<Parameters<typeof sampleContainer>[2]["macCache"]> = new Map();
  let events: (NodeJS.ReadableStream & { destroy(): void }) | undefined;
  let statsTimer: NodeJS.Timeout | undefined;
  let gaugeTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  let eventsDone: Promise<void> | undefined;

  const identityOf = (f: ContainerFacts | undefined, attrs?: Record<string, string>): Identity | undefined =>
    identityFromLabels(f?.labels ?? attrs, cfg.labelPrefix);

  async function inspect(id: string): Promise<ContainerFacts | undefined> {
    try {
      const f = factsFromInspect(await docker.getContainer(id).inspect());
      facts.set(id, f);
      return f;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) {
        metrics.dockerErrors.inc({ call: 'inspect' });
        log.warn({ containerId: id, err: errorMessage(err) }, 'inspect failed');
      }
      return facts.get(id);
    }
  }

  function ignore(f: ContainerFacts): void {
    if (ignored.has(f.id)) return;
    ignored.add(f.id);
    const problem = identityProblem(f.labels, cfg.labelPrefix);
    metrics.containersIgnored.inc({ reason: problem ? 'bad_label' : 'no_tenant' });
    if (!problem) return log.info({ container: f.name, containerId: f.id.slice(0, 12), label: `${cfg.labelPrefix}tenant` }, 'container has no tenant label; not collected');
    // Refused, not just unlabelled: said loudly, and dead-lettered so it shows where all refusals are kept.
    log.warn({ container: f.name, containerId: f.id.slice(0, 12), problem }, `container not collected: ${problem}`);
    sender.enqueue({ topic: bus.topic('dlq'), key: f.id, value: codec.encode('dlq', refusedContainerLetter(f, problem, cfg.labelPrefix, node, Date.now())) });
  }

  function follow(f: ContainerFacts): void {
    const identity = identityOf(f);
    if (!identity) return ignore(f);
    let fl = followers.get(f.id);
    if (!fl) {
      fl = new Follower(f, identity, {
        docker, store, sender, limiter, drops, codec, logsTopic: topics.logs, node, cfg, metrics, log,
        overlapMs: 2000,
        candidateEveryMs: 100,
      });
      followers.set(f.id, fl);
      log.info({ container: f.name, containerId: f.id.slice(0, 12), tenant: identity.tenant, app: identity.app }, 'container attached');
    }
    if (!fl.active) void fl.start().then(() => log.info({ container: f.name, containerId: f.id.slice(0, 12) }, 'container detached'));
  }

  async function onEvent(e: DockerEvent): Promise<void> {
    if (e.timeNano && e.timeNano > state.lastEventNano) state.lastEventNano = e.timeNano;
    const id = e.Actor?.ID ?? e.id ?? '';
    if (e.Type === 'network') {
      const cid = e.Actor?.Attributes?.container;
      if (cid && (e.Action === 'connect' || e.Action === 'disconnect')) {
        macCache.delete(cid);
        // Not awaited: a container being removed is disconnected while Docker holds its lock
        // (an inspect then waits 100-400 ms), and later events, other containers' starts too, would wait with it.
        void inspect(cid);
      }
      return;
    }
    if (e.Type !== 'container' || !e.Action) return;
    const action = baseAction(e.Action);
    if (!LIFECYCLE_ACTIONS.has(action)) return;
    const f = needsInspect(action, facts.has(id)) ? await inspect(id) : facts.get(id);
    const identity = identityOf(f, e.Actor?.Attributes);
    if (!identity) {
      if (f) ignore(f);
      return;
    }
    const ev = toLifecycleEvent(e, f, identity, node);
    sender.enqueue({ topic: topics.lifecycle, key: id, value: codec.encode('lifecycle', ev), onAck: () => metrics.eventsProduced.inc({ topic: 'lifecycle' }) });
    // Routes wait on lifecycle events (a start is a new upstream): sent now, not after lingerMs.
    void sender.flush();
    if ((action === 'start' || action === 'restart') && f) follow(f);
    if (action === 'destroy') {
      const fl = followers.get(id);
      followers.delete(id);
      facts.delete(id);
      macCache.delete(id);
      if (fl) {
        await fl.stop();
        // Its logs are gone with it; once everything read is acknowledged the checkpoint has no use.
        if (fl.finished) await store.remove(id);
      } else await store.remove(id);
    }
  }

  async function watchEvents(): Promise<void> {
    let attempt = 0;
    while (!stopping) {
      const since = state.lastEventNano > 0 ? `${Math.floor(state.lastEventNano / 1e9)}.${String(state.lastEventNano % 1e9).padStart(9, '0')}` : String(Math.floor(Date.now() / 1000));
      try {
        const stream = (await docker.getEvents({ since: since as unknown as number, filters: { type: ['container', 'network'] } })) as unknown as NodeJS.ReadableStream & { destroy(): void };
        events = stream;
        attempt = 0;
        let buf = '';
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          buf += chunk.toString('utf8');
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const text = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!text) continue;
            try {
              await onEvent(JSON.parse(text) as DockerEvent);
            } catch (err) {
              log.error({ err: errorMessage(err), event: text.slice(0, 300) }, 'docker event not handled');
            }
          }
        }
      } catch (err) {
        if (stopping) break;
        metrics.dockerErrors.inc({ call: 'events' });
        log.warn({ err: errorMessage(err) }, 'docker events stream failed; reconnecting');
      }
      if (stopping) break;
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt++)));
    }
  }

  async function sampleAll(): Promise<void> {
    const classes = { internalNetworks: cfg.internalNetworks, externalNetworks: cfg.externalNetworks, defaultTrafficClass: cfg.defaultTrafficClass };
    await Promise.all(
      [...followers.values()].map(async (fl) => {
        try {
          const sample = await sampleContainer(docker, fl.facts.id, { identity: fl.identity, node, classes, macCache });
          if (!sample) return;
          metrics.statsSamples.inc();
          sender.enqueue({ topic: topics.stats, key: fl.facts.id, value: codec.encode('stats', sample), onAck: () => metrics.eventsProduced.inc({ topic: 'stats' }) });
        } catch (err) {
          metrics.dockerErrors.inc({ call: 'stats' });
          log.warn({ containerId: fl.facts.id.slice(0, 12), err: errorMessage(err) }, 'stats sample failed');
        }
      }),
    );
  }

  function saveState(): void {
    state.aliveAt = Date.now();
    const tmp = `${stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, stateFile);
  }

  const total = async (m: { get(): Promise<{ values: Array<{ value: number }> }> }) => (await m.get()).values.reduce((a, v) => a + v.value, 0);

  return {
    sender,
    summary: async () => ({
      containers: [...followers.values()].filter((f) => f.active).length,
      linesProduced: await total(metrics.linesProduced),
      linesDropped: await total(metrics.linesDropped),
      bufferedBytes: sender.buffered,
    }),
    followed: () => [...followers.values()].map((f) => ({ id: f.facts.id, name: f.facts.name, tenant: f.identity.tenant, app: f.identity.app, active: f.active })),
    async start() {
      drops.start();
      eventsDone = watchEvents();
      let list: Docker.ContainerInfo[];
      try {
        list = await docker.listContainers({ all: true, filters: { label: [`${cfg.labelPrefix}tenant`] } });
      } catch (err) {
        stopping = true;
        events?.destroy();
        throw new LogmeterError('docker_unreachable', `Docker Engine API unreachable: ${errorMessage(err)}`, { retriable: true, cause: err });
      }
      for (const c of list) {
        const f = await inspect(c.Id);
        if (!f) continue;
        const cp = store.get(c.Id);
        const stoppedWhileDown = !f.running && !cp && Date.parse(f.finishedAt) >= state.aliveAt - 60_000 && state.aliveAt > 0;
        if (f.running || (cp && !cp.finished) || stoppedWhileDown) follow(f);
        else if (cp?.finished) {
          // Known and fully read: keep it ready for a restart.
          const id = identityOf(f);
          if (id) followers.set(f.id, new Follower(f, id, { docker, store, sender, limiter, drops, codec, logsTopic: topics.logs, node, cfg, metrics, log, overlapMs: 2000, candidateEveryMs: 100 }));
        }
      }
      statsTimer = setInterval(() => void sampleAll(), cfg.statsIntervalSeconds * 1000);
      gaugeTimer = setInterval(() => {
        const now = Date.now();
        metrics.containersFollowed.set([...followers.values()].filter((f) => f.active).length);
        metrics.bufferedBytes.set(sender.buffered);
        metrics.checkpointLag.set(Math.max(0, ...[...followers.values()].map((f) => f.lagMs(now))) / 1000);
        saveState();
      }, 1000);
      saveState();
      log.info({ containers: followers.size, stateDir: deps.stateDir }, 'collector started');
    },
    async stop() {
      stopping = true;
      if (statsTimer) clearInterval(statsTimer);
      if (gaugeTimer) clearInterval(gaugeTimer);
      events?.destroy();
      await eventsDone;
      await Promise.all([...followers.values()].map((f) => f.stop()));
      drops.stop();
      await sender.close();
      // Acks that arrived during close moved the committed points: write them.
      await Promise.all([...followers.values()].map((f) => f.stop()));
      saveState();
      log.info('collector stopped');
    },
  };
}

function readState(file: string): State {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as State;
  } catch {
    return { lastEventNano: 0, aliveAt: 0 };
  }
}

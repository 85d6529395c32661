/**
 * Start hints: the routes lane's own watch of Docker's event stream, so that a new
 * container is in HAProxy without waiting for its lifecycle event to go collector → Kafka
 * → route table → routes topic → applier (issue 15: on a busy node each of those hops waits
 * for a CPU). For every `start` of a container with an lb-host label: the container is
 * inspected, its lifecycle event built exactly as the collector builds it
 * (ingest/lifecycle.ts), the route table says what the event would add (its own rules:
 * tenant claims, published port; `RoutePreview`), and the applier brings that one server in
 * ahead of the set (applier.ts, hints.ts). The set that follows decides; a hint never takes
 * anything out, and one the topic does not confirm is taken out again — at once when Docker
 * says the container ended (die, stop, destroy) before its set came.
 *
 * Only events from the watch's start on; a broken stream is reopened from the newest
 * event handled (ingest/docker-events.ts). A failed inspect only loses the hint: the set
 * still comes through Kafka.
 */
import type Docker from 'dockerode';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import { errorMessage } from '../../lib/errors.js';
import { factsFromInspect, portBindings, type ContainerFacts } from '../../lib/container.js';
import { identityFromLabels } from '../../lib/identity.js';
import { counter } from '../../lib/metrics.js';
import { DockerEvents } from '../../ingest/docker-events.js';
import { withDeadline } from '../../ingest/docker-calls.js';
import { toLifecycleEvent, type DockerEvent } from '../../ingest/lifecycle.js';
import type { RouteProcessor } from './processor.js';
import type { RouteApplier } from './applier.js';

export interface StartHintsDeps {
  docker: Docker;
  /** The label prefix of the routes config (`<prefix>lb-host`, `<prefix>tenant`, …). */
  labelPrefix: string;
  /** Node name written into the previewed event (as the collector of this node writes it). */
  node: string;
  processor: Pick<RouteProcessor, 'preview'>;
  applier: Pick<RouteApplier, 'hint' | 'retract'>;
  logger: Logger;
  registry: Registry;
  /** Longest wait for Docker to answer the events request or an inspect, ms. Default 10000. */
  dockerTimeoutMs?: number;
}

export interface StartHints {
  stop(): Promise<void>;
}

/** Created containers whose facts are kept for their start (the oldest dropped beyond it: such a start is inspected). */
const MAX_CREATED = 1000;

/**
 * A created container's facts as its start will have them, when its create fixed them: every
 * published port bound to an explicit host address and port (`-p 127.0.0.1:8080:80`). Docker
 * assigns an ephemeral port (`-p 80`, `HostPort` empty) and picks the address for an empty
 * `HostIp` (its `--ip` setting) only at the start: such a container is inspected after it.
 * Undefined when the create does not fix them.
 */
export function startFactsAtCreate(info: Docker.ContainerInspectInfo): ContainerFacts | undefined {
  const ports = portBindings(info.HostConfig?.PortBindings);
  if (ports.length === 0 || ports.some((p) => !p.host_ip || !Number.isInteger(p.host_port) || p.host_port <= 0 || p.host_port > 65535)) return undefined;
  return { ...factsFromInspect(info), ports, running: true };
}

export function startStartHints(deps: StartHintsDeps): StartHints {
  const log = deps.logger.child({ component: 'route-start-hints' });
  const starts = counter(deps.registry, 'logmeter_routes_start_events_seen_total', "Starts of containers with an lb-host label seen in Docker's event stream by the routes lane, by what became of them", ['result']);
  const factSource = counter(deps.registry, 'logmeter_routes_start_hint_facts_total', "Where a start hint's container facts came from: its inspect at create (its published ports fixed there), or an inspect after the start", ['source']);
  const timeoutMs = deps.dockerTimeoutMs ?? 10_000;
  /** Containers created (with an lb-host label) and not started yet: their facts, read at create. */
  const created = new Map<string, Promise<ContainerFacts | undefined>>();
  const lbLabel = `${deps.labelPrefix}lb-host`;
  let newest = 0;
  let stopping = false;
  const inFlight = new Set<Promise<void>>();

  const inspect = (id: string) => withDeadline('an inspect', timeoutMs, (abortSignal) => deps.docker.getContainer(id).inspect({ abortSignal }));

  /** The container's facts for its start: from its inspect at `create` when that fixed its published ports, else inspected now. */
  async function factsFor(id: string, created: Promise<ContainerFacts | undefined> | undefined): Promise<ContainerFacts | undefined> {
    const early = created ? await created : undefined;
    if (early) {
      factSource.inc({ source: 'create' });
      return early;
    }
    const info = await inspect(id);
    factSource.inc({ source: 'inspect' });
    // Seen late (the container ended meanwhile): nothing to bring in.
    return info.State?.Running ? factsFromInspect(info) : undefined;
  }

  async function hintFor(e: DockerEvent, id: string, seen: number, created: Promise<ContainerFacts | undefined> | undefined): Promise<void> {
    const facts = await factsFor(id, created);
    const inspected = Date.now();
    if (stopping) return;
    if (!facts) return void starts.inc({ result: 'not_running' });
    const identity = identityFromLabels(facts.labels, deps.labelPrefix);
    if (!identity) return void starts.inc({ result: 'no_tenant' });
    const preview = deps.processor.preview(toLifecycleEvent(e, facts, identity, deps.node));
    if (!preview) return void starts.inc({ result: 'not_routed' });
    const trace = { event: e.timeNano ? e.timeNano / 1e6 : seen, seen, inspected };
    starts.inc({ result: deps.applier.hint({ host: preview.host, upstream: preview.upstream, version: preview.version, trace }) ? 'hinted' : 'left_to_set' });
  }

  const events = new DockerEvents({
    docker: deps.docker,
    log,
    since: () => newest,
    timeoutMs,
    onError: () => undefined,
    onEvent: (e) => {
      if (e.timeNano && e.timeNano > newest) newest = e.timeNano;
      const id = e.Actor?.ID ?? e.id;
      const action = e.Action ?? e.status;
      if (e.Type !== 'container' || !id || e.Actor?.Attributes?.[lbLabel] === undefined) return Promise.resolve();
      // An end before the set settled a hint: the hinted server goes at once (hints.ts rule 4).
      if (action === 'die' || action === 'stop' || action === 'destroy') {
        created.delete(id);
        deps.applier.retract(id);
        return Promise.resolve();
      }
      if (action === 'create') {
        // Read now, while nothing waits on it: at its start the hint then needs no inspect.
        created.set(id, inspect(id).then(startFactsAtCreate, () => undefined));
        while (created.size > MAX_CREATED) created.delete(created.keys().next().value!);
        return Promise.resolve();
      }
      if (action !== 'start') return Promise.resolve();
      const early = created.get(id);
      created.delete(id);
      // Not awaited: a slow inspect must not hold the next start's hint.
      const p = hintFor(e, id, Date.now(), early)
        .catch((err: unknown) => {
          starts.inc({ result: 'inspect_failed' });
          log.debug({ containerId: id.slice(0, 12), err: errorMessage(err) }, 'no start hint (inspect failed); the route set comes through Kafka');
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      return Promise.resolve();
    },
  });
  newest = Date.now() * 1e6;
  events.start();
  log.info('watching Docker for container starts (start hints)');
  return {
    async stop() {
      stopping = true;
      await events.stop();
      await Promise.all([...inFlight]);
    },
  };
}

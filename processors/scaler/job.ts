/**
 * One run of a scale job, holding the app's lock (processor.ts takes it). Each run
 * re-reads the replicas from Docker, so a retried or repeated job does only what is
 * still missing; what to do is {@link planScale}'s. Growing starts replicas from the
 * app's template (docker.ts), counted and started under the node lock so two apps
 * cannot both take the last places under the cap. Shrinking drains the newest replicas
 * first: a `drain` event per replica (the route table removes the upstream), `drainMs`
 * of waiting, then stop and remove, newest first. Only the scaler's own replicas are
 * ever stopped: the tenant's containers are the tenant's (plan.ts' states).
 *
 * {@link ScaleJobRunner.sweep} is the same for an app no signal mentions any more: when
 * its tenant removed the app's own containers, the replicas left behind are drained and
 * removed.
 *
 * On several nodes (`nodes` given: cluster.ts) a job runs on its node's engine and
 * counts the app over every node: this node's containers live, the others' from their
 * reports. It does this node's part (nodes.ts rules 5-6: the replicas that fit under
 * this node's cap; the replicas newer than any other node's), writes this node's report
 * again, and hands the rest on as a job of the same target on the next node. A handed-on
 * job plans with the first job's id, so the first part's change does not hold it back
 * by the cooldown. While a node is silent (cluster.ts) an app with no own container on
 * the reporting nodes is left as it is: its own containers may run on the silent one.
 */
import type Docker from 'dockerode';
import { LogmeterError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { factsFromInspect } from '../../lib/container.js';
import type { ScalerConfig } from './config.js';
import type { NodeCluster } from './cluster.js';
import { addCensus, clusterCensus, handOnUp, maxReplicas, newestReplica, newestTemplate, placeDown, removeHere, withDeclared, type NodeReport } from './nodes.js';
import { censusOf, countNodeContainers, isScalerReplica, listReplicas, replicaName, replicaSpec, startReplica, stopReplica, type Replica } from './docker.js';
import { planScale, type Plan } from './plan.js';
import type { Reporter } from './reporter.js';
import type { ScaleJobData, ScaleJobResult } from './signal.js';
import { LOCK_TTL_MS, appKey, type ScalerState } from './state.js';
import type { ScalerMetrics } from './telemetry.js';

export class ScaleJobRunner {
  /** How long an app's last change is kept: longer than any cooldown, short enough that removed apps are forgotten. */
  private readonly keepChangeMs: number;

  constructor(
    private readonly docker: Docker,
    private readonly state: ScalerState,
    private readonly reporter: Reporter,
    private readonly metrics: ScalerMetrics,
    private readonly log: Logger,
    private readonly cfg: ScalerConfig,
    private readonly clock: () => Date,
    /** `<tenant>/<app>` of the apps opted in by the config file (`autoscale.apps`). */
    private readonly optedIn: ReadonlySet<string>,
    /** On several nodes, the other nodes and the handing on; undefined on one. */
    private readonly nodes?: NodeCluster,
  ) {
    this.keepChangeMs = Math.max(cfg.cooldownMs.up, cfg.cooldownMs.down) + 3600_000;
  }

  async run(data: ScaleJobData, thisJob: string): Promise<ScaleJobResult> {
    const { cfg } = this;
    const { tenant, app } = data;
    // A handed-on job is a part of its first job: the same id for cooldowns and events.
    const jobId = data.root ?? thisJob;
    const replicas = await listReplicas(this.docker, cfg.labelPrefix, tenant, app);
    const { others, silent } = this.nodes ? await this.nodes.othersView() : { others: [], silent: [] };
    const census = addCensus(censusOf(replicas.map((r) => r.info.Config.Labels), cfg.labelPrefix), clusterCensus(others, appKey(tenant, app)));
    const current = census.current;
    const optedIn = census.labelledOptIn || this.optedIn.has(`${tenant}/${app}`);
    const unchanged: ScaleJobResult = { action: 'none', from: current, to: current, containers: [] };
    if (census.own === 0 && census.current > 0 && silent.length > 0) {
      // Own containers may run on a silent node: the tenant's removal cannot be told from a node gone quiet.
      this.log.warn({ tenant, app, job: thisJob, silent }, 'no own container on the reporting nodes, but some nodes are silent: replicas left as they are');
      return unchanged;
    }
    const lastChange = await this.state.lastChange(appKey(tenant, app));
    const max = maxReplicas(others.length + 1, cfg.maxContainersPerNode);
    const planFor = (nodeContainers: number): Plan =>
      planScale({ current, own: census.own, optedIn, requested: data.requested, nodeContainers, maxContainersPerNode: cfg.maxContainersPerNode, maxReplicas: max, cooldownMs: cfg.cooldownMs, lastChange, now: this.clock().getTime(), jobId });

    // Growth is planned again under the node lock, with the node's count; the rest needs none.
    const first = planFor(0);
    if (first.kind === 'none') {
      this.log.debug({ tenant, app, job: jobId, replicas: current }, 'scale job: nothing to do');
      return unchanged;
    }
    if (first.kind === 'refused') return this.reporter.refuse(data, jobId, first);
    if (first.kind === 'down') return this.shrinkHere(data, thisJob, replicas, first, others);
    const nodeLock = await this.state.lock(this.nodes ? `node:${encodeURIComponent(this.nodes.node)}` : 'node', LOCK_TTL_MS);
    if (!nodeLock) throw new LogmeterError('scaler_node_busy', 'the node lock stayed held by another scale-up', { retriable: true });
    try {
      const nodeContainers = await countNodeContainers(this.docker, cfg.labelPrefix);
      this.metrics.nodeContainers.set(nodeContainers);
      const p = planFor(nodeContainers);
      if (p.kind === 'refused' && p.reason === 'cap' && this.nodes) return await this.handOnGrowth(data, thisJob, { ...p, nodes: others.length + 1 }, unchanged, others);
      if (p.kind === 'refused') return await this.reporter.refuse(data, jobId, p);
      if (p.kind !== 'up') return unchanged;
      const grown = await this.grow(data, jobId, replicas, p, nodeContainers, others);
      if (p.cappedAt === undefined) {
        await this.nodes?.report();
        return grown;
      }
      const rest = { kind: 'refused', reason: 'cap', from: p.to, to: p.target, nodeContainers: nodeContainers + p.add, cap: cfg.maxContainersPerNode } as const;
      if (!this.nodes) {
        await this.reporter.refuse(data, jobId, rest);
        return grown;
      }
      return await this.handOnGrowth(data, thisJob, { ...rest, nodes: others.length + 1 }, grown, others);
    } finally {
      await nodeLock.release();
    }
  }

  /** Several nodes, rule 6: the growth this node could not take goes to the unvisited node with the most free places; none: the cap refusal. */
  private async handOnGrowth(data: ScaleJobData, thisJob: string, refusal: Extract<Plan, { kind: 'refused'; reason: 'cap' }>, done: ScaleJobResult, others: NodeReport[]): Promise<ScaleJobResult> {
    const nodes = this.nodes!;
    await nodes.report();
    const next = handOnUp(others, data.visited ?? [nodes.node]);
    if (next === undefined) {
      const refused = await this.reporter.refuse(data, data.root ?? thisJob, refusal);
      return done.containers.length > 0 ? done : refused;
    }
    await nodes.handOn(data, thisJob, next);
    return { ...done, handedOn: next };
  }

  /** Shrinking: on one node all of it; on several, rule 5's part here, then the rest handed on to the node of the newest replica left. */
  private async shrinkHere(data: ScaleJobData, thisJob: string, replicas: Replica[], p: Extract<Plan, { kind: 'down' }>, others: NodeReport[]): Promise<ScaleJobResult> {
    const jobId = data.root ?? thisJob;
    if (!this.nodes) return this.shrink(data, jobId, replicas, p, p.remove);
    const key = appKey(data.tenant, data.app);
    const mine = replicas.filter((r) => isScalerReplica(r.info.Config.Labels, this.cfg.labelPrefix)).map((r) => r.createdNs);
    const here = p.removed ? mine.length : removeHere(mine, newestReplica(others, key)?.ns, p.remove);
    const done = here > 0 ? await this.shrink(data, jobId, replicas, p, here) : { action: 'none' as const, from: p.from, to: p.from, containers: [] };
    await this.nodes.report();
    if (here >= p.remove && !p.removed) return done;
    const next = placeDown(others, key);
    if (next === undefined) return done;
    await this.nodes.handOn(data, thisJob, next);
    return { ...done, handedOn: next };
  }

  private recordChange(data: ScaleJobData, jobId: string, direction: 'up' | 'down'): Promise<void> {
    return this.state.recordChange(appKey(data.tenant, data.app), { at: this.clock().getTime(), job: jobId, direction }, this.keepChangeMs);
  }

  private async grow(data: ScaleJobData, jobId: string, replicas: Replica[], p: Extract<Plan, { kind: 'up' }>, nodeContainers: number, others: NodeReport[]): Promise<ScaleJobResult> {
    const { cfg } = this;
    const { tenant, app } = data;
    const declared = cfg.apps[`${tenant}/${app}`];
    // The newest running replica here is the template; on several nodes next the newest another node reported (rule 7); then the newest here in any state.
    const reported = replicas[0] ? undefined : newestTemplate(others, appKey(tenant, app));
    const source = replicas[0]?.info ?? (reported ? undefined : (await listReplicas(this.docker, cfg.labelPrefix, tenant, app, { all: true }))[0]?.info);
    const template = withDeclared(reported, declared);
    if (!source && !template?.image) return this.reporter.refuse(data, jobId, { kind: 'refused', reason: 'no_template', from: p.from, to: p.target });
    const started: string[] = [];
    for (let n = 1; n <= p.add; n++) {
      const info = await startReplica(this.docker, replicaSpec({ source, template, tenant, app, labelPrefix: cfg.labelPrefix, name: replicaName(app, tenant) }));
      started.push(info.Id);
      await this.recordChange(data, jobId, 'up');
      const facts = factsFromInspect(info);
      await this.reporter.emit('scale_up', data, jobId, facts, p, `scaled up ${app} ${p.from} → ${p.to}: started ${facts.name} (${n} of ${p.add}${this.nodes ? ` on ${this.nodes.node}` : ''}); ${data.reason}`);
    }
    return { action: 'scale_up', from: p.from, to: p.to, containers: started };
  }

  private async shrink(data: ScaleJobData, jobId: string, replicas: Replica[], p: Extract<Plan, { kind: 'down' }>, remove: number): Promise<ScaleJobResult> {
    const { cfg } = this;
    // Newest first: the youngest replicas were added last and hold the least warm state. Never a tenant's own container.
    const surplus = replicas
      .filter((r) => isScalerReplica(r.info.Config.Labels, cfg.labelPrefix))
      .slice(0, remove)
      .map((r) => factsFromInspect(r.info));
    const why = p.removed ? 'the tenant stopped or removed the app\'s own containers' : data.reason;
    for (const facts of surplus) {
      await this.reporter.emit('drain', data, jobId, facts, p, `draining ${facts.name} before stopping it (scale down ${p.from} → ${p.to}); stop in ${cfg.drainMs} ms`);
    }
    // The route table takes the upstreams out on `drain`; requests in flight finish meanwhile.
    if (cfg.drainMs > 0) await new Promise((r) => setTimeout(r, cfg.drainMs));
    const stopped: string[] = [];
    for (const [i, facts] of surplus.entries()) {
      await stopReplica(this.docker, facts.id, cfg.stopTimeoutSeconds);
      stopped.push(facts.id);
      await this.recordChange(data, jobId, 'down');
      await this.reporter.emit('scale_down', data, jobId, facts, p, `scaled down ${data.app} ${p.from} → ${p.to}: stopped ${facts.name} (${i + 1} of ${surplus.length}); ${why}`);
    }
    return { action: 'scale_down', from: p.from, to: p.to, containers: stopped };
  }

  /**
   * The sweep of one app with scaler replicas running: when no own container of the
   * tenant's runs any more (plan.ts' `removed`), every replica is drained and removed.
   * Call it holding the app's lock. Returns the containers removed.
   */
  async sweep(tenant: string, app: string): Promise<string[]> {
    const replicas = await listReplicas(this.docker, this.cfg.labelPrefix, tenant, app);
    const census = censusOf(replicas.map((r) => r.info.Config.Labels), this.cfg.labelPrefix);
    // On several nodes the tenant's own containers on any node keep the app (the others' as reported).
    const { others, silent } = this.nodes ? await this.nodes.othersView() : { others: [], silent: [] };
    const ownElsewhere = clusterCensus(others, appKey(tenant, app)).own;
    // A silent node may run the app's own containers: not a removal anyone can tell.
    if (census.own + ownElsewhere > 0 || census.current === 0 || silent.length > 0) return [];
    const now = this.clock().getTime();
    const jobId = `sweep|${appKey(tenant, app)}|${now}`;
    const data: ScaleJobData = { tenant, app, host: '', requested: 0, target: 0, signal_version: 0, signal_current: census.current, signal_ts: now, mode: 'stable', reason: 'the tenant removed the app' };
    const p = planScale({ current: census.current, own: 0, requested: 0, nodeContainers: 0, maxContainersPerNode: this.cfg.maxContainersPerNode, cooldownMs: this.cfg.cooldownMs, lastChange: undefined, now, jobId });
    if (p.kind !== 'down') return [];
    const removed = (await this.shrink(data, jobId, replicas, p, p.remove)).containers;
    if (removed.length > 0) await this.nodes?.report();
    return removed;
  }
}

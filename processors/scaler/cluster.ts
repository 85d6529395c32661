/**
 * The scaler's Redis and bullmq side on several Docker nodes (`scaler.severalNodes`; the
 * placement rules are nodes.ts'):
 * - a queue per node, `<topicPrefix>scaler.<node>` (the node percent-encoded): a node's
 *   worker consumes only its own and runs Docker there; any scaler adds to any node's;
 * - `<base>:node:<node>`: the node's report (JSON, nodes.ts' NodeReport), written every
 *   `nodeReportMs` and after each change the node makes, expiring `nodeReportTtlMs` after
 *   its last write: a node whose scaler stopped or died gets no new job;
 * - `<base>:nodes`: the nodes that reported (a sorted set scored by the last report), so
 *   reports are read without a scan. A member without a live report is *silent*: no job
 *   is placed on it, and since nobody knows what runs there, no app counts as removed by
 *   its tenant while one is silent (the replicas elsewhere stay). A member silent for
 *   {@link FORGET_AFTER_TTLS} report lifetimes is forgotten (dropped on read). A scaler
 *   that stops deletes its report and stays a member: silent, then forgotten.
 * `<base>` is the scaler's state prefix (state.ts), the same on every node, so the app
 * locks, cooldowns and refusals are shared; the cap lock is per node (`lock:node:<node>`).
 *
 * A report is taken from Docker in one list and an inspect per running tenant container.
 * This node's own view is always taken live (its jobs count its replicas in Docker); only
 * the other nodes' come from their reports.
 */
import { Queue } from 'bullmq';
import type Docker from 'dockerode';
import type { Redis } from 'ioredis';
import type { Logger } from '../../lib/logger.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import { serial } from '../../lib/serial.js';
import type { ScalerConfig } from './config.js';
import { appCensus, createdNanos, inspectMatching, isScalerReplica, templateOf, type Census } from './docker.js';
import type { Placement, ScaleQueue } from './intake.js';
import { KEEP_COMPLETED_SECONDS, KEEP_FAILED_SECONDS } from './intake.js';
import { addCensus, clusterCensus, maxReplicas, placeDown, placeUp, type AppOnNode, type NodeReport } from './nodes.js';
import { optsIn } from './plan.js';
import type { ScaleJobData } from './signal.js';
import { appKey, type ScalerState } from './state.js';

/** A node silent for this many report lifetimes (`nodeReportTtlMs`) is forgotten. */
export const FORGET_AFTER_TTLS = 10;

/** Most nodes one job visits (a handed-on job counts each hop). */
export const MAX_HOPS = 64;

/** `<cluster queue>.<node>`, the node percent-encoded (bullmq refuses `:` in names). */
export function nodeQueueName(clusterQueue: string, node: string): string {
  return `${clusterQueue}.${encodeURIComponent(node)}`;
}

/** The report of a node from its engine: every running tenant container, inspected. */
export async function takeReport(docker: Docker, node: string, cfg: ScalerConfig, now: number): Promise<NodeReport> {
  const prefix = cfg.labelPrefix;
  const inspected = await inspectMatching(docker, { label: [`${prefix}tenant`], status: ['running'] });
  const apps: Record<string, AppOnNode> = {};
  const templateAt = new Map<string, bigint>();
  let running = 0;
  for (const info of inspected) {
    if (!info.State.Running) continue;
    running += 1;
    const labels = info.Config.Labels ?? {};
    const tenant = labels[`${prefix}tenant`];
    const app = labels[`${prefix}app`];
    if (!tenant || app === undefined) continue;
    const key = appKey(tenant, app);
    const created = createdNanos(info.Created);
    const a = (apps[key] ??= { tenant, app, running: 0, own: 0, optedIn: false, replicas: 0, newestReplicaNs: '', templateNs: '', template: {} });
    a.running += 1;
    if (isScalerReplica(labels, prefix)) {
      a.replicas += 1;
      if (a.newestReplicaNs === '' || created > BigInt(a.newestReplicaNs)) a.newestReplicaNs = created.toString();
    } else {
      a.own += 1;
      a.optedIn ||= optsIn(labels, prefix);
    }
    const at = templateAt.get(key);
    if (at === undefined || created > at) {
      templateAt.set(key, created);
      a.template = templateOf(info);
      a.templateNs = created.toString();
    }
  }
  const cap = cfg.maxContainersPerNode;
  return { node, running, cap, free: Math.max(0, cap - running), at: now, apps };
}

export interface NodeClusterOptions {
  /** A non-blocking connection, also the queues'. */
  redis: Redis;
  /** bullmq key prefix (undefined: bullmq's `bull`). */
  bullPrefix: string | undefined;
  /** `<topicPrefix>scaler`: the queues are named after it. */
  clusterQueue: string;
  state: ScalerState;
  /** This node's name (`LOGMETER_NODE`). */
  node: string;
  docker: Docker;
  cfg: ScalerConfig;
  log: Logger;
  clock: () => Date;
}

export class NodeCluster implements Placement {
  readonly node: string;
  private readonly queuesByNode = new Map<string, ScaleQueue>();
  private readonly reporting = serial();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: NodeClusterOptions) {
    this.node = o.node;
  }

  /** This node's queue name (what its worker consumes). */
  get queueName(): string {
    return nodeQueueName(this.o.clusterQueue, this.node);
  }

  private key(...parts: string[]): string {
    return [this.o.state.base, ...parts].join(':');
  }

  /** The queue of `node` (opened once). */
  queue(node: string): ScaleQueue {
    let q = this.queuesByNode.get(node);
    if (!q) {
      q = new Queue(nodeQueueName(this.o.clusterQueue, node), { connection: this.o.redis, ...(this.o.bullPrefix ? { prefix: this.o.bullPrefix } : {}) });
      q.on('error', (err) => this.o.log.error({ err, node }, 'scaler node queue error'));
      this.queuesByNode.set(node, q);
    }
    return q;
  }

  /** Takes this node's report from Docker and writes it (one at a time); returns it. */
  report(): Promise<NodeReport> {
    return this.reporting.run(async () => {
      const r = await takeReport(this.o.docker, this.node, this.o.cfg, this.o.clock().getTime());
      const ttl = this.o.cfg.nodeReportTtlMs;
      await this.o.redis
        .multi()
        .set(this.key('node', encodeURIComponent(this.node)), JSON.stringify(r), 'PX', ttl)
        .zadd(this.key('nodes'), Date.now(), this.node)
        .exec();
      return r;
    });
  }

  /** Reports now and every `nodeReportMs`. */
  async start(): Promise<void> {
    await this.report();
    this.timer = setInterval(() => {
      if (this.reporting.size === 0) this.report().catch((err: unknown) => this.o.log.warn({ err: errorMessage(err), node: this.node }, 'node report failed; the next one tries again'));
    }, this.o.cfg.nodeReportMs);
  }

  /** Every live report (this node's as last written) by node name, and the silent nodes. */
  async view(): Promise<{ reports: NodeReport[]; silent: string[] }> {
    const members = await this.o.redis.zrange(this.key('nodes'), '0', '-1', 'WITHSCORES');
    const nodes: Array<{ node: string; at: number }> = [];
    for (let i = 0; i + 1 < members.length; i += 2) nodes.push({ node: members[i]!, at: Number(members[i + 1]) });
    if (nodes.length === 0) return { reports: [], silent: [] };
    const raw = await this.o.redis.mget(...nodes.map((n) => this.key('node', encodeURIComponent(n.node))));
    const reports: NodeReport[] = [];
    const silent: string[] = [];
    const forgotten: string[] = [];
    const forgetBefore = Date.now() - FORGET_AFTER_TTLS * this.o.cfg.nodeReportTtlMs;
    nodes.forEach((n, i) => {
      const r = raw[i];
      if (r) reports.push(JSON.parse(r) as NodeReport);
      else if (n.at < forgetBefore) forgotten.push(n.node);
      else silent.push(n.node);
    });
    if (forgotten.length > 0) await this.o.redis.zrem(this.key('nodes'), ...forgotten);
    return { reports: reports.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)), silent: silent.filter((n) => n !== this.node) };
  }

  /** Every live report, by node name. */
  async reports(): Promise<NodeReport[]> {
    return (await this.view()).reports;
  }

  /** The other nodes' live reports, and the silent nodes. */
  async othersView(): Promise<{ others: NodeReport[]; silent: string[] }> {
    const { reports, silent } = await this.view();
    return { others: reports.filter((r) => r.node !== this.node), silent };
  }

  /** The other nodes' live reports. */
  async others(): Promise<NodeReport[]> {
    return (await this.othersView()).others;
  }

  /** This node's containers of the app counted live, the others' from their reports (nodes.ts rules 1-2). */
  async census(tenant: string, app: string): Promise<{ census: Census; maxReplicas: number }> {
    const [local, others] = await Promise.all([appCensus(this.o.docker, this.o.cfg.labelPrefix, tenant, app), this.others()]);
    return { census: addCensus(local, clusterCensus(others, appKey(tenant, app))), maxReplicas: maxReplicas(others.length + 1, this.o.cfg.maxContainersPerNode) };
  }

  /** Rules 3-4: the node with the most room for growth, the node of the newest replica for shrinking; this node when none reports. */
  async queueFor(tenant: string, app: string, direction: 'up' | 'down'): Promise<ScaleQueue> {
    const reports = await this.reports();
    const node = direction === 'up' ? placeUp(reports) : placeDown(reports, appKey(tenant, app));
    return this.queue(node ?? this.node);
  }

  async queues(): Promise<ScaleQueue[]> {
    const nodes = new Set([this.node, ...(await this.reports()).map((r) => r.node)]);
    return [...nodes].map((n) => this.queue(n));
  }

  /**
   * Hands the rest of a job on to `node` (nodes.ts rules 5-6): a job of the same target
   * there, id `<root>><hop>><node>`, made the app's pending job. Returns its id.
   */
  async handOn(data: ScaleJobData, jobId: string, node: string): Promise<string> {
    const root = data.root ?? jobId;
    const visited = [...(data.visited ?? [this.node]), node];
    // Each hop does a part or finds the reports changed; this many means they keep contradicting the engines.
    if (visited.length > MAX_HOPS) throw new LogmeterError('scaler_hand_on_loop', `scale job ${root} handed on ${MAX_HOPS} times: the nodes' reports contradict their engines`, { retriable: false });
    const id = `${root}>${visited.length - 1}>${encodeURIComponent(node)}`;
    const cfg = this.o.cfg;
    await this.queue(node).add(
      'scale',
      { ...data, root, visited },
      { jobId: id, attempts: cfg.jobAttempts, backoff: { type: cfg.backoff.type, delay: cfg.backoff.delayMs }, removeOnComplete: { age: KEEP_COMPLETED_SECONDS }, removeOnFail: { age: KEEP_FAILED_SECONDS } },
    );
    await this.o.state.setPending(appKey(data.tenant, data.app), id, KEEP_FAILED_SECONDS * 1000);
    this.o.log.info({ tenant: data.tenant, app: data.app, job: jobId, handed_on: id, to_node: node }, 'rest of the scale job handed on');
    return id;
  }

  /** Stops reporting and withdraws this node's report (no new job is placed here; the node is silent until forgotten); closes the queues. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.reporting.idle();
    await this.o.redis
      .del(this.key('node', encodeURIComponent(this.node)))
      .catch((err: unknown) => this.o.log.warn({ err: errorMessage(err) }, 'node report not withdrawn; it expires'));
    await Promise.allSettled([...this.queuesByNode.values()].map((q) => q.close()));
  }
}

/**
 * Where the scaler puts and takes replicas when it runs on several Docker nodes
 * (`scaler.severalNodes`), as plain functions of the nodes' reports. No I/O: cluster.ts
 * writes and reads the reports; every rule is tested in test/scaler-placement.test.ts.
 *
 * A node's report ({@link NodeReport}) says its running tenant containers, its cap
 * (`maxContainersPerNode`) and its free places, and per app on it: the running
 * containers, the tenant's own among them, whether an own one opts in, the scaler's
 * replicas with the newest one's creation time, and the app's template (image, command,
 * entrypoint, env, labels, published ports, limits, init — from the app's newest running
 * container there).
 *
 * Rules:
 * 1. An app's census is the sum over the nodes of its running and own containers; it
 *    opted in when an own container on any node did.
 * 2. An app may have at most the cap times the nodes reporting; each node still
 *    guards its own cap when it starts a replica.
 * 3. Scale-up goes to the node with the most free places (ties: by name, so every
 *    scaler picks the same). When no node has one, still to the node with the most
 *    room: its job finds no place and the refusal is reported there, once.
 * 4. Scale-down goes to the node of the app's newest scaler replica.
 * 5. A node removes its own newest replicas while they are newer than every other
 *    node's newest one (so the newest go first over all nodes), at most as many as the
 *    job asks; the rest is handed on by rule 4.
 * 6. A node grows by as many as its room allows; the rest is handed on to the node with
 *    the most free places among those the job has not visited. When none has a free
 *    place, the rest is refused for the cap.
 * 7. A replica on a node where the app has no container is made from the newest
 *    template reported for the app on any node, with the app's declared template
 *    (config `scaler.apps`) on top. Networks are the node's own and are not reported:
 *    such a replica joins its engine's default network unless the declared template
 *    names networks that exist there.
 */
import type { AppTemplate } from './config.js';
import type { Census } from './docker.js';

/** One app on one node. */
export interface AppOnNode {
  tenant: string;
  app: string;
  /** Running containers of the app on the node, own and the scaler's. */
  running: number;
  /** Of which the tenant's own. */
  own: number;
  /** An own container there opts in (label `autoscale.max` or `autoscale=on`). */
  optedIn: boolean;
  /** The scaler's replicas running there. */
  replicas: number;
  /** Creation time of the newest scaler replica there, nanoseconds since the epoch in decimal; '' when none. */
  newestReplicaNs: string;
  /** Creation time of the container the template was taken from (decimal ns). */
  templateNs: string;
  /** The app as it runs there, for a replica on another node. */
  template: AppTemplate;
}

/** What a node's scaler reports about its engine. */
export interface NodeReport {
  node: string;
  /** Running tenant containers (every app). */
  running: number;
  /** The node's `maxContainersPerNode`. */
  cap: number;
  /** max(0, cap − running). */
  free: number;
  /** When it was taken (ms since the epoch). */
  at: number;
  /** Per `appKey(tenant, app)`. */
  apps: Record<string, AppOnNode>;
}

const ns = (s: string | undefined): bigint | undefined => (s ? BigInt(s) : undefined);

/** Rule 1: the app's census over the reports. */
export function clusterCensus(reports: readonly NodeReport[], key: string): Census {
  const c: Census = { current: 0, own: 0, labelledOptIn: false };
  for (const r of reports) {
    const a = r.apps[key];
    if (!a) continue;
    c.current += a.running;
    c.own += a.own;
    c.labelledOptIn ||= a.optedIn;
  }
  return c;
}

/** Two censuses together (this node's, counted live, and the others' reported ones). */
export function addCensus(a: Census, b: Census): Census {
  return { current: a.current + b.current, own: a.own + b.own, labelledOptIn: a.labelledOptIn || b.labelledOptIn };
}

/** Rule 2: the most replicas an app may have over `nodes` nodes (at least one: the scaler's own). */
export function maxReplicas(nodes: number, maxContainersPerNode: number): number {
  return maxContainersPerNode * Math.max(1, nodes);
}

function byRoom(reports: readonly NodeReport[], exclude: readonly string[]): NodeReport[] {
  return reports.filter((r) => !exclude.includes(r.node)).sort((a, b) => b.free - a.free || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

/** Rule 3: the node a scale-up goes to; undefined only when no node reports. */
export function placeUp(reports: readonly NodeReport[]): string | undefined {
  return byRoom(reports, [])[0]?.node;
}

/** Rule 6: the node the rest of a scale-up is handed on to, or undefined when no unvisited node has a free place. */
export function handOnUp(reports: readonly NodeReport[], visited: readonly string[]): string | undefined {
  const next = byRoom(reports, visited)[0];
  return next && next.free > 0 ? next.node : undefined;
}

/** The newest scaler replica of the app over the reports (rule 4's node and its time). */
export function newestReplica(reports: readonly NodeReport[], key: string): { node: string; ns: bigint } | undefined {
  let best: { node: string; ns: bigint } | undefined;
  for (const r of reports) {
    const t = ns(r.apps[key]?.newestReplicaNs);
    if (t !== undefined && (!best || t > best.ns || (t === best.ns && r.node < best.node))) best = { node: r.node, ns: t };
  }
  return best;
}

/** Rule 4: the node a scale-down goes to (undefined when no node reports a replica of the app). */
export function placeDown(reports: readonly NodeReport[], key: string): string | undefined {
  return newestReplica(reports, key)?.node;
}

/**
 * Rule 5: how many of this node's replicas (creation times, newest first) go now: those
 * newer than `othersNewest` (the other nodes' newest; undefined when they have none),
 * at most `remove`.
 */
export function removeHere(localNewestFirst: readonly bigint[], othersNewest: bigint | undefined, remove: number): number {
  let n = 0;
  while (n < remove && n < localNewestFirst.length && (othersNewest === undefined || localNewestFirst[n]! > othersNewest)) n++;
  return n;
}

/** Rule 7: the newest template reported for the app, or undefined. */
export function newestTemplate(reports: readonly NodeReport[], key: string): AppTemplate | undefined {
  let best: { t: bigint; template: AppTemplate } | undefined;
  for (const r of reports) {
    const a = r.apps[key];
    if (!a) continue;
    const t = ns(a.templateNs) ?? 0n;
    if (!best || t > best.t) best = { t, template: a.template };
  }
  return best?.template;
}

/** Rule 7: the declared template's fields over the reported one; env and labels merged key by key. */
export function withDeclared(reported: AppTemplate | undefined, declared: AppTemplate | undefined): AppTemplate | undefined {
  if (!reported) return declared;
  if (!declared) return reported;
  const merged: AppTemplate = { ...reported, ...declared };
  if (reported.env || declared.env) merged.env = { ...reported.env, ...declared.env };
  if (reported.labels || declared.labels) merged.labels = { ...reported.labels, ...declared.labels };
  return merged;
}

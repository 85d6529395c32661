/**
 * What one scale job does, as a plain function of what it sees: the app's running
 * containers (the tenant's own and the scaler's replicas), whether the app asked to be
 * scaled, the requested count, the app's last change and the containers on the node.
 * No I/O, so every rule is tested without services.
 *
 * The app's state, as the scaler sees it in Docker at each signal, job and sweep
 * ({@link appState}). "Own" containers are the tenant's: running, with the app's
 * identity labels and without `<prefix>scaled-by=scaler`. The scaler never starts,
 * stops or removes one of them; anything that happens to them is the tenant's doing (the
 * lifecycle events of the scaler's own operations carry actor `scaler`, the others
 * `docker`; the label answers the same question at any time, also after a restart —
 * docs/decisions/2026-12-04-scaler-opt-in-and-removal.md).
 *
 *   not_opted_in  the app carries neither `<prefix>autoscale.max` nor `<prefix>autoscale=on`
 *                 on a running container, and has no `autoscale.apps` entry. Signals are a
 *                 recommendation only; reported once ("not scaled: …").
 *   active        opted in, at least one own container running. Scaled per rules 1–4,
 *                 between the own count and the node cap.
 *   removed       opted in or not, no own container running, scaler replicas still
 *                 running: the tenant stopped or removed the app. Every replica is drained
 *                 and removed, whatever the cooldowns, the recommendation or minReplicas say.
 *   gone          no own container and no replica running. Nothing is started, whatever
 *                 the recommendation; reported once ("tenant_removed").
 *
 * Transitions (each tested against Docker in test/scaler-optin.test.ts):
 *   not_opted_in → active   a container with the opt-in label starts (or an `apps` entry)
 *   active → not_opted_in   the opt-in is taken away; replicas are left as they are
 *   active → removed        the tenant stops/removes its own containers (the sweep finds it)
 *   removed → gone          the scaler drained and removed its replicas
 *   gone → active           the tenant starts a container of the app again
 *   active → active         scale up / down / refused (cooldown, cap)
 *
 * Rules of an active app, in order:
 * 1. The target is the request clamped to [max(1, own), maxContainersPerNode] (on
 *    several nodes, the cap times the nodes: nodes.ts): the autoscale policy already
 *    applied the app's min/max; these bounds guard the node, and the tenant's own
 *    containers are never counted as removable.
 * 2. Equal to the running count: nothing to do.
 * 3. Cooldown since the app's last change in either direction: `up` before growing,
 *    `down` before shrinking. A change made by this same job (an earlier attempt of
 *    it) does not count, so a retried job finishes what it started.
 * 4. Growing: at most `maxContainersPerNode` running tenant containers on the node.
 *    What fits is started; the rest is refused (on several nodes, handed on first:
 *    nodes.ts rule 6).
 * Shrinking removes scaler replicas only.
 */

export type RefusalReason = 'cooldown' | 'cap' | 'no_template' | 'not_opted_in' | 'tenant_removed';

export type AppState = 'not_opted_in' | 'active' | 'removed' | 'gone';

/** The app's state from its running containers (see the opening comment). */
export function appState(i: { own: number; replicas: number; optedIn: boolean }): AppState {
  if (i.own === 0) return i.replicas > 0 ? 'removed' : 'gone';
  return i.optedIn ? 'active' : 'not_opted_in';
}

/** Whether the labels of a running container ask for autoscaling. */
export function optsIn(labels: Record<string, string> | undefined, labelPrefix: string): boolean {
  if (!labels) return false;
  const max = labels[`${labelPrefix}autoscale.max`];
  return (max !== undefined && max !== '') || labels[`${labelPrefix}autoscale`]?.toLowerCase() === 'on';
}

export interface LastChange {
  /** When (ms since the epoch, by the scaler's clock). */
  at: number;
  /** Job that made it. */
  job: string;
  direction: 'up' | 'down';
}

export interface PlanInput {
  /** Running containers of the app (own + replicas). */
  current: number;
  /** Of which the tenant's own (not started by the scaler): never removed, never fewer than one for growth. */
  own: number;
  /** The app asked to be scaled. Default true. */
  optedIn?: boolean;
  /** Replicas the signal recommends. */
  requested: number;
  /** Running tenant containers on the node, all apps (only read when growing). */
  nodeContainers: number;
  maxContainersPerNode: number;
  /** Upper bound of the target. Default `maxContainersPerNode`; on several nodes the cap times the nodes (nodes.ts rule 2). */
  maxReplicas?: number;
  cooldownMs: { up: number; down: number };
  lastChange: LastChange | undefined;
  now: number;
  jobId: string;
}

export type Plan =
  | { kind: 'none'; from: number; to: number }
  | { kind: 'up'; from: number; to: number; add: number; /** The clamped target when the cap cut the growth short. */ cappedAt?: number | undefined; target: number }
  | { kind: 'down'; from: number; to: number; remove: number; /** Set when the tenant removed the app: every replica goes, no cooldown. */ removed?: true }
  | { kind: 'refused'; reason: 'cooldown'; from: number; to: number; remainingMs: number; cooldownMs: number; sinceMs: number }
  | { kind: 'refused'; reason: 'cap'; from: number; to: number; nodeContainers: number; cap: number; /** On several nodes: how many were full. */ nodes?: number }
  | { kind: 'refused'; reason: 'not_opted_in' | 'tenant_removed'; from: number; to: number };

export function clampTarget(requested: number, maxContainersPerNode: number, own = 1): number {
  const n = Number.isFinite(requested) ? Math.round(requested) : 1;
  return Math.max(Math.min(Math.max(n, 1), maxContainersPerNode), own);
}

export function planScale(i: PlanInput): Plan {
  const from = i.current;
  const { own } = i;
  const state = appState({ own, replicas: from - own, optedIn: i.optedIn ?? true });
  if (state === 'removed') return { kind: 'down', from, to: 0, remove: from, removed: true };
  const max = i.maxReplicas ?? i.maxContainersPerNode;
  const requested = clampTarget(i.requested, max);
  if (state === 'gone') return { kind: 'refused', reason: 'tenant_removed', from, to: requested };
  if (state === 'not_opted_in') return { kind: 'refused', reason: 'not_opted_in', from, to: requested };
  const to = clampTarget(i.requested, max, own);
  if (to === from) return { kind: 'none', from, to };
  const direction = to > from ? 'up' : 'down';
  const cooldownMs = i.cooldownMs[direction];
  if (i.lastChange && i.lastChange.job !== i.jobId) {
    const sinceMs = i.now - i.lastChange.at;
    if (sinceMs < cooldownMs) return { kind: 'refused', reason: 'cooldown', from, to, remainingMs: cooldownMs - sinceMs, cooldownMs, sinceMs };
  }
  if (direction === 'down') return { kind: 'down', from, to, remove: from - to };
  const room = Math.max(0, i.maxContainersPerNode - i.nodeContainers);
  const add = Math.min(to - from, room);
  if (add === 0) return { kind: 'refused', reason: 'cap', from, to, nodeContainers: i.nodeContainers, cap: i.maxContainersPerNode };
  return { kind: 'up', from, to: from + add, add, target: to, cappedAt: add < to - from ? from + add : undefined };
}

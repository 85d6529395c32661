/**
 * What one scale job does, as a plain function of what it sees: the app's running
 * replicas, the requested count, the app's last change and the containers on the
 * node. No I/O, so every rule is tested without services.
 *
 * Rules, in order:
 * 1. The target is the request clamped to [1, maxContainersPerNode]: the autoscale
 *    policy already applied the app's min/max; these bounds only guard the node.
 * 2. Equal to the running count: nothing to do.
 * 3. Cooldown since the app's last change in either direction: `up` before growing,
 *    `down` before shrinking. A change made by this same job (an earlier attempt of
 *    it) does not count, so a retried job finishes what it started.
 * 4. Growing: at most `maxContainersPerNode` running tenant containers on the node.
 *    What fits is started; the rest is refused.
 */

export type RefusalReason = 'cooldown' | 'cap' | 'no_template';

export interface LastChange {
  /** When (ms since the epoch, by the scaler's clock). */
  at: number;
  /** Job that made it. */
  job: string;
  direction: 'up' | 'down';
}

export interface PlanInput {
  /** Running replicas of the app. */
  current: number;
  /** Replicas the signal recommends. */
  requested: number;
  /** Running tenant containers on the node, all apps (only read when growing). */
  nodeContainers: number;
  maxContainersPerNode: number;
  cooldownMs: { up: number; down: number };
  lastChange: LastChange | undefined;
  now: number;
  jobId: string;
}

export type Plan =
  | { kind: 'none'; from: number; to: number }
  | { kind: 'up'; from: number; to: number; add: number; /** The clamped target when the cap cut the growth short. */ cappedAt?: number | undefined; target: number }
  | { kind: 'down'; from: number; to: number; remove: number }
  | { kind: 'refused'; reason: 'cooldown'; from: number; to: number; remainingMs: number; cooldownMs: number; sinceMs: number }
  | { kind: 'refused'; reason: 'cap'; from: number; to: number; nodeContainers: number; cap: number };

export function clampTarget(requested: number, maxContainersPerNode: number): number {
  const n = Number.isFinite(requested) ? Math.round(requested) : 1;
  return Math.min(Math.max(n, 1), maxContainersPerNode);
}

export function planScale(i: PlanInput): Plan {
  const from = i.current;
  const to = clampTarget(i.requested, i.maxContainersPerNode);
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

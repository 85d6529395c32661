/**
 * The collector's attach and detach decisions, as plain functions of what it sees (a
 * Docker event, a listed container, its checkpoint). No I/O: the collector does what
 * they say, and every rule is tested without Docker.
 *
 * Rules:
 * 1. A network event matters only when a container connects or disconnects: that
 *    container's facts (networks, MACs) are read again. Other network events are skipped.
 * 2. A container event matters only when its base action (`exec_start: sh` → `exec_start`)
 *    is a lifecycle action; the others are skipped.
 * 3. Its facts are read again (inspect) when the action can change them or the container
 *    is not known yet; a `destroy` of an unknown container is never inspected (it is gone).
 * 4. Without a valid identity a container is not collected (the collector ignores it
 *    once, and dead-letters it when its labels are refused rather than missing).
 * 5. After its lifecycle event: `start` and `restart` attach the container (follow its
 *    logs) when its facts are known; `destroy` detaches it and forgets it.
 * 6. At start-up, a listed container is followed when it runs, when its checkpoint is not
 *    finished, or when it has no checkpoint and stopped while the collector was down (it
 *    finished at most a minute before the collector was last alive, or later); one whose
 *    checkpoint is finished is kept ready for a restart without following; the rest are
 *    skipped.
 */
import { LIFECYCLE_ACTIONS, baseAction, needsInspect, type DockerEvent } from './lifecycle.js';

export type EventStep =
  | { kind: 'skip' }
  /** Rule 1: read this container's facts again. */
  | { kind: 'refresh'; containerId: string }
  /** Rules 2-3: a lifecycle event of `containerId`. */
  | { kind: 'lifecycle'; containerId: string; action: string; inspect: boolean };

export function eventStep(e: DockerEvent, known: (containerId: string) => boolean): EventStep {
  if (e.Type === 'network') {
    const cid = e.Actor?.Attributes?.container;
    return cid && (e.Action === 'connect' || e.Action === 'disconnect') ? { kind: 'refresh', containerId: cid } : { kind: 'skip' };
  }
  if (e.Type !== 'container' || !e.Action) return { kind: 'skip' };
  const action = baseAction(e.Action);
  if (!LIFECYCLE_ACTIONS.has(action)) return { kind: 'skip' };
  const containerId = e.Actor?.ID ?? e.id ?? '';
  return { kind: 'lifecycle', containerId, action, inspect: needsInspect(action, known(containerId)) };
}

/** Rule 5: what follows a container's lifecycle event. */
export function afterLifecycle(action: string, factsKnown: boolean): 'attach' | 'detach' | 'none' {
  if ((action === 'start' || action === 'restart') && factsKnown) return 'attach';
  return action === 'destroy' ? 'detach' : 'none';
}

/** How much the stopped-while-down rule looks back before the collector's last alive time. */
export const STOPPED_WHILE_DOWN_SLACK_MS = 60_000;

/** Rule 6: a container listed at start-up. `aliveAt` is when the collector last ran (0: never). */
export function startupStep(c: { running: boolean; finishedAt: string }, checkpoint: { finished: boolean } | undefined, aliveAt: number): 'follow' | 'ready' | 'skip' {
  const stoppedWhileDown = !c.running && !checkpoint && aliveAt > 0 && Date.parse(c.finishedAt) >= aliveAt - STOPPED_WHILE_DOWN_SLACK_MS;
  if (c.running || (checkpoint && !checkpoint.finished) || stoppedWhileDown) return 'follow';
  return checkpoint?.finished ? 'ready' : 'skip';
}

/** Docker's `since` for the events stream: just after the newest event handled (ns), or now (ms) on a first start. */
export function eventsSince(lastEventNano: number, nowMs: number): string {
  return lastEventNano > 0 ? `${Math.floor(lastEventNano / 1e9)}.${String(lastEventNano % 1e9).padStart(9, '0')}` : String(Math.floor(nowMs / 1000));
}

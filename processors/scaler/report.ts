/**
 * How the scaler's actions read to the tenant: the lifecycle event of an action and
 * the words of a refusal. Pure; publishing is reporter.ts'.
 *
 * An event is an operation of the tenant: actor `scaler`, action `scale_up` | `drain` |
 * `scale_down` | `scale_refused`, a readable message and attributes {from, to, reason,
 * signal_version, job} (reason = the signal's). Its id derives from job, action,
 * container and refusal, so a retried job's events are removed downstream.
 */
import { eventId } from '../../lib/event-id.js';
import type { ContainerFacts } from '../../lib/container.js';
import type { LifecycleEvent } from '../../schemas/events.js';
import type { Plan } from './plan.js';
import type { ScaleJobData } from './signal.js';

export type ScalerAction = 'scale_up' | 'drain' | 'scale_down' | 'scale_refused';

export type Refusal = Extract<Plan, { kind: 'refused' }> | { kind: 'refused'; reason: 'no_template'; from: number; to: number };

/** Refusals that hold as long as the app's state does: their signature leaves out the figures, so each is reported once per state. */
export const STATE_REFUSALS: ReadonlySet<string> = new Set(['not_opted_in', 'tenant_removed']);

export interface ActionEventInput {
  action: ScalerAction;
  data: ScaleJobData;
  jobId: string;
  /** The container acted on; none for a refusal. */
  facts: ContainerFacts | undefined;
  range: { from: number; to: number };
  message: string;
  /** More attributes (a refusal's reason and figures). */
  extra: Record<string, string>;
  node: string;
  labelPrefix: string;
  now: number;
}

export function actionEvent(i: ActionEventInput): LifecycleEvent {
  const { data, facts } = i;
  const attributes: Record<string, string> = { from: String(i.range.from), to: String(i.range.to), reason: data.reason, signal_version: String(data.signal_version), job: i.jobId, ...i.extra };
  return {
    event_id: eventId('scaler', i.jobId, i.action, facts?.id ?? '', i.extra.refusal ?? ''),
    tenant: data.tenant,
    app: data.app,
    node: i.node,
    container_id: facts?.id ?? '',
    container_name: facts?.name ?? '',
    ts: i.now,
    action: i.action,
    actor: 'scaler',
    exit_code: null,
    health: null,
    image: facts?.image ?? '',
    labels: facts?.labels ?? { [`${i.labelPrefix}tenant`]: data.tenant, [`${i.labelPrefix}app`]: data.app },
    networks: facts?.networks ?? [],
    ports: facts?.ports ?? [],
    limits: facts?.limits ?? { nano_cpus: 0, memory_bytes: 0, pids: 0 },
    message: i.message,
    attributes,
  };
}

/** A refusal's message, its extra attributes, and its signature (the same refusal repeated is reported once). */
export function refusalReport(app: string, r: Refusal): { message: string; extra: Record<string, string>; signature: string } {
  const direction = r.to > r.from ? 'up' : 'down';
  let why: string;
  const extra: Record<string, string> = { refusal: r.reason };
  if (r.reason === 'cooldown') {
    why = `cooldown: last change ${secs(r.sinceMs)} ago, scale-${direction} cooldown ${secs(r.cooldownMs)} (${secs(r.remainingMs)} left)`;
    extra.cooldown_remaining_ms = String(Math.round(r.remainingMs));
  } else if (r.reason === 'cap') {
    why = r.nodes !== undefined && r.nodes > 1 ? `node cap of ${r.cap} tenant containers reached on each of ${r.nodes} nodes` : `node cap of ${r.cap} tenant containers reached (${r.nodeContainers} running)`;
    extra.cap = String(r.cap);
  } else if (r.reason === 'not_opted_in') {
    return {
      message: `${app} is not scaled: it did not opt in (label autoscale.max or autoscale=on, or an autoscale.apps entry); its signals are a recommendation only (now ${r.from} → ${r.to})`,
      extra,
      signature: r.reason,
    };
  } else if (r.reason === 'tenant_removed') {
    return { message: `${app} is not scaled: no container of the tenant's own is running (stopped or removed by the tenant); the scaler starts no replica for it`, extra, signature: r.reason };
  } else {
    why = 'no replica to copy and no template image declared';
  }
  return { message: `scale ${direction} ${app} ${r.from} → ${r.to} refused: ${why}`, extra, signature: `${r.reason}|${r.from}|${r.to}` };
}

export function secs(ms: number): string {
  return ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}

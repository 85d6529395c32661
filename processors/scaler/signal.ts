/**
 * What the scaler does with autoscale signals, as plain functions of what it sees: the
 * signals of a batch, the scaler's clock and the app's running replicas. No I/O.
 *
 * Rules, in order:
 * 1. Per batch, only each app's last signal counts: it supersedes the earlier ones.
 * 2. A signal older than `maxSignalAgeMs` (by its `ts`; 0 = never) is stale and skipped.
 * 3. The target is the recommendation clamped to [max(1, own), maxContainersPerNode]
 *    ({@link clampTarget}); 0 when the tenant removed the app (no own container running,
 *    scaler replicas left: plan.ts' `removed` state).
 * 4. Target equal to the running replicas: in sync; an app's pending job is stale then.
 * 5. Otherwise a scale job `<tenant>|<app>|<target>|<signal version>` is wanted: the same
 *    signal redelivered names the same job, so it adds nothing.
 */
import type { AutoscaleSignal } from '../../schemas/events.js';
import { clampTarget } from './plan.js';
import { appKey } from './state.js';

export interface ScaleJobData {
  tenant: string;
  app: string;
  host: string;
  /** The signal's recommendation, before the scaler's clamp. */
  requested: number;
  /** The clamped target the job id names. */
  target: number;
  signal_version: number;
  signal_current: number;
  signal_ts: number;
  mode: string;
  reason: string;
  /** On several nodes, a job handed on from another node (nodes.ts rules 5-6): the first job's id (its cooldown and events' job). */
  root?: string;
  /** Nodes the job has been on, in order (handed-on jobs only). */
  visited?: string[];
}

export interface ScaleJobResult {
  action: 'none' | 'scale_up' | 'scale_down' | 'scale_refused';
  from: number;
  to: number;
  /** Containers started or stopped. */
  containers: string[];
  /** On several nodes: the node the rest of the job was handed on to. */
  handedOn?: string;
}

/** What submit() did with a signal (the consumer also counts `superseded`: earlier signals of an app in the same batch). */
export type SubmitOutcome = 'enqueued' | 'replaced' | 'duplicate' | 'in_sync' | 'stale' | 'not_opted_in' | 'tenant_removed';

/** `<tenant>|<app>|<target>|<signal version>` (tenant and app percent-encoded). */
export function scaleJobId(tenant: string, app: string, target: number, version: number): string {
  return `${appKey(tenant, app)}|${target}|${version}`;
}

/** Rule 1: each app's last signal of a batch, in the order the apps first appear. */
export function latestPerApp(signals: readonly AutoscaleSignal[]): AutoscaleSignal[] {
  const latest = new Map<string, AutoscaleSignal>();
  for (const s of signals) latest.set(appKey(s.tenant, s.app), s);
  return [...latest.values()];
}

/** Rule 2: the signal's age when stale, else undefined. */
export function staleAge(signal: Pick<AutoscaleSignal, 'ts'>, now: number, maxSignalAgeMs: number): number | undefined {
  const age = now - signal.ts;
  return maxSignalAgeMs > 0 && age > maxSignalAgeMs ? age : undefined;
}

export type SignalStep = { kind: 'in_sync'; target: number } | { kind: 'scale'; target: number; jobId: string; data: ScaleJobData };

/** The job data a signal gives for `target`. */
export function jobData(signal: AutoscaleSignal, target: number): ScaleJobData {
  return {
    tenant: signal.tenant,
    app: signal.app,
    host: signal.host,
    requested: signal.recommended_replicas,
    target,
    signal_version: signal.version,
    signal_current: signal.current_replicas,
    signal_ts: signal.ts,
    mode: signal.mode,
    reason: signal.reason,
  };
}

/** Rules 3-5, given the app's running containers (`own` of them the tenant's). */
export function signalStep(signal: AutoscaleSignal, current: number, maxContainersPerNode: number, own = 1): SignalStep {
  const target = own === 0 ? 0 : clampTarget(signal.recommended_replicas, maxContainersPerNode, own);
  if (target === current) return { kind: 'in_sync', target };
  return { kind: 'scale', target, jobId: scaleJobId(signal.tenant, signal.app, target, signal.version), data: jobData(signal, target) };
}

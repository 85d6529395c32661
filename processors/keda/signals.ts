/**
 * What the KEDA external scaler answers, as plain functions of the signals seen and the
 * clock. No I/O.
 *
 * 1. A ScaledObject names its app with metadata `tenant` and `app`, checked like
 *    container labels are (lib/identity.ts): present, at most 63 characters of
 *    a-z 0-9 _ . -, starting with a letter or digit. Anything else is refused
 *    (INVALID_ARGUMENT), never cleaned up into another tenant's name.
 * 2. Per app, the newest signal counts (by version; a redelivered older one changes nothing).
 * 3. A signal older than `staleMs` (by its `ts`) is none: autoscale signals only apps with requests in
 *    their stable window, so silence means no load.
 * 4. The metric is the recommended replica count, with target 1: the HPA's desired
 *    replicas (metric / target) are the recommendation itself.
 * 5. Active = a fresh signal recommending at least one replica.
 * 6. A stream is told the current result when it opens, then on every change of it, and
 *    at once when the app enters panic (KEDA acts on a pushed `true` without waiting for
 *    its polling interval).
 */
import { identityProblem } from '../../lib/identity.js';
import type { AutoscaleSignal } from '../../schemas/events.js';

export interface AppRef {
  tenant: string;
  app: string;
}

/** Rule 1: the app a ScaledObject's metadata names, or the problem with it. */
export function appRef(metadata: Record<string, string> | undefined): AppRef | { problem: string } {
  const tenant = metadata?.tenant;
  const app = metadata?.app;
  if (!tenant) return { problem: 'scalerMetadata.tenant is required' };
  if (!app) return { problem: 'scalerMetadata.app is required' };
  const problem = identityProblem({ tenant, app }, '');
  // identityProblem speaks of labels; here they are metadata fields.
  if (problem) return { problem: problem.replace(/^label /, 'scalerMetadata.') };
  return { tenant, app };
}

/** The metric name GetMetricSpec declares and GetMetrics answers for an app. */
export function metricName(ref: AppRef): string {
  return `logmeter-${ref.tenant}-${ref.app}`;
}

interface Entry {
  version: number;
  ts: number;
  recommended: number;
  mode: string;
}

/** What a stream of the app should be told after a signal (rule 6). */
export interface Change {
  key: string;
  active: boolean;
  /** Whether streams must hear of it: the result changed, or the app entered panic. */
  push: boolean;
}

export class SignalTable {
  private readonly apps = new Map<string, Entry>();

  constructor(private readonly staleMs: number) {}

  static key(ref: AppRef): string {
    return `${ref.tenant}/${ref.app}`;
  }

  /** Takes a signal seen at `now` (rule 2); undefined when an older one, or stale already (rule 3: it is none). */
  take(s: AutoscaleSignal, now: number): Change | undefined {
    const key = SignalTable.key(s);
    const before = this.apps.get(key);
    if ((before && s.version <= before.version) || now - s.ts > this.staleMs) return undefined;
    const wasActive = this.active(key, now);
    const wasPanic = before !== undefined && this.fresh(before, now) && before.mode === 'panic';
    this.apps.set(key, { version: s.version, ts: s.ts, recommended: s.recommended_replicas, mode: s.mode });
    const active = this.active(key, now);
    return { key, active, push: active !== wasActive || (s.mode === 'panic' && !wasPanic) };
  }

  /** Rule 4: the recommended replicas, 0 without a fresh signal. */
  recommended(key: string, now: number): number {
    const e = this.apps.get(key);
    return e && this.fresh(e, now) ? Math.max(0, e.recommended) : 0;
  }

  /** Rule 5. */
  active(key: string, now: number): boolean {
    return this.recommended(key, now) > 0;
  }

  /** Apps whose signal went stale, forgotten; those that were active are returned (their streams are told `false`). */
  expire(now: number): string[] {
    const out: string[] = [];
    for (const [key, e] of this.apps) {
      if (!this.fresh(e, now)) {
        this.apps.delete(key);
        if (e.recommended > 0) out.push(key);
      }
    }
    return out;
  }

  get size(): number {
    return this.apps.size;
  }

  private fresh(e: Entry, now: number): boolean {
    return now - e.ts <= this.staleMs;
  }
}

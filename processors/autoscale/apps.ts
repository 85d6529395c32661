/**
 * The apps seen in HTTP requests: requests in, signals out. Pure (no I/O, no timers,
 * no metrics); the processor feeds it and publishes what it returns.
 *
 * 1. A request of the load balancer (`lbApp`, HAProxy logs) counts for the app its
 *    message is keyed by (the access-log parser's attribution), else for the app whose
 *    `lb-host` label equals the request's host (its backend name when the log has no
 *    host); one for a host no app claims is not counted (`unknown_host`).
 * 2. An app's own access logs and the load balancer's log the same requests, so each
 *    app keeps one window per source, and its signal uses the load balancer's when it
 *    saw the app's traffic (it includes queueing), else the app's own.
 * 3. An app with no request in its stable window is forgotten (a returning app starts
 *    a new cooldown; versions stay increasing as they follow the clock). One whose
 *    requests are only seconds ahead of now is not active yet.
 * 4. The policy is the config's default < the app's labels < the config's `apps` entry;
 *    a label that cannot be used is reported, not applied.
 * 5. A signal's version is the clock, or one more than the app's last one.
 * 6. A signal carries `owner_since`, when its instance took ownership of the app (from
 *    the processor; 0 without one).
 */
import { eventId } from '../../lib/event-id.js';
import type { AutoscaleSignal, HttpRequest, WindowStats } from '../../schemas/events.js';
import type { AutoscaleConfig, PolicyConfig } from './config.js';
import type { Fleet } from './fleet.js';
import { decide, initialPolicyState, resolvePolicy, type PolicyState } from './policy.js';
import { RequestWindow, type WindowOptions } from './window.js';

export type Source = 'lb' | 'app';

/** Where a request went: into a source's window, or nowhere and why. */
export type Taken = { source: Source } | { ignored: 'unknown_host' | 'outside_window' | 'future' };

export interface AppsOptions {
  config: AutoscaleConfig;
  /** Running replicas, lb hosts and labels, from lifecycle events. */
  fleet: Fleet;
  /** The collector's label prefix (`logmeter.`). */
  labelPrefix: string;
  /** Node name in signals. */
  node: string;
  /** Told of each policy label that cannot be used (rule 4). */
  onPolicyProblem?(app: string, problem: string): void;
}

interface AppState {
  tenant: string;
  app: string;
  windows: Partial<Record<Source, RequestWindow>>;
  policyState: PolicyState | undefined;
  version: number;
}

export class Apps {
  private readonly apps = new Map<string, AppState>();
  private readonly windowOpts: WindowOptions;

  constructor(private readonly o: AppsOptions) {
    this.windowOpts = { stableMs: o.config.stableWindowMs, panicMs: o.config.panicWindowMs, relativeAccuracy: o.config.relativeAccuracy };
  }

  /**
   * The app `r` counts for (rule 1): its own, or for a load-balancer request `routed` (the
   * app its message is keyed by, as the access-log parser found it), else the app claiming
   * its host now; undefined for a host no app claims.
   */
  appOf(r: HttpRequest, routed?: string): string | undefined {
    const key = `${r.tenant}/${r.app}`;
    if (key !== this.o.config.lbApp) return key;
    if (routed !== undefined && routed !== this.o.config.lbApp) return routed;
    const { fleet } = this.o;
    return fleet.appForHost(r.host) ?? (r.backend ? fleet.appForHost(r.backend) : undefined);
  }

  /** Counts `r`, seen at `now`, in its app's window for its source (rules 1–2); `routed` as in appOf(). */
  take(r: HttpRequest, now: number, routed?: string): Taken {
    const key = this.appOf(r, routed);
    if (key === undefined) return { ignored: 'unknown_host' };
    const source: Source = `${r.tenant}/${r.app}` === this.o.config.lbApp ? 'lb' : 'app';
    let a = this.apps.get(key);
    if (!a) {
      const slash = key.indexOf('/');
      a = { tenant: key.slice(0, slash), app: key.slice(slash + 1), windows: {}, policyState: undefined, version: 0 };
      this.apps.set(key, a);
    }
    const res = (a.windows[source] ??= new RequestWindow(this.windowOpts)).add(r, now);
    if (res === 'added') return { source };
    return { ignored: res === 'too_old' ? 'outside_window' : 'future' };
  }

  /** Drops the windows of the apps `drop` names (their partition went to another instance). */
  forget(drop: (app: string) => boolean): void {
    for (const key of this.apps.keys()) if (drop(key)) this.apps.delete(key);
  }

  /**
   * Every active app's signal at `now`; with `onlyEnteringPanic`, only those of apps whose
   * panic starts now; with `ownerSince`, only those of the apps it gives a time for, when
   * this instance took ownership of them (the others are not evaluated: their windows are
   * still being rebuilt, or another instance signals them).
   */
  evaluate(now: number, onlyEnteringPanic = false, ownerSince?: (app: string) => number | undefined): AutoscaleSignal[] {
    const { fleet } = this.o;
    const signals: AutoscaleSignal[] = [];
    for (const [key, a] of this.apps) {
      const since = ownerSince ? ownerSince(key) : 0;
      if (since === undefined) continue;
      // The panic check looks only at apps not in panic yet; the tick handles the rest.
      if (onlyEnteringPanic && a.policyState?.mode === 'panic') continue;
      let held = 0;
      for (const w of Object.values(a.windows)) held += w.prune(now);
      if (held === 0) {
        this.apps.delete(key);
        continue;
      }
      let chosen: { stable: WindowStats; panic: WindowStats } | undefined;
      for (const source of ['lb', 'app'] as const) {
        const s = a.windows[source]?.stats(now);
        if (s && s.stable.requests > 0) {
          chosen = s;
          break;
        }
      }
      if (!chosen) continue;
      const current = fleet.replicas(key);
      const d = decide({ now, stable: chosen.stable, panic: chosen.panic, current, policy: this.policyFor(key), state: a.policyState ?? initialPolicyState(now) });
      // The decision is a function of time and windows: one not published is simply dropped.
      if (onlyEnteringPanic && d.mode !== 'panic') continue;
      a.policyState = d.state;
      a.version = Math.max(a.version + 1, now);
      signals.push({
        event_id: eventId('autoscale', a.tenant, a.app, a.version),
        tenant: a.tenant,
        app: a.app,
        node: this.o.node,
        container_id: '',
        ts: now,
        version: a.version,
        host: fleet.hostOf(key),
        stable: chosen.stable,
        panic: chosen.panic,
        current_replicas: current,
        recommended_replicas: d.recommended,
        mode: d.mode,
        reason: d.reason,
        owner_since: since,
      });
    }
    return signals;
  }

  private policyFor(key: string): PolicyConfig {
    const { policy, problems } = resolvePolicy(this.o.config.policy, this.o.fleet.labels(key), this.o.labelPrefix, this.o.config.apps[key]);
    for (const p of problems) this.o.onPolicyProblem?.(key, p);
    return policy;
  }
}

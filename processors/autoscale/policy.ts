/**
 * The scaling policy: windows + an app's policy + running replicas → recommended
 * replicas, mode and a reason a person can read. Pure: the state a decision needs
 * from the previous one (panic, last change for the cooldown) goes in and comes out.
 *
 * Rule (Knative's, on two metrics): for each metric with a target,
 *   desired = ceil(current × observed / target)
 * where observed/target is p95 / target p95, or in-flight per replica / target per
 * replica (so desired = ceil(in-flight / target per replica)); the metric asking for
 * the most replicas wins, clamped to [min, max].
 * - Panic when a panic-window value is ≥ panicThreshold × its target. In panic the
 *   panic window decides, and the recommendation never goes below the running
 *   replicas nor below the previous panic recommendation; panic ends once a whole
 *   stable window has passed without a panic reading.
 * - Out of panic the stable window decides. Scaling up is immediate; scaling down
 *   needs both windows to agree (the higher of the two) and `cooldownMs` since the
 *   last change of the recommended or the running replicas.
 * - A window with fewer than `minRequests` requests has no say on latency.
 */
import type { WindowStats } from '../../schemas/events.js';
import type { PolicyConfig, PolicyOverride } from './config.js';

export type Mode = 'stable' | 'panic';

export interface PolicyState {
  mode: Mode;
  /** When the panic condition last held. */
  lastPanicAt: number | null;
  /** When the recommended or the running replicas last changed (the cooldown's start). */
  lastChangeAt: number;
  lastRecommended: number | null;
  lastCurrent: number | null;
}

/** The state of an app seen for the first time at `now`: the cooldown starts now (a restarted processor does not scale down at once). */
export function initialPolicyState(now: number): PolicyState {
  return { mode: 'stable', lastPanicAt: null, lastChangeAt: now, lastRecommended: null, lastCurrent: null };
}

export interface PolicyInput {
  now: number;
  stable: WindowStats;
  panic: WindowStats;
  /** Running replicas. */
  current: number;
  policy: PolicyConfig;
  state: PolicyState;
}

export interface Decision {
  recommended: number;
  mode: Mode;
  reason: string;
  state: PolicyState;
}

interface Demand {
  metric: 'p95' | 'in-flight';
  /** observed / target */
  ratio: number;
  desired: number;
  /** "p95 840 ms > target 300 ms" */
  text: string;
}

const ms = (v: number) => `${Math.round(v)} ms`;
const secs = (w: WindowStats) => `${Math.round(w.window_ms / 1000)} s`;
const num = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
/** ceil() that does not turn 5.000000000001 (a float artefact) into 6. */
const ceil = (x: number) => Math.ceil(x - 1e-9);

/** What each metric with a target asks of `w`, and why a metric has no say. */
function demands(w: WindowStats, current: number, p: PolicyConfig): { demands: Demand[]; silent: string[] } {
  const out: Demand[] = [];
  const silent: string[] = [];
  const base = Math.max(current, 1);
  if (p.targetP95Ms !== null) {
    if (w.p95_ms === null || w.requests < p.minRequests) {
      silent.push(`p95 not used: ${w.requests} requests < ${p.minRequests} in ${secs(w)}`);
    } else {
      const ratio = w.p95_ms / p.targetP95Ms;
      out.push({ metric: 'p95', ratio, desired: ceil(base * ratio), text: `p95 ${ms(w.p95_ms)} ${w.p95_ms > p.targetP95Ms ? '>' : 'within'} target ${ms(p.targetP95Ms)}` });
    }
  }
  if (p.targetInFlightPerReplica !== null) {
    const t = p.targetInFlightPerReplica;
    const ratio = w.in_flight / base / t;
    out.push({ metric: 'in-flight', ratio, desired: ceil(w.in_flight / t), text: `in-flight ${num(w.in_flight)} ${w.in_flight > t * base ? '>' : 'within'} ${num(t)} per replica × ${current}` });
  }
  // The metric asking for the most replicas first.
  out.sort((a, b) => b.desired - a.desired || b.ratio - a.ratio);
  return { demands: out, silent };
}

function clamp(x: number, p: PolicyConfig): { value: number; note: string } {
  if (x > p.maxReplicas) return { value: p.maxReplicas, note: ` (clamped to max ${p.maxReplicas})` };
  if (x < p.minReplicas) return { value: p.minReplicas, note: ` (clamped to min ${p.minReplicas})` };
  return { value: x, note: '' };
}

function describe(d: { demands: Demand[]; silent: string[] }): string {
  return [...d.demands.map((x) => x.text), ...d.silent].join(', ');
}

export function decide(input: PolicyInput): Decision {
  const { now, stable, panic, current, policy: p, state } = input;
  const panicD = demands(panic, current, p);
  const stableD = demands(stable, current, p);
  const trigger = panicD.demands.find((d) => d.ratio >= p.panicThreshold);
  const stillPanic = state.mode === 'panic' && state.lastPanicAt !== null && now - state.lastPanicAt < stable.window_ms;
  const mode: Mode = trigger || stillPanic ? 'panic' : 'stable';
  const lastPanicAt = trigger ? now : state.lastPanicAt;

  let recommended: number;
  let reason: string;
  const replicas = (n: number) => `${n} ${n === 1 ? 'replica' : 'replicas'}`;
  const change = (to: number) => (to === current ? `holding ${replicas(current)}` : `${current} → ${replicas(to)}`);
  // A change of the running replicas (the scaler acting, a crash) restarts the cooldown.
  const currentMoved = state.lastCurrent !== null && current !== state.lastCurrent;
  const lastChangeAt = currentMoved ? now : state.lastChangeAt;

  if (mode === 'panic') {
    const desired = Math.max(panicD.demands[0]?.desired ?? 0, current, state.mode === 'panic' ? (state.lastRecommended ?? 0) : 0);
    const c = clamp(desired, p);
    recommended = c.value;
    const head = trigger
      ? `${trigger.text} for ${secs(panic)} (panic at ${num(p.panicThreshold)}× target)`
      : `panic holds until ${secs(stable)} pass without a panic reading (last ${Math.round((now - (lastPanicAt ?? now)) / 1000)} s ago): ${describe(panicD)} for ${secs(panic)}`;
    reason = `${head}; ${change(recommended)}${c.note}`;
  } else {
    const top = stableD.demands[0];
    if (!top) {
      // No metric has a say (too few requests for latency, no in-flight target): hold.
      const c = clamp(current, p);
      recommended = c.value;
      reason = `stable: ${describe(stableD)}; ${change(recommended)}${c.note}`;
    } else if (top.desired > current) {
      const c = clamp(top.desired, p);
      recommended = c.value;
      reason = `${describe(stableD)} for ${secs(stable)}; ${change(recommended)}${c.note}`;
    } else if (top.desired === current) {
      const c = clamp(current, p);
      recommended = c.value;
      reason = `stable: ${describe(stableD)}; ${change(recommended)}${c.note}`;
    } else {
      // Scale down only as far as both windows allow.
      const target = Math.max(top.desired, panicD.demands[0]?.desired ?? 0);
      const c = clamp(Math.min(target, current), p);
      const waited = now - lastChangeAt;
      if (c.value >= current) {
        recommended = c.value;
        reason = `stable: ${describe(stableD)}; ${change(recommended)}${c.note}`;
      } else if (waited < p.cooldownMs) {
        const held = clamp(current, p);
        recommended = held.value;
        reason = `stable: ${describe(stableD)} for ${secs(stable)}; scale-down to ${c.value} waits for the cooldown (${Math.ceil((p.cooldownMs - waited) / 1000)} s left); ${change(recommended)}${held.note}`;
      } else {
        recommended = c.value;
        reason = `stable: ${describe(stableD)} for ${secs(stable)}; ${change(recommended)}${c.note}`;
      }
    }
  }

  const changed = state.lastRecommended !== null && recommended !== state.lastRecommended;
  return {
    recommended,
    mode,
    reason,
    state: { mode, lastPanicAt, lastChangeAt: changed ? now : lastChangeAt, lastRecommended: recommended, lastCurrent: current },
  };
}

/** The label names (after the prefix) that override an app's policy. */
export const POLICY_LABELS = {
  'autoscale.target-p95-ms': 'targetP95Ms',
  'autoscale.target-in-flight': 'targetInFlightPerReplica',
  'autoscale.min': 'minReplicas',
  'autoscale.max': 'maxReplicas',
} as const satisfies Record<string, keyof PolicyConfig>;

/**
 * An app's policy: the defaults, then its containers' labels, then the operator's
 * `apps` entry. A label that is not a valid value is ignored and named in `problems`;
 * a min above the max ends with max = min (availability first), also named.
 */
export function resolvePolicy(defaults: PolicyConfig, labels: Record<string, string>, labelPrefix: string, override?: PolicyOverride): { policy: PolicyConfig; problems: string[] } {
  const policy: PolicyConfig = { ...defaults };
  const problems: string[] = [];
  for (const [name, field] of Object.entries(POLICY_LABELS)) {
    const raw = labels[`${labelPrefix}${name}`];
    if (raw === undefined || raw.trim() === '') continue;
    const v = Number(raw);
    const integer = field === 'minReplicas' || field === 'maxReplicas';
    const ok = Number.isFinite(v) && (integer ? Number.isInteger(v) && v >= (field === 'minReplicas' ? 0 : 1) : v > 0);
    if (!ok) problems.push(`label ${labelPrefix}${name}="${raw}" is not ${integer ? 'a whole number' : 'a positive number'}; ignored`);
    else policy[field] = v;
  }
  if (override) {
    for (const [k, v] of Object.entries(override) as Array<[keyof PolicyConfig, number | null | undefined]>) {
      if (v !== undefined) (policy as Record<keyof PolicyConfig, number | null>)[k] = v;
    }
  }
  if (policy.minReplicas > policy.maxReplicas) {
    problems.push(`minReplicas ${policy.minReplicas} > maxReplicas ${policy.maxReplicas}; using max = ${policy.minReplicas}`);
    policy.maxReplicas = policy.minReplicas;
  }
  return { policy, problems };
}

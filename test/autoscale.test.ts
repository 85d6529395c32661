import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fc from 'fast-check';
import { DDSketch } from '@datadog/sketches-js';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, HttpRequest, LifecycleEvent, WindowStats } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { lifecycleRow } from '../processors/log-sink/rows.js';
import { AUTOSCALE_DEFAULTS, POLICY_DEFAULTS, autoscaleConfigSchema, type PolicyConfig } from '../processors/autoscale/config.js';
import { RequestWindow, lastSecond, mergeSketch, type WindowRequest } from '../processors/autoscale/window.js';
import { decide, initialPolicyState, resolvePolicy, type PolicyState } from '../processors/autoscale/policy.js';
import { Fleet } from '../processors/autoscale/fleet.js';
import { startAutoscale, type AutoscaleProcessor } from '../processors/autoscale/processor.js';
import { eventually, namespace } from './helpers/env.js';
import { collect } from './helpers/kafka.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

const ALPHA = AUTOSCALE_DEFAULTS.relativeAccuracy;
const T0 = 1_764_000_000_000; // a whole second

// ---------------------------------------------------------------------------------
// Exact reference: the requests of a window and their lower nearest-rank percentiles.

function exactWindow(reqs: WindowRequest[], now: number, windowMs: number) {
  const last = lastSecond(now);
  const n = windowMs / 1000;
  const inside = reqs.filter((r) => {
    const s = Math.floor(r.ts / 1000);
    return s <= last && s > last - n;
  });
  const lat = inside.map((r) => Math.max(0, r.request_time_ms)).sort((a, b) => a - b);
  const q = (p: number) => (lat.length === 0 ? null : lat[Math.floor(p * (lat.length - 1))]!);
  const queue = inside.filter((r) => r.queue_time_ms !== null).map((r) => r.queue_time_ms!).sort((a, b) => a - b);
  const covered = now - (last - n + 1) * 1000;
  const sum = lat.reduce((a, b) => a + b, 0);
  const lens = inside.filter((r) => r.backend_queue !== null || r.server_queue !== null).map((r) => (r.backend_queue ?? 0) + (r.server_queue ?? 0));
  return {
    requests: inside.length,
    rate_rps: (inside.length * 1000) / covered,
    p50: q(0.5),
    p95: q(0.95),
    p99: q(0.99),
    rate_5xx: inside.length === 0 ? 0 : inside.filter((r) => r.status >= 500).length / inside.length,
    rate_504: inside.length === 0 ? 0 : inside.filter((r) => r.status === 504).length / inside.length,
    queue_p95: queue.length === 0 ? null : queue[Math.floor(0.95 * (queue.length - 1))]!,
    queue_max: lens.length === 0 ? null : Math.max(...lens),
    in_flight: sum / covered,
  };
}

/** Within the sketch's stated relative accuracy (plus float noise). */
function within(actual: number | null, exact: number | null, what: string): void {
  if (exact === null) return assert.equal(actual, null, what);
  assert.notEqual(actual, null, what);
  assert.ok(Math.abs(actual! - exact) <= ALPHA * exact + 1e-9, `${what}: ${actual} vs exact ${exact} (more than ${ALPHA * 100} % off)`);
}

function close(actual: number, exact: number, what: string): void {
  assert.ok(Math.abs(actual - exact) <= 1e-9 * Math.max(1, Math.abs(exact)), `${what}: ${actual} vs ${exact}`);
}

function checkAgainstExact(stats: WindowStats, reqs: WindowRequest[], now: number, windowMs: number, label: string): void {
  const e = exactWindow(reqs, now, windowMs);
  assert.equal(stats.window_ms, windowMs);
  assert.equal(stats.requests, e.requests, `${label} requests`);
  close(stats.rate_rps, e.rate_rps, `${label} rate`);
  close(stats.rate_5xx, e.rate_5xx, `${label} 5xx`);
  close(stats.rate_504, e.rate_504, `${label} 504`);
  close(stats.in_flight, e.in_flight, `${label} in-flight`);
  within(stats.p50_ms, e.p50, `${label} p50`);
  within(stats.p95_ms, e.p95, `${label} p95`);
  within(stats.p99_ms, e.p99, `${label} p99`);
  within(stats.queue_time_p95_ms, e.queue_p95, `${label} queue p95`);
  assert.equal(stats.queue_length_max, e.queue_max, `${label} queue max`);
}

const req = (ts: number, latency: number, extra: Partial<WindowRequest> = {}): WindowRequest => ({ ts, status: 200, request_time_ms: latency, queue_time_ms: null, backend_queue: null, server_queue: null, ...extra });
const windowOpts = { stableMs: 60_000, panicMs: 6_000, relativeAccuracy: ALPHA };

/** Deterministic pseudo-random numbers (a recorded set is the same every run). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// ---------------------------------------------------------------------------------

describe('windows and percentiles', () => {
  // Latency sets as web apps produce them: a fast body with a slow tail, bimodal
  // (cache hits and misses), HAProxy's whole milliseconds with zeros, and one request.
  const rnd = lcg(42);
  const sets: Record<string, number[]> = {
    'fast body, slow tail': Array.from({ length: 3000 }, () => (rnd() < 0.97 ? 15 + rnd() * 20 : 200 + rnd() * 2800)),
    bimodal: Array.from({ length: 1200 }, () => (rnd() < 0.6 ? 2 + rnd() * 3 : 480 + rnd() * 40)),
    'whole ms with zeros': Array.from({ length: 500 }, () => Math.floor(rnd() * rnd() * 50)),
    'all equal': Array.from({ length: 100 }, () => 20),
    'one request': [840],
    'sub-ms and near 1 ms': Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? 0.01 + rnd() * 0.05 : 0.985 + rnd() * 0.015)),
  };
  for (const [name, latencies] of Object.entries(sets)) {
    test(`recorded set "${name}": p50/p95/p99 within ${ALPHA * 100} % of exact, counts exact`, () => {
      const now = T0 + 60_000;
      const w = new RequestWindow(windowOpts);
      const reqs = latencies.map((l, i) =>
        req(T0 + Math.floor((i * 60_000) / latencies.length), l, { status: i % 17 === 0 ? 504 : i % 11 === 0 ? 500 : 200, queue_time_ms: i % 2 ? l / 10 : null, server_queue: i % 5 === 0 ? i % 7 : null, backend_queue: i % 5 === 0 ? 1 : null }),
      );
      for (const r of reqs) assert.equal(w.add(r, now), 'added');
      const s = w.stats(now);
      checkAgainstExact(s.stable, reqs, now, 60_000, 'stable');
      checkAgainstExact(s.panic, reqs, now, 6_000, 'panic');
    });
  }

  test('property: any requests, any clock: every window value matches the exact computation (percentiles within the stated accuracy)', () => {
    const arbReq = fc.record({
      dt: fc.integer({ min: -5_000, max: 75_000 }),
      latency: fc.oneof(fc.double({ min: 0, max: 60_000, noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0, 1, 20, 500), fc.integer({ min: 0, max: 3000 })),
      status: fc.constantFrom(200, 201, 404, 500, 503, 504),
      queue: fc.option(fc.integer({ min: 0, max: 2000 })),
      sq: fc.option(fc.integer({ min: 0, max: 50 })),
    });
    fc.assert(
      fc.property(fc.array(arbReq, { maxLength: 300 }), fc.integer({ min: 0, max: 1999 }), fc.integer({ min: 1, max: 10 }), (arr, jitter, panicS) => {
        const opts = { stableMs: 60_000, panicMs: panicS * 1000, relativeAccuracy: ALPHA };
        const now = T0 + 65_000 + jitter;
        const w = new RequestWindow(opts);
        const kept: WindowRequest[] = [];
        for (const a of arr) {
          const r = req(T0 + a.dt, a.latency, { status: a.status, queue_time_ms: a.queue, server_queue: a.sq });
          if (w.add(r, now) === 'added') kept.push(r);
        }
        const s = w.stats(now);
        checkAgainstExact(s.stable, kept, now, opts.stableMs, 'stable');
        checkAgainstExact(s.panic, kept, now, opts.panicMs, 'panic');
      }),
      { numRuns: 300 },
    );
  });

  test('property: the window slides by whole seconds; what it forgets is what the exact window excludes', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ dt: fc.integer({ min: 0, max: 120_000 }), latency: fc.integer({ min: 1, max: 5000 }) }), { minLength: 1, maxLength: 200 }), fc.array(fc.integer({ min: 1, max: 15_000 }), { minLength: 1, maxLength: 10 }), (arr, steps) => {
        const reqs = arr.map((a) => req(T0 + a.dt, a.latency)).sort((a, b) => a.ts - b.ts);
        const w = new RequestWindow(windowOpts);
        // Everything arrives while the clock is at the start; then the clock walks on.
        for (const r of reqs) w.add(r, T0 + 60_000);
        const accepted = reqs.filter((r) => Math.floor(r.ts / 1000) <= lastSecond(T0 + 60_000) + 60);
        let now = T0 + 60_000;
        for (const step of steps) {
          now += step;
          w.prune(now);
          const s = w.stats(now);
          const visible = accepted.filter((r) => Math.floor(r.ts / 1000) > lastSecond(now) - 60);
          checkAgainstExact(s.stable, visible, now, 60_000, 'stable');
          checkAgainstExact(s.panic, visible, now, 6_000, 'panic');
        }
      }),
      { numRuns: 200 },
    );
  });

  test('memory: 200k requests over a minute are held as at most 60 seconds of sketches', () => {
    const w = new RequestWindow(windowOpts);
    const rnd2 = lcg(7);
    let now = T0;
    for (let i = 0; i < 200_000; i++) {
      now = T0 + Math.floor(i * 0.45); // ~2200 rps for 90 s
      w.add(req(now, 5 + rnd2() * 2000), now);
      if (i % 5000 === 0) w.prune(now);
    }
    w.prune(now);
    assert.ok(w.size <= 60, `${w.size} seconds held`);
    assert.ok(w.stats(now).stable.requests > 100_000);
  });

  test('too old and future requests are refused, not counted', () => {
    const w = new RequestWindow(windowOpts);
    const now = T0 + 60_000;
    assert.equal(w.add(req(T0 - 1, 10), now), 'too_old');
    assert.equal(w.add(req(T0, 10), now), 'added');
    assert.equal(w.add(req(now + 59_999, 10), now), 'added');
    assert.equal(w.add(req(now + 60_000, 10), now), 'future');
    // A request ahead of now is held but not yet in any window.
    assert.equal(w.stats(now).stable.requests, 1);
  });

  test("mergeSketch keeps values the library's merge() loses (a source whose top key is 0)", () => {
    const mk = () => new DDSketch({ relativeAccuracy: ALPHA });
    const lib = mk();
    const ours = mk();
    const src = mk();
    for (const s of [lib, ours]) s.accept(0.01);
    src.accept(0.5);
    src.accept(1.0);
    lib.merge(src);
    mergeSketch(ours, src);
    within(ours.getValueAtQuantile(1), 1.0, 'max after mergeSketch');
    assert.ok(Math.abs(lib.getValueAtQuantile(1) - 1.0) > ALPHA, 'the library merge is still broken here; mergeSketch may be dropped');
  });
});

// ---------------------------------------------------------------------------------

function stats(o: Partial<WindowStats> & { window_ms: number }): WindowStats {
  return { requests: 1000, rate_rps: 10, p50_ms: null, p95_ms: null, p99_ms: null, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: 0, ...o };
}
const stable = (p95: number, inFlight = 0, requests = 1000) => stats({ window_ms: 60_000, p95_ms: p95, in_flight: inFlight, requests });
const panicW = (p95: number, inFlight = 0, requests = 100) => stats({ window_ms: 6_000, p95_ms: p95, in_flight: inFlight, requests });
const latencyOnly: PolicyConfig = { ...POLICY_DEFAULTS, targetP95Ms: 300, targetInFlightPerReplica: null, minReplicas: 1, maxReplicas: 10, cooldownMs: 120_000 };

describe('policy', () => {
  test('panic at 2× target on the panic window, not below', () => {
    const now = T0;
    const st = initialPolicyState(now - 600_000);
    const at = decide({ now, stable: stable(320), panic: panicW(600), current: 2, policy: latencyOnly, state: st });
    assert.equal(at.mode, 'panic');
    assert.equal(at.recommended, 4); // ceil(2 × 600 / 300)
    assert.match(at.reason, /^p95 600 ms > target 300 ms for 6 s \(panic at 2× target\); 2 → 4 replicas$/);
    const below = decide({ now, stable: stable(320), panic: panicW(599), current: 2, policy: latencyOnly, state: st });
    assert.equal(below.mode, 'stable');
    assert.equal(below.recommended, 3); // stable window: ceil(2 × 320 / 300)
    assert.match(below.reason, /p95 320 ms > target 300 ms for 60 s; 2 → 3 replicas/);
    const factor3 = decide({ now, stable: stable(320), panic: panicW(840), current: 2, policy: { ...latencyOnly, panicThreshold: 3 }, state: st });
    assert.equal(factor3.mode, 'stable');
  });

  test('in panic never scale down; panic holds for a stable window after the last panic reading', () => {
    let state = initialPolicyState(T0 - 600_000);
    let d = decide({ now: T0, stable: stable(100), panic: panicW(900), current: 2, policy: latencyOnly, state });
    assert.equal(d.mode, 'panic');
    assert.equal(d.recommended, 6);
    state = d.state;
    // Latency back to normal and a replica less running: still panic, still 6.
    for (let s = 1; s < 60; s += 7) {
      d = decide({ now: T0 + s * 1000, stable: stable(50), panic: panicW(40), current: 1, policy: latencyOnly, state });
      assert.equal(d.mode, 'panic', `at +${s} s`);
      assert.equal(d.recommended, 6, `at +${s} s`);
      assert.match(d.reason, /panic holds until 60 s pass without a panic reading/);
      state = d.state;
    }
    // A whole stable window later panic ends; the cooldown still holds the scale-down.
    d = decide({ now: T0 + 60_000, stable: stable(50), panic: panicW(40), current: 6, policy: latencyOnly, state });
    assert.equal(d.mode, 'stable');
    assert.equal(d.recommended, 6);
    assert.match(d.reason, /scale-down to 1 waits for the cooldown/);
  });

  test('panic on in-flight per replica; panic never recommends below the running replicas', () => {
    const policy = { ...POLICY_DEFAULTS, targetInFlightPerReplica: 2 };
    let d = decide({ now: T0, stable: stable(100), panic: panicW(10, 40), current: 8, policy, state: initialPolicyState(T0 - 600_000) });
    assert.equal(d.mode, 'panic'); // 40 in flight over 8 replicas = 5 per replica ≥ 2 × 2
    assert.equal(d.recommended, 10); // ceil(40 / 2) = 20, clamped
    assert.equal(d.reason, 'in-flight 40 > 2 per replica × 8 for 6 s (panic at 2× target); 8 → 10 replicas (clamped to max 10)');
    // Still in panic, readings low, fewer replicas recommended before than now run: hold what runs.
    d = decide({ now: T0 + 1000, stable: stable(100), panic: panicW(10, 1), current: 9, policy: { ...policy, maxReplicas: 20 }, state: { ...d.state, lastRecommended: 3 } });
    assert.equal(d.mode, 'panic');
    assert.equal(d.recommended, 9);
  });

  test('scale-down only when the stable window agrees and the cooldown has passed', () => {
    const long = initialPolicyState(T0 - 600_000);
    // Stable window says 1, the panic window (a fresh rise below panic) says 4: hold at 4.
    let d = decide({ now: T0, stable: stable(40), panic: panicW(290), current: 4, policy: latencyOnly, state: long });
    assert.equal(d.recommended, 4);
    // Both agree: down to what the higher of the two asks.
    d = decide({ now: T0, stable: stable(40), panic: panicW(100), current: 4, policy: latencyOnly, state: long });
    assert.equal(d.recommended, 2); // ceil(4 × 100/300) = 2 > ceil(4 × 40/300) = 1
    assert.equal(d.mode, 'stable');
    assert.match(d.reason, /^stable: p95 40 ms within target 300 ms for 60 s; 4 → 2 replicas$/);
    // The panic window low but the stable window still high: no scale-down.
    d = decide({ now: T0, stable: stable(290), panic: panicW(40), current: 4, policy: latencyOnly, state: long });
    assert.equal(d.recommended, 4);
    // Cooldown: a change 30 s ago holds the scale-down; after 120 s it goes.
    const recent: PolicyState = { ...long, lastChangeAt: T0 - 30_000, lastRecommended: 4, lastCurrent: 4 };
    d = decide({ now: T0, stable: stable(40), panic: panicW(40), current: 4, policy: latencyOnly, state: recent });
    assert.equal(d.recommended, 4);
    assert.match(d.reason, /scale-down to 1 waits for the cooldown \(90 s left\); holding 4 replicas/);
    d = decide({ now: T0 + 90_000, stable: stable(40), panic: panicW(40), current: 4, policy: latencyOnly, state: d.state });
    assert.equal(d.recommended, 1);
    // A change of the running replicas restarts the cooldown.
    const moved = decide({ now: T0 + 200_000, stable: stable(40), panic: panicW(40), current: 3, policy: latencyOnly, state: { ...d.state, lastRecommended: 3, lastCurrent: 4 } });
    assert.equal(moved.recommended, 3);
    assert.equal(moved.state.lastChangeAt, T0 + 200_000);
    // A fresh state (restarted processor) does not scale down at once.
    d = decide({ now: T0, stable: stable(40), panic: panicW(40), current: 4, policy: latencyOnly, state: initialPolicyState(T0) });
    assert.equal(d.recommended, 4);
  });

  test('scale-up is immediate; min and max clamp, also in panic', () => {
    const st = initialPolicyState(T0);
    let d = decide({ now: T0, stable: stable(6000), panic: panicW(500), current: 2, policy: latencyOnly, state: st });
    assert.equal(d.recommended, 10);
    assert.match(d.reason, /2 → 10 replicas \(clamped to max 10\)/);
    d = decide({ now: T0, stable: stable(6000), panic: panicW(6000), current: 4, policy: { ...latencyOnly, maxReplicas: 5 }, state: st });
    assert.equal(d.mode, 'panic');
    assert.equal(d.recommended, 5);
    d = decide({ now: T0 + 600_000, stable: stable(1), panic: panicW(1), current: 3, policy: { ...latencyOnly, minReplicas: 2, cooldownMs: 0 }, state: st });
    assert.equal(d.recommended, 2);
    assert.match(d.reason, /clamped to min 2/);
    // No replica known yet but traffic: at least min.
    d = decide({ now: T0, stable: stable(20), panic: panicW(20), current: 0, policy: latencyOnly, state: st });
    assert.equal(d.recommended, 1);
  });

  test('the metric asking for the most wins; reasons read as the design says', () => {
    const both: PolicyConfig = { ...POLICY_DEFAULTS, targetP95Ms: 300, targetInFlightPerReplica: 4 };
    const st = initialPolicyState(T0 - 600_000);
    let d = decide({ now: T0, stable: stable(200, 12.4), panic: panicW(200, 12.4), current: 2, policy: both, state: st });
    assert.equal(d.recommended, 4); // ceil(12.4 / 4) beats ceil(2 × 200/300)
    assert.match(d.reason, /^in-flight 12\.4 > 4 per replica × 2, p95 200 ms within target 300 ms for 60 s; 2 → 4 replicas$/);
    d = decide({ now: T0, stable: stable(40, 1), panic: panicW(40, 1), current: 1, policy: both, state: st });
    assert.equal(d.recommended, 1);
    assert.equal(d.reason, 'stable: in-flight 1 within 4 per replica × 1, p95 40 ms within target 300 ms; holding 1 replica');
    d = decide({ now: T0, stable: stable(840), panic: panicW(840), current: 2, policy: latencyOnly, state: st });
    assert.match(d.reason, /^p95 840 ms > target 300 ms for 6 s/);
  });

  test('too few requests: latency has no say', () => {
    const d = decide({ now: T0, stable: stable(5000, 0, 4), panic: panicW(5000, 0, 2), current: 2, policy: latencyOnly, state: initialPolicyState(T0 - 600_000) });
    assert.equal(d.mode, 'stable');
    assert.equal(d.recommended, 2);
    assert.match(d.reason, /p95 not used: 4 requests < 10 in 60 s/);
  });

  test('policy: defaults < labels < config apps; bad labels ignored and named', () => {
    const labels = { 'lm.autoscale.target-p95-ms': '150', 'lm.autoscale.min': '2', 'lm.autoscale.max': '6', 'lm.autoscale.target-in-flight': 'lots' };
    let r = resolvePolicy(POLICY_DEFAULTS, labels, 'lm.');
    assert.equal(r.policy.targetP95Ms, 150);
    assert.equal(r.policy.minReplicas, 2);
    assert.equal(r.policy.maxReplicas, 6);
    assert.equal(r.policy.targetInFlightPerReplica, POLICY_DEFAULTS.targetInFlightPerReplica);
    assert.deepEqual(r.problems, ['label lm.autoscale.target-in-flight="lots" is not a positive number; ignored']);
    r = resolvePolicy(POLICY_DEFAULTS, labels, 'lm.', { maxReplicas: 3, targetInFlightPerReplica: null });
    assert.equal(r.policy.maxReplicas, 3);
    assert.equal(r.policy.targetP95Ms, 150);
    assert.equal(r.policy.targetInFlightPerReplica, null);
    r = resolvePolicy(POLICY_DEFAULTS, { 'lm.autoscale.min': '8', 'lm.autoscale.max': '1.5' }, 'lm.', { maxReplicas: 4 });
    assert.equal(r.policy.minReplicas, 8);
    assert.equal(r.policy.maxReplicas, 8);
    assert.equal(r.problems.length, 2);
    // Other prefixes' labels are not ours.
    assert.equal(resolvePolicy(POLICY_DEFAULTS, { 'other.autoscale.min': '5' }, 'lm.').policy.minReplicas, POLICY_DEFAULTS.minReplicas);
  });

  test('config: defaults, and every problem reported at once', () => {
    assert.equal(AUTOSCALE_DEFAULTS.stableWindowMs, 60_000);
    assert.equal(AUTOSCALE_DEFAULTS.panicWindowMs, 6_000);
    assert.equal(AUTOSCALE_DEFAULTS.relativeAccuracy, 0.01);
    assert.equal(AUTOSCALE_DEFAULTS.policy.panicThreshold, 2);
    const r = autoscaleConfigSchema.safeParse({ stableWindowMs: 1500, panicWindowMs: 120_000, apps: { 'acme/shop': { minReplicas: 20 }, bad: {} }, policy: { targetP95Ms: null, targetInFlightPerReplica: null }, extra: 1 });
    assert.equal(r.success, false);
    const paths = r.error.issues.map((i) => i.path.join('.'));
    for (const p of ['stableWindowMs', 'apps.bad', 'policy.targetP95Ms', '']) assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
  });
});

describe('fleet (lifecycle → replicas, hosts, labels)', () => {
  const ev = (id: string, action: string, ts: number, app = 'shop', tenant = 'acme', labels: Record<string, string> = {}) => ({ container_id: id, tenant, app, ts, action, labels });
  test('running replicas per app; the load balancer is no replica; an older event changes nothing', () => {
    const f = new Fleet('lm.', 'platform/lb');
    f.apply(ev('c1', 'create', 1, 'shop', 'acme', { 'lm.lb-host': 'Shop.Acme.test:8080' }));
    assert.equal(f.replicas('acme/shop'), 0);
    f.apply(ev('c1', 'start', 2, 'shop', 'acme', { 'lm.lb-host': 'Shop.Acme.test:8080', 'lm.autoscale.min': '2' }));
    f.apply(ev('c2', 'start', 3));
    f.apply(ev('lb', 'start', 3, 'lb', 'platform'));
    assert.equal(f.replicas('acme/shop'), 2);
    assert.equal(f.replicas('platform/lb'), 0);
    f.apply(ev('c2', 'health_status', 4));
    f.apply(ev('c2', 'die', 5));
    f.apply(ev('c2', 'start', 4)); // late, older
    assert.equal(f.replicas('acme/shop'), 1);
    f.apply(ev('c2', 'restart', 6));
    f.apply(ev('c1', 'pause', 7));
    assert.equal(f.replicas('acme/shop'), 1);
    f.apply(ev('c1', 'unpause', 8));
    f.apply(ev('c2', 'die', 9));
    f.apply(ev('c2', 'destroy', 10));
    assert.equal(f.replicas('acme/shop'), 1);
    assert.equal(f.size, 2);
    assert.equal(f.appForHost('shop.acme.test'), 'acme/shop');
    assert.equal(f.appForHost('SHOP.acme.test:80'), 'acme/shop');
    assert.equal(f.hostOf('acme/shop'), 'shop.acme.test');
    assert.equal(f.labels('acme/shop')['lm.autoscale.min'], undefined, 'labels of the newest started container (c2 restart)');
  });
});

// ---------------------------------------------------------------------------------
// Against Kafka and the embedded ClickHouse.

let seq = 0;
const http = (ts: number, latency: number, o: Partial<HttpRequest> = {}): HttpRequest => ({
  ...SAMPLE_EVENTS.http,
  event_id: `http-${seq++}`,
  tenant: 'platform',
  app: 'lb',
  container_id: 'lb-1',
  format: 'haproxy',
  host: 'shop.acme.test',
  ts,
  status: 200,
  request_time_ms: latency,
  queue_time_ms: 0,
  backend_queue: 0,
  server_queue: 0,
  ...o,
});

describe('processor (Kafka, embedded ClickHouse)', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  let codec: AvroCodec;
  let bus: ReturnType<typeof busFor>;
  const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  let proc: AutoscaleProcessor | undefined;

  before(async () => {
    codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
    await migrate(ch, ns.logger);
    assert.deepEqual((await migrate(ch, ns.logger)).applied, [], 'migrations apply twice');
  });
  after(async () => {
    await proc?.stop();
    await bus.close();
    await ch.close();
    ns.cleanup();
  });

  const life = (id: string, action: string, ts: number, tenant: string, app: string, labels: Record<string, string> = {}): LifecycleEvent => ({
    ...SAMPLE_EVENTS.lifecycle,
    event_id: `life-${id}-${action}-${ts}`,
    container_id: id,
    container_name: id,
    tenant,
    app,
    ts,
    action,
    exit_code: null,
    labels: { [`${prefix}tenant`]: tenant, [`${prefix}app`]: app, ...labels },
  });
  /** One second of traffic: 20 requests through the load balancer, and 1 in the app's own access log. */
  const second = (start: number, latency: number) => {
    const out: HttpRequest[] = [];
    for (let i = 0; i < 20; i++) out.push(http(start + i * 50, latency + ((i % 5) - 2), latency > 100 ? { queue_time_ms: 40 + i, server_queue: i % 4 } : {}));
    out.push(http(start + 25, 5, { tenant: 'acme', app: 'shop', container_id: 'c1', format: 'nginx-combined' }));
    return out;
  };

  test('latency step 20 → 500 ms: a panic signal recommending more replicas within 2 s of the step (event time); a signal every second with growing versions; rows in ClickHouse', async () => {
    // Event time an hour ago (whole seconds): old enough to be history, young enough for the table's 30-day TTL.
    const base = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
    const S = base + 60_000; // the step
    // Started a millisecond before the step: an instance signals only past when it took its partitions.
    let now = S - 1;
    // Replicas: c1, c2 running (topic), c3 started and died, c4 running but only in ClickHouse (older than the topic's retention), the load balancer itself.
    const labels = { [`${prefix}lb-host`]: 'shop.acme.test', [`${prefix}autoscale.target-p95-ms`]: '200' };
    await bus.publish('lifecycle', [
      { event: life('lb-1', 'start', base - 700_000, 'platform', 'lb') },
      { event: life('c1', 'start', base - 600_000, 'acme', 'shop', labels) },
      { event: life('c2', 'start', base - 500_000, 'acme', 'shop', labels) },
      { event: life('c3', 'start', base - 400_000, 'acme', 'shop', labels) },
      { event: life('c3', 'die', base - 300_000, 'acme', 'shop', labels) },
    ]);
    await ch.insert('lifecycle', [lifecycleRow(life('c4', 'start', base - 900_000, 'acme', 'shop', labels))]);

    proc = await startAutoscale({ bus, ch, logger: ns.logger, registry: createRegistry(false), config: AUTOSCALE_DEFAULTS, clock: () => now, node: 'node-t', labelPrefix: prefix, autoTick: false });
    now = S;
    assert.equal(proc.replicas('acme/shop'), 3, 'c1, c2 from the topic and c4 from ClickHouse');
    assert.equal(proc.replicas('platform/lb'), 0);

    const feed = async (events: HttpRequest[]) => {
      const before = proc!.seen().http;
      await bus.publish('http', events.map((event) => ({ event })));
      await eventually(`${events.length} requests taken`, async () => (proc!.seen().http >= before + events.length ? true : undefined));
    };
    // A steady minute at 20 ms, then the clock at the step.
    const steady: HttpRequest[] = [];
    for (let s = 0; s < 60; s++) steady.push(...second(base + s * 1000, 20));
    await feed(steady);
    const ticks: AutoscaleSignal[] = [];
    const tickOne = async () => {
      const got = (await proc!.tick()).filter((x) => x.app === 'shop');
      assert.equal(got.length, 1, `one signal for the active app at ${now - S} ms`);
      ticks.push(got[0]!);
      return got[0]!;
    };
    const calm = await tickOne();
    assert.equal(calm.mode, 'stable');
    assert.equal(calm.current_replicas, 3);
    assert.equal(calm.recommended_replicas, 3, 'a fresh processor does not scale down before the cooldown');
    assert.equal(calm.host, 'shop.acme.test');
    // The load balancer's view is used (1200 requests), not the app's own log (60 more).
    assert.equal(calm.stable.requests, 1200);
    assert.equal(calm.stable.rate_rps, 20);
    within(calm.stable.p95_ms, 22, 'steady p95');

    // The step: one second of events at a time, the clock following.
    let firstPanic: AutoscaleSignal | undefined;
    for (let k = 1; k <= 4; k++) {
      await feed(second(S + (k - 1) * 1000, 500));
      now = S + k * 1000;
      const sig = await tickOne();
      if (sig.mode === 'panic') firstPanic ??= sig;
    }
    assert.ok(firstPanic, 'a panic signal');
    assert.ok(firstPanic.ts - S <= 2000, `panic signal ${firstPanic.ts - S} ms after the step (event time)`);
    assert.ok(firstPanic.recommended_replicas > firstPanic.current_replicas, 'recommends more replicas');
    assert.equal(firstPanic.recommended_replicas, 8); // ceil(3 × ~500 / 200)
    assert.match(firstPanic.reason, /^p95 \d+ ms > target 200 ms for 6 s \(panic at 2× target\); 3 → 8 replicas$/);
    assert.ok(firstPanic.panic.queue_time_p95_ms !== null && firstPanic.panic.queue_length_max === 3);

    // Latency back to 20 ms: panic holds, the recommendation does not drop.
    for (let k = 5; k <= 7; k++) {
      await feed(second(S + (k - 1) * 1000, 20));
      now = S + k * 1000;
      const sig = await tickOne();
      assert.equal(sig.mode, 'panic');
      assert.equal(sig.recommended_replicas, 8);
    }

    // What reached Kafka: a signal every second of event time, versions strictly growing.
    const onTopic = (await collect(bus, 'autoscale', (evs) => evs.filter((e) => e.app === 'shop').length >= ticks.length)).filter((e) => e.app === 'shop').sort((a, b) => a.version - b.version);
    assert.deepEqual(
      onTopic.map((e) => e.ts),
      ticks.map((_, i) => S + i * 1000),
    );
    for (let i = 1; i < onTopic.length; i++) assert.ok(onTopic[i]!.version > onTopic[i - 1]!.version);
    // Decoded Avro records are class instances: compare as plain data.
    assert.deepEqual(JSON.parse(JSON.stringify(onTopic)), JSON.parse(JSON.stringify(ticks)));

    // And in ClickHouse, one row per signal.
    type Row = { version: number; ts: number; mode: string; recommended_replicas: number; current_replicas: number; panic_p95_ms: number | null; stable_requests: number; host: string; reason: string; target_p95_ms: number | null; target_in_flight: number | null };
    const rows = await ch.query<Row>(
      `SELECT version, toUnixTimestamp64Milli(ts) AS ts, mode, recommended_replicas, current_replicas, panic_p95_ms, stable_requests, host, reason, target_p95_ms, target_in_flight FROM ${ch.table('autoscale_signals')} FINAL WHERE tenant = 'acme' AND app = 'shop' ORDER BY version`,
    );
    assert.deepEqual(
      rows.map((r) => ({ ...r, ts: Number(r.ts), version: Number(r.version) })),
      ticks.map((t) => ({ version: t.version, ts: t.ts, mode: t.mode, recommended_replicas: t.recommended_replicas, current_replicas: t.current_replicas, panic_p95_ms: t.panic.p95_ms, stable_requests: t.stable.requests, host: t.host, reason: t.reason, target_p95_ms: 200, target_in_flight: POLICY_DEFAULTS.targetInFlightPerReplica })),
    );
    await proc.stop();
    proc = undefined;
  });

  test('between ticks, an app entering panic gets its signal at once and once; a calm app gets none until its tick', async () => {
    const base = Math.floor(Date.now() / 1000) * 1000 - 1_800_000;
    const S = base + 60_000;
    let now = S - 1;
    const labels = { [`${prefix}lb-host`]: 'cart.acme.test', [`${prefix}autoscale.target-p95-ms`]: '200' };
    const calmLabels = { [`${prefix}lb-host`]: 'calm.acme.test' };
    await bus.publish('lifecycle', [{ event: life('k1', 'start', base - 60_000, 'acme', 'cart', labels) }, { event: life('q1', 'start', base - 60_000, 'acme', 'calm', calmLabels) }]);
    proc = await startAutoscale({ bus, ch, logger: ns.logger, registry: createRegistry(false), config: AUTOSCALE_DEFAULTS, clock: () => now, node: 'node-t', labelPrefix: prefix, autoTick: false });
    now = S;
    const feed = async (events: HttpRequest[]) => {
      const before = proc!.seen().http;
      await bus.publish('http', events.map((event) => ({ event })));
      await eventually(`${events.length} requests taken`, async () => (proc!.seen().http >= before + events.length ? true : undefined));
    };
    const traffic = (host: string, start: number, seconds: number, latency: number) =>
      Array.from({ length: seconds * 20 }, (_, i) => http(start + i * 50, latency, { host }));
    await feed([...traffic('cart.acme.test', base, 60, 20), ...traffic('calm.acme.test', base, 60, 20)]);
    const mine = (xs: AutoscaleSignal[]) => xs.filter((x) => x.tenant === 'acme' && (x.app === 'cart' || x.app === 'calm'));
    assert.deepEqual(mine(await proc.tick()).map((x) => [x.app, x.mode]), [['cart', 'stable'], ['calm', 'stable']]);
    // Calm traffic only: the check publishes nothing.
    now = S + 200;
    assert.deepEqual(mine(await proc.panicCheck()), []);
    // cart's latency steps to 1 s; 400 ms later the check sees its panic window over twice the target.
    await feed([...traffic('cart.acme.test', S, 1, 1000).slice(0, 8), ...traffic('calm.acme.test', S, 1, 20).slice(0, 8)]);
    now = S + 400;
    const early = mine(await proc.panicCheck());
    assert.deepEqual(early.map((x) => [x.app, x.mode, x.ts]), [['cart', 'panic', S + 400]], 'only the app entering panic, before the next tick');
    assert.ok(early[0]!.recommended_replicas > early[0]!.current_replicas);
    // Once in panic, the check is quiet; the tick goes on signalling every active app.
    now = S + 600;
    assert.deepEqual(mine(await proc.panicCheck()), []);
    now = S + 1000;
    const next = mine(await proc.tick());
    assert.deepEqual(next.map((x) => [x.app, x.mode]), [['cart', 'panic'], ['calm', 'stable']]);
    assert.ok(next[0]!.version > early[0]!.version);
    const onTopic = await collect(bus, 'autoscale', (evs) => evs.filter((e) => e.app === 'cart').length >= 3);
    assert.deepEqual(onTopic.filter((e) => e.app === 'cart').map((e) => e.mode), ['stable', 'panic', 'panic']);
    await proc.stop();
    proc = undefined;
  });
});

describe('processor restart (Kafka)', () => {
  const ns = namespace();
  let codec: AvroCodec;
  let bus: ReturnType<typeof busFor>;
  let proc: AutoscaleProcessor | undefined;
  before(async () => {
    codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
  });
  after(async () => {
    await proc?.stop();
    await bus.close();
    ns.cleanup();
  });

  test('a restarted processor reads back one stable window by Kafka time (full windows at once), then signals on its own timer with growing versions', async () => {
    const t = Date.now();
    // What an earlier run saw: 5 requests ten minutes ago and 20 in the last 20 s, with
    // Kafka timestamps as when they were published.
    const send = (from: number, n: number, stepMs: number) =>
      bus.publishRaw(
        bus.topic('http'),
        Array.from({ length: n }, (_, i) => {
          const e = http(from + i * stepMs, 30, { tenant: 'acme', app: 'timer', container_id: 'c9', format: 'json' });
          return { key: e.container_id, value: codec.encode('http', e), timestamp: e.ts };
        }),
      );
    await send(t - 600_000, 5, 10);
    await send(t - 20_000, 20, 500);
    const registry = createRegistry(false);
    proc = await startAutoscale({ bus, logger: ns.logger, registry, config: AUTOSCALE_DEFAULTS, node: 'node-t', labelPrefix: ns.config.collector.labelPrefix });
    const got = await collect(bus, 'autoscale', (evs) => evs.filter((e) => e.app === 'timer').length >= 3);
    const timer = got.filter((e) => e.app === 'timer').sort((a, b) => a.version - b.version);
    for (let i = 1; i < timer.length; i++) {
      assert.ok(timer[i]!.version > timer[i - 1]!.version);
      assert.ok(timer[i]!.ts > timer[i - 1]!.ts);
    }
    assert.equal(proc.seen().http, 20, 'read from one stable window back, not from the beginning');
    const last = timer[timer.length - 1]!;
    assert.equal(last.stable.requests, 20, 'the requests from before the start are in the window');
    assert.equal(last.current_replicas, 0);
    assert.equal(last.recommended_replicas, 1, 'traffic with no replica known: the minimum');
    assert.match(await registry.metrics(), /logmeter_autoscale_signals_published_total\{mode="stable"\} [1-9]/);
    await proc.stop();
    proc = undefined;
  });
});

test('fleet: an operation published before the start it follows does not hide that start', async () => {
  const { Fleet } = await import('../processors/autoscale/fleet.js');
  const f = new Fleet('logmeter.', 'platform/lb');
  const labels = { 'logmeter.tenant': 'acme', 'logmeter.app': 'shop' };
  f.apply({ container_id: 'a', tenant: 'acme', app: 'shop', ts: 10, action: 'start', labels });
  // The scaler's scale_up (ts 30) reaches the topic before Docker's start of the new replica (ts 20).
  f.apply({ container_id: 'b', tenant: 'acme', app: 'shop', ts: 5, action: 'create', labels });
  f.apply({ container_id: 'b', tenant: 'acme', app: 'shop', ts: 30, action: 'scale_up', labels: {} });
  f.apply({ container_id: 'b', tenant: 'acme', app: 'shop', ts: 20, action: 'start', labels });
  assert.equal(f.replicas('acme/shop'), 2);
});

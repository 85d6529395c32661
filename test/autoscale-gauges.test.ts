/** The per-app autoscale gauges on /metrics: values of the newest signal, series only for apps seen in the last stable window. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../lib/metrics.js';
import { AppGauges } from '../processors/autoscale/telemetry.js';
import type { AutoscaleSignal, WindowStats } from '../schemas/events.js';

const ws = (p95: number | null, inFlight: number): WindowStats => ({ window_ms: 60_000, requests: 100, rate_rps: 2, p50_ms: 10, p95_ms: p95, p99_ms: null, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: inFlight });
const sig = (app: string, ts: number, rec: number, mode: 'stable' | 'panic', p95: number | null): AutoscaleSignal => ({ event_id: `${app}${ts}`, tenant: 'acme', app, node: 'n', container_id: '', ts, version: ts, host: '', stable: ws(p95, 2.5), panic: ws(p95, 2.5), current_replicas: 1, recommended_replicas: rec, mode, reason: 'r' });

test('gauges per app: recommended replicas, p95, in-flight, panic; dropped a stable window after their last signal', async () => {
  const registry = createRegistry(false);
  const g = new AppGauges(registry, 60_000);
  g.update([sig('shop', 1000, 3, 'panic', 840), sig('api', 1000, 1, 'stable', null)], 1000);
  const text = await registry.metrics();
  assert.match(text, /^logmeter_autoscale_recommended_replicas\{tenant="acme",app="shop"\} 3$/m);
  assert.match(text, /^logmeter_autoscale_p95_ms\{tenant="acme",app="shop"\} 840$/m);
  assert.match(text, /^logmeter_autoscale_in_flight\{tenant="acme",app="shop"\} 2.5$/m);
  assert.match(text, /^logmeter_autoscale_panic\{tenant="acme",app="shop"\} 1$/m);
  assert.match(text, /^logmeter_autoscale_panic\{tenant="acme",app="api"\} 0$/m);
  assert.doesNotMatch(text, /logmeter_autoscale_p95_ms\{tenant="acme",app="api"\}/, 'no p95 series while too few requests');

  // shop keeps signalling; api stops and is dropped once its last signal is a stable window old.
  g.update([sig('shop', 61_000, 2, 'stable', 200)], 61_000);
  assert.equal(g.size, 2, 'api still within its stable window');
  g.update([sig('shop', 61_001, 2, 'stable', 200)], 61_001);
  assert.equal(g.size, 1);
  const after = await registry.metrics();
  assert.doesNotMatch(after, /app="api"/, 'every series of api removed');
  assert.match(after, /^logmeter_autoscale_recommended_replicas\{tenant="acme",app="shop"\} 2$/m);
  assert.match(after, /^logmeter_autoscale_panic\{tenant="acme",app="shop"\} 0$/m);
  g.update([], 200_000);
  assert.doesNotMatch(await registry.metrics(), /app="shop"/, 'nothing left once every app is quiet');
});

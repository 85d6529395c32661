/**
 * The KEDA external scaler: its rules alone, then a real gRPC client built from the same
 * externalscaler.proto against the running service, fed by the autoscale topic on Kafka.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, WindowStats } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { kedaConfigSchema } from '../processors/keda/config.js';
import { SignalTable, appRef, metricName } from '../processors/keda/signals.js';
import { loadExternalScaler, startKeda, type IsActiveResponse, type KedaProcessor, type MetricSpec, type MetricValue } from '../processors/keda/processor.js';
import { eventually, namespace } from './helpers/env.js';

const ws: WindowStats = { window_ms: 60_000, requests: 600, rate_rps: 10, p50_ms: 20, p95_ms: 40, p99_ms: 60, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: 0.4 };
let version = 1;
function signal(app: string, recommended: number, mode: 'stable' | 'panic' = 'stable', ts = Date.now()): AutoscaleSignal {
  version += 1;
  return { event_id: `k-${app}-${version}`, tenant: 'acme', app, node: 'n', container_id: '', ts, version, host: '', stable: ws, panic: ws, current_replicas: 1, recommended_replicas: recommended, mode, reason: 'test' };
}

test('metadata: tenant and app are checked like identity labels, never cleaned up', () => {
  assert.deepEqual(appRef({ tenant: 'acme', app: 'shop' }), { tenant: 'acme', app: 'shop' });
  assert.deepEqual(appRef({ app: 'shop' }), { problem: 'scalerMetadata.tenant is required' });
  assert.deepEqual(appRef({ tenant: 'acme' }), { problem: 'scalerMetadata.app is required' });
  assert.deepEqual(appRef(undefined), { problem: 'scalerMetadata.tenant is required' });
  assert.match((appRef({ tenant: 'Acme', app: 'shop' }) as { problem: string }).problem, /^scalerMetadata\.tenant "Acme" has characters outside/);
  assert.match((appRef({ tenant: 'acme', app: '../x' }) as { problem: string }).problem, /^scalerMetadata\.app/);
  assert.match((appRef({ tenant: 'a'.repeat(64), app: 'x' }) as { problem: string }).problem, /64 characters long/);
  assert.equal(metricName({ tenant: 'acme', app: 'shop' }), 'logmeter-acme-shop');
});

test('signals: newest wins, stale is none, pushes on a change of the result and on entering panic', () => {
  const t = new SignalTable(60_000);
  const now = 1_000_000;
  const at = (app: string, rec: number, v: number, mode: 'stable' | 'panic' = 'stable', ts = now) => ({ ...signal(app, rec, mode, ts), version: v });
  assert.deepEqual(t.take(at('a', 2, 10), now), { key: 'acme/a', active: true, push: true });
  assert.equal(t.take(at('a', 5, 9), now), undefined, 'an older version changes nothing');
  assert.equal(t.recommended('acme/a', now), 2);
  assert.deepEqual(t.take(at('a', 3, 11), now), { key: 'acme/a', active: true, push: false }, 'still active: nothing to push');
  assert.deepEqual(t.take(at('a', 3, 12, 'panic'), now), { key: 'acme/a', active: true, push: true }, 'entering panic is pushed');
  assert.deepEqual(t.take(at('a', 4, 13, 'panic'), now), { key: 'acme/a', active: true, push: false }, 'staying in panic is not');
  assert.deepEqual(t.take(at('a', 0, 14), now), { key: 'acme/a', active: false, push: true });
  assert.equal(t.active('acme/a', now), false);
  assert.equal(t.take(at('b', 2, 1, 'stable', now - 61_000), now), undefined, 'stale on arrival: taken as none');
  assert.equal(t.recommended('acme/b', now), 0, 'a signal older than staleMs is none');
  t.take(at('c', 2, 1), now);
  assert.equal(t.recommended('acme/c', now + 60_000), 2);
  assert.deepEqual(t.expire(now + 60_001), ['acme/c'], 'c went stale while active (its streams hear false); a is forgotten too');
  assert.equal(t.size, 0);
});

assert.equal(kedaConfigSchema.parse({}).listen, '127.0.0.1:9095', 'loopback by default');
assert.throws(() => kedaConfigSchema.parse({ listen: 'nohost' }), /host:port/);

// ---------------------------------------------------------------------------------------------
// The running service, through Kafka, with a gRPC client from the same .proto.

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
let keda: KedaProcessor | undefined;
let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

const meta = (tenant: string, app: string) => ({ name: 'so', namespace: 'default', scalerMetadata: { tenant, app } });
function unary<T>(method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => client[method]!(req, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}
const publish = (s: AutoscaleSignal) => bus.publish('autoscale', [{ event: s }]);

before(async () => {
  await bus.ensureTopics();
  keda = await startKeda({ bus, logger: ns.logger, registry, config: kedaConfigSchema.parse({ listen: '127.0.0.1:0' }) });
  const Client = loadExternalScaler();
  client = new Client(keda.address, grpc.credentials.createInsecure()) as typeof client;
});

after(async () => {
  client?.close();
  await keda?.stop();
  await bus.close();
  ns.cleanup();
});

test('IsActive, GetMetricSpec and GetMetrics answer from the newest signal: the recommended replicas, target 1', async () => {
  assert.deepEqual(await unary<IsActiveResponse>('IsActive', meta('acme', 'shop')), { result: false }, 'no signal yet');
  await publish(signal('shop', 4));
  await eventually('shop active', async () => ((await unary<IsActiveResponse>('IsActive', meta('acme', 'shop'))).result ? true : undefined));
  const spec = await unary<{ metricSpecs: MetricSpec[] }>('GetMetricSpec', meta('acme', 'shop'));
  assert.deepEqual(spec.metricSpecs, [{ metricName: 'logmeter-acme-shop', targetSize: 1, targetSizeFloat: 1 }]);
  const metrics = await unary<{ metricValues: MetricValue[] }>('GetMetrics', { scaledObjectRef: meta('acme', 'shop'), metricName: 's0-logmeter-acme-shop' });
  assert.deepEqual(metrics.metricValues, [{ metricName: 's0-logmeter-acme-shop', metricValue: 4, metricValueFloat: 4 }]);
  const other = await unary<{ metricValues: MetricValue[] }>('GetMetrics', { scaledObjectRef: meta('globex', 'shop'), metricName: '' });
  assert.equal(other.metricValues[0]!.metricValue, 0, "another tenant's app of the same name sees nothing of acme's");
});

test('malformed metadata is refused with INVALID_ARGUMENT, on every method', async () => {
  for (const [method, req] of [
    ['IsActive', meta('Acme', 'shop')],
    ['GetMetricSpec', { name: 'so', namespace: 'default', scalerMetadata: { tenant: 'acme' } }],
    ['GetMetrics', { scaledObjectRef: meta('acme', 'shop/../x'), metricName: '' }],
    ['GetMetrics', { metricName: '' }],
  ] as const) {
    await assert.rejects(unary(method, req), (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT && /scalerMetadata\./.test(err.details), method);
  }
  const stream = client.StreamIsActive!(meta('acme', 'x y')) as grpc.ClientReadableStream<IsActiveResponse>;
  const err = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
});

test('StreamIsActive: the current result at once, a push when the app becomes active, and one after a panic signal', async () => {
  const got: Array<{ result: boolean; at: number }> = [];
  const stream = client.StreamIsActive!(meta('acme', 'api')) as grpc.ClientReadableStream<IsActiveResponse>;
  stream.on('data', (m: IsActiveResponse) => got.push({ result: m.result, at: Date.now() }));
  stream.on('error', () => undefined); // the cancel at the end
  await eventually('the first message', async () => (got.length >= 1 ? true : undefined));
  assert.equal(got[0]!.result, false);

  await publish(signal('api', 1));
  await eventually('the push of active', async () => (got.length >= 2 ? true : undefined));
  assert.deepEqual(got.map((g) => g.result), [false, true]);

  // Still active: only the panic itself makes the next push.
  const sentAt = Date.now();
  await publish(signal('api', 3, 'panic'));
  await eventually('the push after the panic signal', async () => (got.length >= 3 ? true : undefined), 10_000);
  assert.equal(got.length, 3);
  assert.equal(got[2]!.result, true);
  assert.ok(got[2]!.at >= sentAt, 'pushed after the panic signal was sent');
  const metrics = await unary<{ metricValues: MetricValue[] }>('GetMetrics', { scaledObjectRef: meta('acme', 'api'), metricName: '' });
  assert.equal(metrics.metricValues[0]!.metricValue, 3);
  stream.cancel();
});

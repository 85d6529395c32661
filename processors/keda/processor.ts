/**
 * The KEDA external scaler: a gRPC service implementing KEDA's `externalscaler.ExternalScaler`
 * (externalscaler.proto, copied from KEDA) over the autoscale signals, so Kubernetes
 * autoscalers get them without a Prometheus round trip. What it answers is signals.ts'.
 *
 * - IsActive / GetMetrics: from the newest signal of the ScaledObject's app (metadata
 *   `tenant`, `app`); GetMetricSpec declares one metric, the recommended replicas, target 1.
 * - StreamIsActive: the current result at once, then a push on every change and when the
 *   app enters panic; staleness is checked every second.
 * - Malformed metadata: INVALID_ARGUMENT, counted.
 *
 * Security: the service has no authentication and serves every tenant's signals (replica
 * counts, modes), so it listens on loopback unless `keda.listen` says otherwise; a
 * deployment exposes it to KEDA's operator only (docs/kubernetes.md).
 *
 * Input: the autoscale topic, from a fresh consumer group per run starting `staleMs` back
 * by Kafka timestamp (the table is in memory and rebuilt from there; nothing to commit
 * durably), deleted again on a clean stop.
 *
 * Scale-out. Keys: signals are keyed by tenant/app, and the newest per app counts by
 * version (the autoscale processor's versions follow its clock, so they keep increasing
 * when another autoscale instance takes the app over). State: that table, in memory.
 * Every instance has a group of its own and reads every partition, so N instances each
 * answer for every app: N buys availability and gRPC capacity (KEDA may reach any of
 * them), not a split of the work. There is no rebalance to go through: a new instance
 * answers from what it has read so far (it starts `staleMs` back, so within moments it
 * knows every active app; until then an app reads as inactive), and an instance that
 * stops takes nothing with it.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Registry } from 'prom-client';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { KedaConfig } from './config.js';
import { SignalTable, appRef, metricName, type AppRef } from './signals.js';
import { kedaMetrics, type KedaMetrics } from './telemetry.js';

/** The .proto the service and its clients (tests included) are built from. */
export const PROTO_PATH = fileURLToPath(new URL('./externalscaler.proto', import.meta.url));

export interface ScaledObjectRef {
  name: string;
  namespace: string;
  scalerMetadata: Record<string, string>;
}
export interface IsActiveResponse {
  result: boolean;
}
export interface MetricSpec {
  metricName: string;
  targetSize: number;
  targetSizeFloat: number;
}
export interface GetMetricsRequest {
  scaledObjectRef: ScaledObjectRef | null;
  metricName: string;
}
export interface MetricValue {
  metricName: string;
  metricValue: number;
  metricValueFloat: number;
}

/** The ExternalScaler service (and client constructor) from {@link PROTO_PATH}; int64 fields as numbers. */
export function loadExternalScaler(): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: Number, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { externalscaler: { ExternalScaler: grpc.ServiceClientConstructor } };
  return pkg.externalscaler.ExternalScaler;
}

export interface KedaDeps {
  bus: EventBus;
  logger: Logger;
  registry: Registry;
  config: KedaConfig;
  /** Clock in ms for signal freshness. Default Date.now. */
  clock?: () => number;
}

export interface KedaProcessor {
  /** `host:port` actually bound (port 0 in the config picks a free one). */
  readonly address: string;
  stop(): Promise<void>;
}

type Stream = grpc.ServerWritableStream<ScaledObjectRef, IsActiveResponse>;

export async function startKeda(deps: KedaDeps): Promise<KedaProcessor> {
  const log = deps.logger.child({ component: 'keda' });
  const clock = deps.clock ?? Date.now;
  const metrics = kedaMetrics(deps.registry);
  const table = new SignalTable(deps.config.staleMs);
  const streams = new Map<string, Set<Stream>>();

  const push = (key: string) => {
    const result = table.active(key, clock());
    for (const call of streams.get(key) ?? []) {
      call.write({ result });
      metrics.pushes.inc();
    }
  };

  const server = new grpc.Server();
  server.addService(loadExternalScaler().service, implementation(table, streams, metrics, log, clock));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(deps.config.listen, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(new LogmeterError('keda_listen', `KEDA external scaler cannot listen on ${deps.config.listen}: ${err.message}`, { retriable: false, cause: err })) : resolve(p))),
  );
  const host = deps.config.listen.slice(0, deps.config.listen.lastIndexOf(':'));
  const address = `${host}:${port}`;

  const run = `${clock().toString(36)}-${randomBytes(3).toString('hex')}`;
  let sub: Subscription;
  try {
    sub = await deps.bus.subscribe({
      group: `keda-${run}`,
      topics: ['autoscale'],
      fromTime: clock() - deps.config.staleMs,
      // In memory only: nothing to make durable before the commit.
      handle: (batch) => {
        const now = clock();
        for (const m of batch) {
          const change = table.take(m.event, now);
          if (change?.push) push(change.key);
        }
        return Promise.resolve();
      },
    });
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  const expiry = setInterval(() => {
    for (const key of table.expire(clock())) push(key);
  }, 1000);
  expiry.unref();
  log.info({ address }, 'KEDA external scaler listening (gRPC, no authentication: keep it on loopback or behind a network policy)');

  return {
    address,
    async stop() {
      clearInterval(expiry);
      for (const set of streams.values()) for (const call of set) call.end();
      streams.clear();
      metrics.streams.set(0);
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await sub.stop();
      await deps.bus.deleteGroups([sub.group]).catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'consumer group of this run not deleted; it expires with the offsets retention'));
    },
  };
}

function implementation(table: SignalTable, streams: Map<string, Set<Stream>>, metrics: KedaMetrics, log: Logger, clock: () => number): grpc.UntypedServiceImplementation {
  /** The app named by the metadata, or undefined after answering INVALID_ARGUMENT. */
  const refOf = (method: string, ref: ScaledObjectRef | null | undefined, fail: (e: Partial<grpc.StatusObject>) => void): AppRef | undefined => {
    const r = appRef(ref?.scalerMetadata);
    if ('problem' in r) {
      metrics.calls.inc({ method, outcome: 'invalid_argument' });
      log.debug({ method, scaledObject: `${ref?.namespace ?? ''}/${ref?.name ?? ''}`, problem: r.problem }, 'KEDA call refused');
      fail({ code: grpc.status.INVALID_ARGUMENT, details: r.problem });
      return undefined;
    }
    metrics.calls.inc({ method, outcome: 'ok' });
    return r;
  };
  const isActive: grpc.handleUnaryCall<ScaledObjectRef, IsActiveResponse> = (call, cb) => {
    const ref = refOf('IsActive', call.request, (e) => cb(e));
    if (ref) cb(null, { result: table.active(SignalTable.key(ref), clock()) });
  };
  const streamIsActive: grpc.handleServerStreamingCall<ScaledObjectRef, IsActiveResponse> = (call) => {
    const ref = refOf('StreamIsActive', call.request, (e) => call.emit('error', e));
    if (!ref) return;
    const key = SignalTable.key(ref);
    let set = streams.get(key);
    if (!set) streams.set(key, (set = new Set()));
    set.add(call);
    metrics.streams.inc();
    const close = () => {
      const s = streams.get(key);
      if (!s?.delete(call)) return;
      metrics.streams.dec();
      if (s.size === 0) streams.delete(key);
    };
    call.on('cancelled', close);
    call.on('close', close);
    call.on('error', close);
    call.write({ result: table.active(key, clock()) });
    metrics.pushes.inc();
  };
  const getMetricSpec: grpc.handleUnaryCall<ScaledObjectRef, { metricSpecs: MetricSpec[] }> = (call, cb) => {
    const ref = refOf('GetMetricSpec', call.request, (e) => cb(e));
    if (ref) cb(null, { metricSpecs: [{ metricName: metricName(ref), targetSize: 1, targetSizeFloat: 1 }] });
  };
  const getMetrics: grpc.handleUnaryCall<GetMetricsRequest, { metricValues: MetricValue[] }> = (call, cb) => {
    const ref = refOf('GetMetrics', call.request.scaledObjectRef, (e) => cb(e));
    if (!ref) return;
    const value = table.recommended(SignalTable.key(ref), clock());
    cb(null, { metricValues: [{ metricName: call.request.metricName || metricName(ref), metricValue: value, metricValueFloat: value }] });
  };
  return { IsActive: isActive, StreamIsActive: streamIsActive, GetMetricSpec: getMetricSpec, GetMetrics: getMetrics };
}

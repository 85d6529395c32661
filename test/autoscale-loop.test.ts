/**
 * The closed loop, on real services: load through HAProxy → HAProxy's logs through the
 * collector → access-log parser → autoscale signals → scaler → new replicas in Docker →
 * route table → HAProxy. Windows and cooldowns are short so the loop fits in a test.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, LifecycleEvent } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector, type Collector } from '../ingest/collector.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { startRouteProcessor } from '../processors/routes/processor.js';
import { startLoadBalancer } from '../processors/routes/haproxy.js';
import { startRouteApplier } from '../processors/routes/applier.js';
import { autoscaleConfigSchema } from '../processors/autoscale/config.js';
import { startAutoscale } from '../processors/autoscale/processor.js';
import { scalerConfigSchema } from '../processors/scaler/config.js';
import { startScaler } from '../processors/scaler/processor.js';
import { eventually, namespace, freePort } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { getWithHost } from './helpers/http.js';

const ns = namespace();
const prefix = `${ns.id}.`;
const host = `loop-${ns.id}.test`;
const registry = createRegistry(false);
const stops: Array<() => Promise<unknown>> = [];
const signals: AutoscaleSignal[] = [];
const operations: LifecycleEvent[] = [];
let lbPort = 0;
let bus: ReturnType<typeof busFor>;
let collector: Collector;
const latencyDir = mkdtempSync(path.join(tmpdir(), 'logmeter-latency-'));
const STABLE_MS = 8000;
const COOLDOWN_MS = 4000;


const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const get = (pathname: string, timeoutMs = 5000) => getWithHost({ port: lbPort, host, path: pathname, agent, timeoutMs });

/** `concurrency` clients requesting for `ms` (bounded), recording which replica answered. */
async function load(ms: number, concurrency: number, seen: Map<string, number>): Promise<{ ok: number; failed: number }> {
  const end = Date.now() + ms;
  let ok = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        try {
          const r = await get('/cgi-bin/work');
          if (r.status === 200) {
            ok++;
            seen.set(r.body, (seen.get(r.body) ?? 0) + 1);
          } else failed++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { ok, failed };
}

const replicas = async () =>
  (await docker.listContainers({ filters: JSON.stringify({ label: [`${prefix}tenant=acme`, `${prefix}app=web`] }) })).length;

before(async () => {
  const codec = await AvroCodec.create(new ManifestSource());
  bus = busFor(ns.config, codec, ns.logger);
  await bus.ensureTopics();
  collector = createCollector({ cfg: collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, lingerMs: 5 }), node: 'n', stateDir: path.join(ns.dataDir, 'collector'), docker, bus, codec, logger: ns.logger, registry });
  await collector.start();
  stops.push(() => collector.stop());
  const parser = await startAccessLogParser({ bus, logger: ns.logger, registry });
  stops.push(() => parser.stop());
  const routes = await startRouteProcessor({ bus, logger: ns.logger, registry, node: 'n', stateDir: path.join(ns.dataDir, 'routes'), config: { labelPrefix: prefix } });
  stops.push(() => routes.stop());
  lbPort = await freePort();
  const lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 8 });
  stops.push(() => lb.close());
  const applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, logger: ns.logger, registry, config: { checkIntervalMs: 200, drainTimeoutMs: 500 } });
  stops.push(() => applier.stop());
  await applier.ready;
  const autoscale = await startAutoscale({
    bus,
    logger: ns.logger,
    registry,
    node: 'n',
    labelPrefix: prefix,
    config: autoscaleConfigSchema.parse({ stableWindowMs: STABLE_MS, panicWindowMs: 2000, policy: { targetP95Ms: 100, targetInFlightPerReplica: null, minReplicas: 1, maxReplicas: 3, cooldownMs: COOLDOWN_MS, minRequests: 5 } }),
  });
  stops.push(() => autoscale.stop());
  const scaler = await startScaler({
    bus,
    docker,
    redisUrl: ns.config.redis.url,
    logger: ns.logger,
    registry,
    prefix: ns.id,
    config: scalerConfigSchema.parse({ labelPrefix: prefix, cooldownMs: { up: 1000, down: COOLDOWN_MS }, drainMs: 500, stopTimeoutSeconds: 1 }),
  });
  stops.push(() => scaler.close());
  const watch = await bus.subscribe({
    group: 'loop-watch',
    topics: ['autoscale', 'lifecycle'],
    handle: async (b) => {
      for (const m of b) {
        if (m.topic === 'autoscale') signals.push(m.event as AutoscaleSignal);
        else if ((m.event as LifecycleEvent).actor === 'scaler') operations.push(m.event as LifecycleEvent);
      }
    },
  });
  stops.push(() => watch.stop());
});

after(async () => {
  agent.destroy();
  for (const stop of stops.reverse()) await stop().catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
  await removeTestContainers(prefix);
  await bus.close();
  ns.cleanup();
});

test('a latency step from 20 ms to 500 ms: panic signal, replicas up to the max, routed; back down only after the stable window and cooldown', async () => {
  // The handler sleeps as long as the host file says (mounted into the first replica only:
  // replicas the scaler adds copy no mounts, so they answer at the default 20 ms).
  writeFileSync(path.join(latencyDir, 'latency'), '0.02\n');
  const cgi = '#!/bin/sh\nsleep $(cat /latency/latency 2>/dev/null || echo 0.02)\nprintf "Content-Type: text/plain\\r\\n\\r\\n%s\\n" "$(hostname)"\n';
  writeFileSync(path.join(latencyDir, 'work'), cgi);
  chmodSync(path.join(latencyDir, 'work'), 0o755);
  const app = await docker.createContainer({
    Image: BASE_IMAGE,
    Cmd: ['sh', '-c', 'mkdir -p /www/cgi-bin && cp /latency/work /www/cgi-bin/work 2>/dev/null || printf \'#!/bin/sh\\nsleep 0.02\\nprintf "Content-Type: text/plain\\\\r\\\\n\\\\r\\\\n%s\\\\n" "$(hostname)"\\n\' > /www/cgi-bin/work; chmod 755 /www/cgi-bin/work; exec httpd -f -p 80 -h /www'],
    Labels: { [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'web', [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80', [`${prefix}autoscale.max`]: '3' },
    ExposedPorts: { '80/tcp': {} },
    HostConfig: { Init: true, Binds: [`${latencyDir}:/latency:ro`], PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  await app.start();
  await eventually('route live', async () => ((await get('/cgi-bin/work').catch(() => ({ status: 0 }))).status === 200 ? true : undefined), 60_000);

  const seen = new Map<string, number>();
  await load(6000, 4, seen);
  const step = Date.now();
  writeFileSync(path.join(latencyDir, 'latency'), '0.5\n');
  await load(6000, 8, seen);
  const panic = await eventually('a panic signal recommending more replicas', async () => signals.find((s) => s.app === 'web' && s.mode === 'panic' && s.recommended_replicas > 1), 30_000);
  t_diag(`first panic signal ${panic.ts - step} ms after the step: ${panic.reason}`);
  await eventually('3 replicas', async () => ((await replicas()) === 3 ? true : undefined), 60_000);
  await eventually('signals count the new replicas', async () => (signals.some((s) => s.app === 'web' && s.current_replicas === 3) ? true : undefined), 30_000);
  const after = new Map<string, number>();
  await eventually('requests spread over the new replicas', async () => {
    await load(3000, 8, after);
    return after.size >= 2 ? true : undefined;
  }, 60_000);

  const drop = Date.now();
  writeFileSync(path.join(latencyDir, 'latency'), '0.02\n');
  await eventually('back to one replica', async () => {
    await load(2000, 4, new Map());
    return (await replicas()) === 1 ? true : undefined;
  }, 120_000);
  const downs = operations.filter((o) => o.action === 'scale_down' || o.action === 'drain');
  assert.ok(downs.length >= 2, 'the surplus replicas were drained and stopped');
  const firstDown = Math.min(...downs.map((o) => o.ts));
  assert.ok(firstDown - drop >= STABLE_MS - 1000, `no scale-down before the stable window had passed (${firstDown - drop} ms after the drop)`);
  const ups = operations.filter((o) => o.action === 'scale_up');
  assert.ok(ups.length >= 1);
  assert.ok(signals.filter((s) => s.app === 'web').every((s) => s.recommended_replicas <= 3), 'never beyond max');
  // The original (oldest) replica is the one left.
  const left = await docker.listContainers({ filters: JSON.stringify({ label: [`${prefix}tenant=acme`, `${prefix}app=web`] }) });
  assert.deepEqual(left.map((c) => c.Id), [app.id]);
});

function t_diag(msg: string): void {
  process.stdout.write(`# ${msg}\n`);
}

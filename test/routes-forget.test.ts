/**
 * Idle hosts are forgotten (issue 18): a host with nothing published and no container
 * running for `routes.emptyHostGraceSeconds` gets a tombstone on the compacted routes
 * topic, leaves the route table, the applier and HAProxy's host map, and stays gone
 * after a restart (also from a snapshot older than the tombstone). Real Kafka and a real
 * HAProxy; the containers are lifecycle events published by the test, their upstreams
 * HTTP servers in this process.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { copyFileSync, mkdirSync } from 'node:fs';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LifecycleEvent } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { startLoadBalancer, type LoadBalancer } from '../processors/routes/haproxy.js';
import { startRouteApplier, type RouteApplier } from '../processors/routes/applier.js';
import { HaproxyRuntimeApi } from '../processors/routes/runtime-api.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { getWithHost } from './helpers/http.js';
import { freePort, routedLifecycle } from './helpers/routes.js';

describe('idle hosts forgotten, with Kafka and a real HAProxy', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const registry = createRegistry(false);
  let bus: ReturnType<typeof busFor>;
  let processor: RouteProcessor | undefined;
  let lb: LoadBalancer | undefined;
  let applier: RouteApplier | undefined;
  let api: HaproxyRuntimeApi;
  let lbPort = 0;
  const agent = new http.Agent({ keepAlive: false });
  const upstreams: Array<{ server: http.Server; port: number }> = [];
  const routesConfig = { labelPrefix: prefix, emptyHostGraceSeconds: 2, applier: { checkIntervalMs: 200, drainTimeoutMs: 500, catchUpTimeoutMs: 20_000 } };
  const startProcessor = (stateDir: string) => startRouteProcessor({ bus, logger: ns.logger, registry, node: 'test-node', stateDir, config: routesConfig });
  const startApplier = () => startRouteApplier({ bus, adminSocket: lb!.adminSocket, logger: ns.logger, registry, config: routesConfig.applier, ...(processor ? { local: processor } : {}) });

  before(async () => {
    for (const n of ['gone', 'keep', 'back']) {
      const server = http.createServer((_req, res) => res.end(`${n}\n`));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      upstreams.push({ server, port: (server.address() as net.AddressInfo).port });
    }
    const codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
    processor = await startProcessor(path.join(ns.dataDir, 'routes'));
    lbPort = await freePort();
    // Two slots: the third host is routed only once the forgotten one gave its slot back.
    lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 2 });
    api = new HaproxyRuntimeApi(lb.adminSocket);
    applier = await startApplier();
    await applier.ready;
  });

  after(async () => {
    api?.close();
    agent.destroy();
    for (const stop of [() => applier?.stop(), () => processor?.stop(), () => lb?.close()]) {
      await Promise.resolve()
        .then(stop)
        .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
    }
    for (const u of upstreams) await new Promise((r) => u.server.close(r));
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });

  const cid = (n: number) => `${n.toString(16).padStart(12, 'f')}${'0'.repeat(52)}`;
  function life(n: number, action: string, host: string, upstream: number): LifecycleEvent {
    return routedLifecycle({ eventPrefix: ns.id, labelPrefix: prefix, containerId: cid(n), n, action, host, port: upstreams[upstream]!.port });
  }

  const send = (...events: LifecycleEvent[]) => bus.publish('lifecycle', events.map((event) => ({ event })));
  const get = async (host: string) => {
    const r = await getWithHost({ port: lbPort, host, agent, timeoutMs: 3000 });
    return `${r.status} ${r.body.trim()}`;
  };
  const mapped = async () => [...(await api.showMap(lb!.mapFile)).keys()].filter((k) => !k.includes(':')).sort();
  const hosts = () => processor!.table.current().map((h) => h.host).sort();

  /** Everything on the routes topic, in order: sets as `host vN`, tombstones as `host deleted`. */
  async function routesTopic(): Promise<string[]> {
    const got: string[] = [];
    const reader = await bus.readToEnd({
      topic: 'routes',
      group: `check-${Date.now()}`,
      follow: false,
      handle: (batch) => {
        for (const m of batch) got.push(`${m.event.host} v${m.event.version}`);
        return Promise.resolve();
      },
      onTombstone: (key) => {
        got.push(`${key?.toString() ?? 'null'} deleted`);
        return Promise.resolve();
      },
    });
    assert.equal(await reader.caughtUp, true);
    await reader.stop();
    return got;
  }

  const GONE = `gone-${ns.id}.test`;
  const KEEP = `keep-${ns.id}.test`;
  const BACK = `back-${ns.id}.test`;

  test('a host idle past its grace: tombstoned, its map entry and slot freed, and not brought back by a restart or an older snapshot', { timeout: 180_000 }, async () => {
    await send(life(1, 'start', GONE, 0), life(2, 'start', KEEP, 1));
    await applier!.waitFor(GONE, (r) => r.upstreams.length === 1);
    await applier!.waitFor(KEEP, (r) => r.upstreams.length === 1);
    assert.deepEqual([await get(GONE), await get(KEEP)], ['200 gone', '200 keep']);
    assert.deepEqual(await mapped(), [GONE, KEEP].sort());
    // A snapshot from before the tombstone, for the restart below.
    const oldState = path.join(ns.dataDir, 'routes-old');
    mkdirSync(oldState, { recursive: true });
    copyFileSync(path.join(ns.dataDir, 'routes', 'table.json'), path.join(oldState, 'table.json'));
    // The same instance (its name, so its lifecycle group and position: see ownership.ts), only with the older snapshot.
    copyFileSync(path.join(ns.dataDir, 'routes', 'instance'), path.join(oldState, 'instance'));

    // Both slots are taken: a third host waits for one.
    await send(life(3, 'start', BACK, 2));
    await assert.rejects(applier!.waitFor(BACK, () => true, 1500), /no applied route set/);

    await send(life(1, 'die', GONE, 0), life(1, 'destroy', GONE, 0));
    await eventually('the idle host forgotten by the table', async () => (hosts().includes(GONE) ? undefined : true));
    assert.deepEqual(hosts(), [BACK, KEEP].sort());
    await eventually('its map entry freed, the waiting host routed in its slot', async () => ((await mapped()).join() === [BACK, KEEP].sort().join() ? true : undefined));
    await applier!.waitFor(BACK, (r) => r.upstreams.length === 1);
    await eventually('the applier forgot it', async () => (applier!.applied().has(GONE) ? undefined : true));
    assert.equal((await getWithHost({ port: lbPort, host: GONE, agent, timeoutMs: 3000 })).status, 503, 'not routed any more');
    assert.deepEqual([await get(KEEP), await get(BACK)], ['200 keep', '200 back']);
    // On the topic: its sets, then the tombstone (compaction keeps only that, then drops it).
    const topic = await routesTopic();
    assert.deepEqual(topic.filter((l) => l.startsWith(GONE)), [`${GONE} v1`, `${GONE} v2`, `${GONE} deleted`]);
    // Nobody dead-lettered the tombstone as an undecodable message.
    const dlq = await bus.endOffsets(bus.topic('dlq'));
    assert.deepEqual(dlq.map((p) => p.high), dlq.map((p) => p.low));

    // Restart of the processor (from its snapshot and the topic) and of the applier (from the topic).
    await applier!.stop();
    applier = undefined;
    await processor!.stop();
    processor = undefined;
    processor = await startProcessor(path.join(ns.dataDir, 'routes'));
    assert.deepEqual(hosts(), [BACK, KEEP].sort());
    await processor.stop();
    // From a snapshot older than the tombstone: the seed reads the tombstone and drops the host again.
    processor = await startProcessor(oldState);
    assert.deepEqual(hosts(), [BACK, KEEP].sort());
    applier = await startApplier();
    await applier.ready;
    assert.deepEqual([...applier.applied().keys()].sort(), [BACK, KEEP].sort());
    assert.deepEqual(await mapped(), [BACK, KEEP].sort());

    // The app comes back on the same host (once a slot is free again): a new host, from version 1.
    await send(life(3, 'die', BACK, 2), life(4, 'start', GONE, 0));
    const again = await applier.waitFor(GONE, (r) => r.upstreams.length === 1);
    assert.equal(again.version, 1);
    assert.equal(await get(GONE), '200 gone');
  });
});

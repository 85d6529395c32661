/**
 * Start hints on the real services (processors/routes/start-hints.ts, hints.ts): Docker's
 * event stream → route table preview → applier → HAProxy, ahead of the lifecycle event's
 * trip through Kafka. No collector runs here: the lifecycle events a collector would send
 * are published by the test (built from Docker's inspect by the collector's own code), so
 * each case controls whether and when the set that decides comes.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { factsFromInspect } from '../lib/container.js';
import { identityFromLabels } from '../lib/identity.js';
import { toLifecycleEvent } from '../ingest/lifecycle.js';
import { startLoadBalancer, type LoadBalancer } from '../processors/routes/haproxy.js';
import { startRouteApplier, type RouteApplier } from '../processors/routes/applier.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { startStartHints, type StartHints } from '../processors/routes/start-hints.js';
import { HaproxyRuntimeApi } from '../processors/routes/runtime-api.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { getWithHost } from './helpers/http.js';
import { freePort } from './helpers/routes.js';

describe('start hints through a real HAProxy', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const registry = createRegistry(false);
  const confirmMs = 1500;
  let bus: ReturnType<typeof busFor>;
  let processor: RouteProcessor | undefined;
  let lb: LoadBalancer | undefined;
  let applier: RouteApplier | undefined;
  let hints: StartHints | undefined;
  let lbPort = 0;
  const agent = new http.Agent({ keepAlive: false });

  before(async () => {
    const codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
    processor = await startRouteProcessor({ bus, logger: ns.logger, registry, node: 'test-node', stateDir: path.join(ns.dataDir, 'routes'), config: { labelPrefix: prefix } });
    lbPort = await freePort();
    lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 8 });
    applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, mapFile: lb.mapFile, logger: ns.logger, registry, config: { checkIntervalMs: 200, drainTimeoutMs: 500, hintConfirmMs: confirmMs }, local: processor });
    await applier.ready;
    hints = startStartHints({ docker, labelPrefix: prefix, node: 'test-node', processor, applier, logger: ns.logger, registry });
  });

  after(async () => {
    for (const stop of [() => hints?.stop(), () => applier?.stop(), () => processor?.stop(), () => lb?.close()]) {
      await Promise.resolve()
        .then(stop)
        .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
    }
    agent.destroy();
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });

  const get = (host: string) => getWithHost({ port: lbPort, host, agent, timeoutMs: 3000 });
  const metric = async (name: string, label: string, value: string) => ((await registry.getSingleMetric(name)?.get())?.values ?? []).filter((v) => v.labels[label] === value).reduce((s, v) => s + v.value, 0);
  const hintCount = (outcome: string) => metric('logmeter_routes_start_hints_total', 'outcome', outcome);
  const seenCount = (result: string) => metric('logmeter_routes_start_events_seen_total', 'result', result);
  const factsFrom = (source: string) => metric('logmeter_routes_start_hint_facts_total', 'source', source);

  /** busybox httpd answering its hostname (the short container id), port 80 published on 127.0.0.1 (an ephemeral port, or `hostPort`). */
  async function startApp(host: string, tenant: string, hostPort = ''): Promise<Docker.Container> {
    const c = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'],
      Labels: { 'logmeter.test': 'true', [`${prefix}tenant`]: tenant, [`${prefix}app`]: 'web', [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: hostPort }] } },
    });
    await c.start();
    return c;
  }

  /** The `start` lifecycle event of a running container, as the collector builds and sends it. */
  async function publishStart(c: Docker.Container): Promise<void> {
    const info = await c.inspect();
    const facts = factsFromInspect(info);
    const identity = identityFromLabels(facts.labels, prefix)!;
    const e = toLifecycleEvent({ Type: 'container', Action: 'start', Actor: { ID: c.id, Attributes: facts.labels }, timeNano: Date.parse(info.State.StartedAt) * 1e6 }, facts, identity, 'test-node');
    await bus.publish('lifecycle', [{ event: e }]);
  }

  const serves = (host: string, c: Docker.Container) => async () => ((await get(host).catch(() => undefined))?.body.trim() === c.id.slice(0, 12) ? true : undefined);
  const servers = async (host: string) => {
    const api = new HaproxyRuntimeApi(lb!.adminSocket);
    try {
      const backend = (await api.showMap(lb!.mapFile)).get(host);
      return backend ? (await api.serversState(backend)).map((s) => s.name).sort() : [];
    } finally {
      api.close();
    }
  };

  test('a start is routed from its Docker event alone, before any set; with no set to confirm it, it is taken out again', async () => {
    const host = `alone-${ns.id}.test`;
    const c = await startApp(host, 'acme');
    await eventually(`${host} served by the hint`, serves(host, c));
    // Nothing went through Kafka: neither the table nor the applier has a set of the host.
    assert.equal(processor!.table.version(host), undefined);
    assert.equal(applier!.applied().get(host), undefined);
    assert.equal(await hintCount('applied'), 1);
    // The topic never confirms it: after confirmMs the host is reconciled against it (no set: retired).
    await eventually(`${host} unrouted again`, async () => ((await get(host)).status === 503 ? true : undefined));
    assert.equal(await hintCount('expired'), 1);
    assert.equal(await hintCount('confirmed'), 0);
    await c.remove({ force: true });
  });

  test('a hinted container that ends before any set is taken out at once (retracted), not at the deadline', async () => {
    const host = `ended-${ns.id}.test`;
    const c = await startApp(host, 'acme');
    await eventually(`${host} served by the hint`, serves(host, c));
    const expired = await hintCount('expired');
    await c.kill();
    await eventually(`${host} unrouted after the kill`, async () => ((await get(host)).status === 503 ? true : undefined));
    assert.equal(await hintCount('retracted'), 1);
    assert.equal(await hintCount('expired'), expired, 'not left to the deadline');
    await eventually('its server deleted and its map entry freed', async () => ((await servers(host)).length === 0 ? true : undefined));
    await c.remove({ force: true });
  });

  test('the set that lists the hinted server confirms it: it stays', async () => {
    const host = `confirmed-${ns.id}.test`;
    const c = await startApp(host, 'acme');
    await eventually(`${host} served by the hint`, serves(host, c));
    assert.equal(applier!.applied().get(host), undefined);
    await publishStart(c);
    await applier!.waitFor(host, (r) => r.upstreams.some((u) => u.container_id === c.id));
    await eventually('the hint confirmed', async () => ((await hintCount('confirmed')) === 1 ? true : undefined));
    assert.deepEqual(await servers(host), [c.id.slice(0, 12)]);
    assert.equal((await get(host)).body.trim(), c.id.slice(0, 12));
    assert.equal(await hintCount('expired'), 1, 'only the first case expired');
    await c.remove({ force: true });
  });

  test('a container whose create fixed its published port is hinted from its facts at create: no inspect after its start', async () => {
    const host = `fixed-${ns.id}.test`;
    const [fromCreate, fromInspect] = [await factsFrom('create'), await factsFrom('inspect')];
    // Every earlier start published an ephemeral port: each was inspected after its start.
    assert.equal(fromCreate, 0);
    assert.ok(fromInspect >= 3, `the earlier starts inspected (${fromInspect})`);
    const port = await freePort();
    const c = await startApp(host, 'acme', String(port));
    await eventually(`${host} served by the hint`, serves(host, c));
    assert.equal(await factsFrom('create'), 1);
    assert.equal(await factsFrom('inspect'), fromInspect);
    // The server HAProxy got is the published port the create fixed.
    const api = new HaproxyRuntimeApi(lb!.adminSocket);
    try {
      const backend = (await api.showMap(lb!.mapFile)).get(host)!;
      assert.deepEqual((await api.serversState(backend)).map((s) => [s.name, s.address, s.port]), [[c.id.slice(0, 12), '127.0.0.1', port]]);
    } finally {
      api.close();
    }
    await c.remove({ force: true });
  });

  test("another tenant's container on a claimed host is never hinted into it", async () => {
    const host = `claimed-${ns.id}.test`;
    const owner = await startApp(host, 'acme');
    await eventually(`${host} served by the owner's hint`, serves(host, owner));
    await publishStart(owner);
    await applier!.waitFor(host, (r) => r.upstreams.some((u) => u.container_id === owner.id));
    const applied = await hintCount('applied');
    const refusedBefore = await seenCount('not_routed');
    const intruder = await startApp(host, 'evil');
    // Its start was seen and judged by the table's claim rule.
    await eventually("the intruder's start judged", async () => ((await seenCount('not_routed')) === refusedBefore + 1 ? true : undefined));
    assert.equal(await hintCount('applied'), applied, 'no hint applied for it');
    assert.deepEqual(await servers(host), [owner.id.slice(0, 12)]);
    for (let i = 0; i < 5; i++) assert.equal((await get(host)).body.trim(), owner.id.slice(0, 12));
    await intruder.remove({ force: true });
    await owner.remove({ force: true });
  });
});

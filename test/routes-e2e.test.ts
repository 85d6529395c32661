/**
 * The whole path on the real services: Docker events → collector → Kafka lifecycle →
 * route processor → routes topic → applier → HAProxy (in a container, host network);
 * HAProxy's own log → collector → access-log parser → http topic → route processor.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { Upstream } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector, type Collector } from '../ingest/collector.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { startLoadBalancer, type LoadBalancer } from '../processors/routes/haproxy.js';
import { startRouteApplier, type RouteApplier } from '../processors/routes/applier.js';
import { upstreamServerName } from '../processors/routes/diff.js';
import { HaproxyRuntimeApi, inMaintenance } from '../processors/routes/runtime-api.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';
import { getWithHost } from './helpers/http.js';
import { freePort } from './helpers/routes.js';

describe('routes through a real HAProxy', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const registry = createRegistry(false);
  let bus: ReturnType<typeof busFor>;
  let collector: Collector | undefined;
  let parser: { stop(): Promise<void> } | undefined;
  let processor: RouteProcessor | undefined;
  let lb: LoadBalancer | undefined;
  let applier: RouteApplier | undefined;
  let lbPort = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  const applierConfig = { checkIntervalMs: 200, drainTimeoutMs: 1000, catchUpTimeoutMs: 20_000 };

  before(async () => {
    const codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
    collector = createCollector({
      cfg: collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600 }),
      node: 'test-node',
      stateDir: path.join(ns.dataDir, 'collector'),
      docker,
      bus,
      codec,
      logger: ns.logger,
      registry,
    });
    await collector.start();
    parser = await startAccessLogParser({ bus, logger: ns.logger, registry });
    processor = await startRouteProcessor({
      bus,
      logger: ns.logger,
      registry,
      node: 'test-node',
      stateDir: path.join(ns.dataDir, 'routes'),
      config: { labelPrefix: prefix, health: { errorRate: 0.5, minRequests: 5, windowMs: 5000, probationMs: 1500, maxProbationMs: 10_000 } },
    });
    lbPort = await freePort();
    lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 16 });
    applier = await startRouteApplier({ bus, adminSocket: lb.adminSocket, logger: ns.logger, registry, config: applierConfig });
    await applier.ready;
  });

  after(async () => {
    agent.destroy();
    for (const stop of [() => applier?.stop(), () => processor?.stop(), () => parser?.stop(), async () => void (await collector?.stop()), () => lb?.close()]) {
      await Promise.resolve()
        .then(stop)
        .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
    }
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });

  /** A GET through HAProxy with the given Host header. */
  const get = (host: string, pathname = '/', timeoutMs = 3000) => getWithHost({ port: lbPort, host, path: pathname, agent, timeoutMs });

  /**
   * busybox httpd on port 80, published on 127.0.0.1: `/` names the container,
   * `/cgi-bin/app` answers 504 while /tmp/fail exists, `/cgi-bin/heal` removes it.
   */
  async function startApp(host: string, opts: { fail?: boolean } = {}): Promise<Docker.Container> {
    const cgi = [
      '#!/bin/sh',
      'if [ -f /tmp/fail ]; then',
      "  printf 'HTTP/1.1 504 Gateway Timeout\\r\\nContent-Type: text/plain\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nfail\\n'",
      'else',
      "  printf 'Content-Type: text/plain\\r\\n\\r\\n'",
      '  hostname',
      'fi',
    ].join('\n');
    const heal = ['#!/bin/sh', 'rm -f /tmp/fail', "printf 'Content-Type: text/plain\\r\\n\\r\\nhealed\\n'"].join('\n');
    const c = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: [
        'sh',
        '-c',
        `printf '%s\\n' "$CGI" > /www/cgi-bin/app && printf '%s\\n' "$HEAL" > /www/cgi-bin/heal && chmod +x /www/cgi-bin/* && hostname > /www/index.html && ${opts.fail ? 'touch /tmp/fail && ' : ''}exec httpd -f -p 80 -h /www`,
      ],
      Env: [`CGI=${cgi}`, `HEAL=${heal}`],
      Labels: { 'logmeter.test': 'true', [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'web', [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    });
    await c.start();
    return c;
  }

  /** A GET straight to a container's published port, past HAProxy. (A detached `docker exec` would leave a socket open.) */
  async function direct(c: Docker.Container, pathname: string): Promise<number> {
    const port = Number((await c.inspect()).NetworkSettings.Ports['80/tcp']?.[0]?.HostPort);
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: pathname, agent: false, timeout: 3000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
  }

  const short = (c: Docker.Container) => c.id.slice(0, 12);
  const has = (c: Docker.Container) => (r: { upstreams: Upstream[] }) => r.upstreams.some((u) => u.container_id === c.id);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  interface Sample {
    start: number;
    end: number;
    status: number;
    body: string;
    error?: string;
  }

  /** Sequential requests in `loops` parallel loops until `until()` says stop (bounded in count and time). */
  function stream(host: string, pathname: string, until: () => boolean, o: { loops?: number; gapMs?: number; max?: number; maxMs?: number } = {}): Promise<Sample[]> {
    const out: Sample[] = [];
    const deadline = Date.now() + (o.maxMs ?? 60_000);
    const one = async () => {
      while (!until() && out.length < (o.max ?? 20_000) && Date.now() < deadline) {
        const start = Date.now();
        try {
          const r = await get(host, pathname, 2000);
          out.push({ start, end: Date.now(), ...r });
        } catch (err) {
          out.push({ start, end: Date.now(), status: 0, body: '', error: err instanceof Error ? err.message : String(err) });
        }
        if (o.gapMs) await sleep(o.gapMs);
      }
    };
    return Promise.all(Array.from({ length: o.loops ?? 1 }, one)).then(() => out);
  }

  /** HAProxy's routed servers (not in maintenance) per host, and the processor's published sets. */
  async function haproxyVsTable(): Promise<{ haproxy: Record<string, string[]>; table: Record<string, string[]>; strays: string[] }> {
    const api = new HaproxyRuntimeApi(lb!.adminSocket);
    const map = await api.showMap(lb!.mapFile);
    const servers = await api.serversState();
    const haproxy: Record<string, string[]> = {};
    const mappedBackends = new Set<string>();
    for (const [host, backend] of map) {
      if (host.includes(':')) continue; // the applier's restart marker
      mappedBackends.add(backend);
      const live = servers.filter((s) => s.backend === backend && !inMaintenance(s)).map((s) => `${s.name}@${s.address}:${s.port}`);
      if (live.length > 0) haproxy[host] = live.sort();
    }
    const strays = servers.filter((s) => !mappedBackends.has(s.backend) && !inMaintenance(s)).map((s) => `${s.backend}/${s.name}`);
    const table: Record<string, string[]> = {};
    for (const h of processor!.table.current()) {
      if (h.upstreams.length > 0) table[h.host] = h.upstreams.map((u) => `${upstreamServerName(u)}@${u.address}:${u.port}`).sort();
    }
    return { haproxy, table, strays };
  }

  async function converged(what: string, timeoutMs = 30_000): Promise<void> {
    let last: unknown;
    await eventually(
      what,
      async () => {
        const s = await haproxyVsTable();
        last = s;
        const sorted = (o: Record<string, string[]>) => JSON.stringify(Object.entries(o).sort(([x], [y]) => (x < y ? -1 : 1)));
        return sorted(s.haproxy) === sorted(s.table) && s.strays.length === 0 ? true : undefined;
      },
      timeoutMs,
    ).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}: ${JSON.stringify(last)}`);
    });
  }

  const startTests: Array<{ host: string; c: Docker.Container }> = [];

  test('a started container is reached through HAProxy by its Host; start → route live is measured', { timeout: 180_000 }, async (t) => {
    const timings: Array<{ c: Docker.Container; host: string; firstOk: number; published?: number; applied?: number }> = [];
    const published = new Map<string, number>();
    const offPublished = processor!.onPublished((sets) => {
      for (const s of sets) if (s.upstreams.length > 0 && !published.has(s.host)) published.set(s.host, s.ts);
    });
    const applied = new Map<string, number>();
    const offApplied = applier!.onApplied((r) => {
      if (r.upstreams.length > 0 && !applied.has(r.host)) applied.set(r.host, r.appliedAt);
    });
    try {
      // Polled from the moment the container started: the route may be live before its
      // httpd listens. docker-proxy then accepts and closes, and HAProxy, after its
      // retries, answers 502 to a connection's first request but closes a kept-alive
      // connection without an answer ("socket hang up" here, where a browser retries):
      // both mean "not serving yet" (CI failed once on the second).
      const poll = (host: string) =>
        get(host).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return { status: 0, body: 'connection closed without an answer' };
          throw err;
        });
      // The first one is cold (consumers just joined, connections not warm): shown apart.
      for (let i = 0; i < 6; i++) {
        const host = `app-${ns.id}-${i}.test`;
        const c = await startApp(host);
        let r = await poll(host);
        const end = Date.now() + 30_000;
        while (!(r.status === 200 && r.body === short(c))) {
          assert.ok(Date.now() < end, `no answer from ${short(c)} through HAProxy: last ${r.status} ${r.body}`);
          await sleep(2);
          r = await poll(host);
        }
        timings.push({ c, host, firstOk: Date.now(), published: published.get(host), applied: applied.get(host) });
        startTests.push({ host, c });
      }
    } finally {
      offPublished();
      offApplied();
    }
    // The Docker start event's time, as the collector put it on the lifecycle topic.
    const starts = await collect(bus, 'lifecycle', (evs) => timings.every((x) => evs.some((e) => e.container_id === x.c.id && e.action === 'start')));
    const ms: number[] = [];
    for (const [i, x] of timings.entries()) {
      const ts = starts.find((e) => e.container_id === x.c.id && e.action === 'start')!.ts;
      if (i > 0) ms.push(x.firstOk - ts);
      const step = (v: number | undefined) => (v === undefined ? '?' : `+${v - ts} ms`);
      t.diagnostic(`start → first 200 through HAProxy: ${x.firstOk - ts} ms (route set published ${step(x.published)}, applied to HAProxy ${step(x.applied)})${i === 0 ? ' [cold: first after start-up]' : ''}`);
    }
    const sorted = [...ms].sort((a, b) => a - b);
    t.diagnostic(`start → route live, ${ms.length} warm starts: median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms`);
    // An unknown host is answered by HAProxy itself.
    assert.equal((await get(`nobody-${ns.id}.test`)).status, 503);
  });

  test('a container killed under a steady request stream: once the route update is applied, no request fails', { timeout: 180_000 }, async (t) => {
    const host = `kill-${ns.id}.test`;
    const a = await startApp(host);
    const b = await startApp(host);
    await applier!.waitFor(host, (r) => has(a)(r) && has(b)(r));
    await eventually('both containers answer', async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add((await get(host)).body);
      return seen.has(short(a)) && seen.has(short(b)) ? true : undefined;
    });
    let appliedAt = Number.POSITIVE_INFINITY;
    let stopAt = Number.POSITIVE_INFINITY;
    const running = stream(host, '/', () => Date.now() > stopAt, { loops: 2, max: 20_000, maxMs: 60_000 });
    await sleep(500);
    const killedAt = Date.now();
    await a.kill();
    const applied = await applier!.waitFor(host, (r) => !has(a)(r) && has(b)(r));
    appliedAt = applied.appliedAt;
    stopAt = appliedAt + 2000;
    const samples = await running;
    const afterApply = samples.filter((s) => s.start >= appliedAt);
    const failedAfter = afterApply.filter((s) => s.status !== 200 || s.body !== short(b));
    const failedBefore = samples.filter((s) => s.start < appliedAt && s.status !== 200);
    t.diagnostic(
      `kill → applied ${appliedAt - killedAt} ms (version ${applied.version}); ${samples.length} requests, ${afterApply.length} after the update, ${failedBefore.length} failed before it, ${failedAfter.length} after`,
    );
    assert.ok(afterApply.length >= 20, `only ${afterApply.length} requests after the update`);
    assert.deepEqual(failedAfter, [], 'no request fails once the route update is applied');
  });

  test('an upstream answering 504 is taken out of rotation and returns when it answers 200 again', { timeout: 180_000 }, async (t) => {
    const host = `flaky-${ns.id}.test`;
    const good = await startApp(host);
    const bad = await startApp(host, { fail: true });
    await applier!.waitFor(host, (r) => has(good)(r) && has(bad)(r));
    let stop = false;
    const running = stream(host, '/cgi-bin/app', () => stop, { gapMs: 10, max: 20_000, maxMs: 90_000 });
    try {
      const t0 = Date.now();
      const out = await applier!.waitFor(host, (r) => !has(bad)(r) && has(good)(r), 45_000);
      t.diagnostic(`504s → taken out and applied in ${out.appliedAt - t0} ms (version ${out.version})`);
      assert.equal(processor!.table.member(bad.id)!.http.state, 'ejected');
      assert.equal(await direct(bad, '/cgi-bin/heal'), 200);
      const back = await applier!.waitFor(host, (r) => has(bad)(r) && has(good)(r), 30_000);
      t.diagnostic(`back in rotation ${back.appliedAt - out.appliedAt} ms after it was taken out (version ${back.version})`);
      await eventually('a 200 from the recovered upstream', async () => ((await get(host, '/cgi-bin/app')).body === short(bad) ? true : undefined), 10_000);
      await sleep(3000);
      stop = true;
      const samples = await running;
      const whileOut = samples.filter((s) => s.start >= out.appliedAt && s.end < back.appliedAt);
      assert.ok(whileOut.length > 0);
      assert.deepEqual(whileOut.filter((s) => s.status !== 200 || s.body !== short(good)), [], 'only the healthy upstream answers while the other is out');
      const afterBack = samples.filter((s) => s.start >= back.appliedAt);
      assert.deepEqual(afterBack.filter((s) => s.status !== 200), [], 'no error once it is back');
      assert.ok(afterBack.some((s) => s.body === short(bad)), 'the recovered upstream serves again');
      assert.notEqual(processor!.table.member(bad.id)!.http.state, 'ejected');
      assert.ok(has(bad)(applier!.applied().get(host)!), 'still in rotation');
    } finally {
      stop = true;
      await running;
    }
  });

  test('the applier restarted while routes change, then HAProxy restarted: HAProxy ends equal to the route table', { timeout: 240_000 }, async (t) => {
    await converged('HAProxy equal to the table before the restart');
    await applier!.stop();
    applier = undefined;
    // Changes while no applier runs: a new host, a host emptied, a host grown.
    const newHost = `late-${ns.id}.test`;
    const n1 = await startApp(newHost);
    const emptied = startTests[0]!;
    await emptied.c.kill();
    const grown = startTests[1]!;
    const g2 = await startApp(grown.host);
    await eventually('the processor published the changes', async () => {
      const cur = new Map(processor!.table.current().map((h) => [h.host, h.upstreams] as const));
      return cur.get(newHost)?.length === 1 && cur.get(emptied.host)?.length === 0 && cur.get(grown.host)?.length === 2 ? true : undefined;
    });
    // A new applier, with one more change while it reads the topic.
    const starting = startRouteApplier({ bus, adminSocket: lb!.adminSocket, logger: ns.logger, registry, config: applierConfig });
    const n2 = await startApp(newHost);
    applier = await starting;
    await applier.ready;
    await applier.waitFor(newHost, (r) => has(n1)(r) && has(n2)(r));
    await converged('HAProxy equal to the table after the applier restart');
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add((await get(newHost)).body);
    assert.deepEqual([...answers].sort(), [short(n1), short(n2)].sort());
    assert.equal((await get(emptied.host)).status, 503);
    const g = new Set<string>();
    for (let i = 0; i < 6; i++) g.add((await get(grown.host)).body);
    assert.deepEqual([...g].sort(), [short(grown.c), short(g2)].sort());
    // Removed servers are deleted (not left in maintenance) and an emptied host's backend is given back.
    const api = new HaproxyRuntimeApi(lb!.adminSocket);
    await eventually('removed servers deleted, emptied host unmapped', async () => {
      const inMaint = (await api.serversState()).filter(inMaintenance);
      return inMaint.length === 0 && !(await api.showMap(lb!.mapFile)).has(emptied.host) ? true : undefined;
    });

    // HAProxy restarted: it comes back with no routes; the applier notices and restores them.
    const restartedAt = Date.now();
    await lb!.restart();
    await converged('HAProxy equal to the table after its restart');
    t.diagnostic(`HAProxy restart → routes restored in ${Date.now() - restartedAt} ms`);
    assert.equal((await get(newHost)).status, 200);
    assert.equal((await get(grown.host)).status, 200);
  });

  test('the route processor restarted without its snapshot continues versions from the routes topic', { timeout: 120_000 }, async () => {
    const { host } = startTests[2]!;
    const before = processor!.table.current().find((h) => h.host === host)!;
    await processor!.stop();
    processor = undefined;
    processor = await startRouteProcessor({
      bus,
      logger: ns.logger,
      registry,
      node: 'test-node',
      stateDir: path.join(ns.dataDir, 'routes-without-snapshot'),
      config: { labelPrefix: prefix },
    });
    const seeded = processor.table.current().find((h) => h.host === host)!;
    assert.equal(seeded.version, before.version);
    assert.deepEqual(seeded.upstreams, before.upstreams);
    const c = await startApp(host);
    const r = await applier!.waitFor(host, has(c));
    assert.equal(r.version, before.version + 1);
    assert.equal(r.upstreams.length, before.upstreams.length + 1);
  });
});

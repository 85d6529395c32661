/**
 * The route applier takes a start hint that came in the middle of a pass at the next step
 * of that pass, not at the start of the next pass (applier.ts `hintsFirst`): here, between
 * the two backends it reaps. Real Kafka, a real HAProxy and a real route processor; between
 * the applier and HAProxy's admin socket a unix-socket proxy of the test's own, which
 * records every command line the applier sends and holds one chosen line until the test
 * releases it. So the order is shown by the command log, with no timing involved:
 *
 * - host A's server has a request in flight when it is taken out: it drains, and every
 *   reap pass finds it busy (`wait`, no command for it);
 * - host B's server is taken out next: it has no sessions, the reap deletes it at once;
 * - the proxy holds the first `show stat` of A's backend sent after B's server went in
 *   maintenance: the applier is inside a reap that has A's backend then B's to do;
 * - meanwhile the test hints a new host C's upstream, then releases.
 *
 * The hint's `add server` must come right after the held `show stat`, before B's backend
 * is read and its server deleted (before the change, it waited for the next pass).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LifecycleEvent } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { startLoadBalancer, type LoadBalancer } from '../processors/routes/haproxy.js';
import { startRouteApplier, type RouteApplier, type RouteHint } from '../processors/routes/applier.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { HaproxyRuntimeApi } from '../processors/routes/runtime-api.js';
import { upstreamServerName } from '../processors/routes/diff.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { getWithHost } from './helpers/http.js';
import { freePort, routedLifecycle } from './helpers/routes.js';
import { deferred } from './helpers/deferred.js';

/** A line held by the proxy; `release` forwards it and returns its index in `lines`. */
interface Held {
  line: string;
  release(): number;
}

/**
 * A unix-socket proxy to HAProxy's admin socket. The runtime API client writes one command
 * per line (several lines in one write for `run`), so every line is one command: each is
 * recorded in `lines`, in the order HAProxy receives them. Answers are passed back as is.
 */
class AdminProxy {
  readonly lines: string[] = [];
  private holding: { pred: (line: string) => boolean; found: (h: Held) => void } | undefined;
  private readonly server = net.createServer((c) => this.connect(c));
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly socketPath: string,
    private readonly target: string,
  ) {}

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, resolve);
    });
  }

  /** Holds the next line for which `pred` holds (called on every line forwarded from now on) until released. */
  hold(pred: (line: string) => boolean): Promise<Held> {
    return new Promise((found) => (this.holding = { pred, found }));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private connect(client: net.Socket): void {
    const upstream = net.createConnection(this.target);
    this.sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
    upstream.on('data', (d) => client.write(d));
    client.setEncoding('utf8');
    let buf = '';
    const waiting: string[] = [];
    let held = false;
    const forward = (line: string) => {
      this.lines.push(line);
      upstream.write(`${line}\n`);
    };
    const drain = () => {
      while (!held && waiting.length > 0) {
        const line = waiting.shift()!;
        const h = this.holding;
        if (h?.pred(line)) {
          this.holding = undefined;
          held = true;
          h.found({
            line,
            release: () => {
              const index = this.lines.length;
              held = false;
              forward(line);
              drain();
              return index;
            },
          });
          return;
        }
        forward(line);
      }
    };
    client.on('data', (d: string) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      waiting.push(...parts);
      drain();
    });
  }
}

describe('start hints between the steps of a pass, through a recording proxy to a real HAProxy', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const registry = createRegistry(false);
  let bus: ReturnType<typeof busFor>;
  let processor: RouteProcessor | undefined;
  let lb: LoadBalancer | undefined;
  let proxy: AdminProxy | undefined;
  let applier: RouteApplier | undefined;
  let api: HaproxyRuntimeApi | undefined;
  let lbPort = 0;
  const agent = new http.Agent({ keepAlive: false });
  /** Host A's upstream answers its first request only when the test lets it. */
  const aReached = deferred();
  const aLetGo = deferred();
  const upstreams: Array<{ server: http.Server; port: number }> = [];

  before(async () => {
    for (const n of ['a', 'b', 'c']) {
      const server = http.createServer((_req, res) => {
        if (n !== 'a') return void res.end(`${n}\n`);
        aReached.resolve();
        void aLetGo.promise.then(() => res.end('a\n'));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      upstreams.push({ server, port: (server.address() as net.AddressInfo).port });
    }
    const codec = await AvroCodec.create(new ManifestSource());
    bus = busFor(ns.config, codec, ns.logger);
    await bus.ensureTopics();
    processor = await startRouteProcessor({ bus, logger: ns.logger, registry, node: 'test-node', stateDir: path.join(ns.dataDir, 'routes'), config: { labelPrefix: prefix } });
    lbPort = await freePort();
    lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 4, idleTimeoutMs: 170_000 });
    api = new HaproxyRuntimeApi(lb.adminSocket);
    proxy = new AdminProxy(path.join(ns.dataDir, 'admin-proxy.sock'), lb.adminSocket);
    await proxy.listen();
    // HAProxy's idle timeout (above) and drainTimeoutMs: A's request stays in flight and its
    // server `wait`s for the whole case; hintConfirmMs: C's hint must not expire before it is
    // checked; commandTimeoutMs: room for the held command on a loaded machine (it is held
    // only while the test hints). None of them is asserted on.
    applier = await startRouteApplier({
      bus,
      adminSocket: proxy.socketPath,
      mapFile: lb.mapFile,
      logger: ns.logger,
      registry,
      config: { checkIntervalMs: 200, drainTimeoutMs: 300_000, hintConfirmMs: 300_000, commandTimeoutMs: 20_000 },
      local: processor,
    });
    await applier.ready;
  });

  after(async () => {
    aLetGo.resolve();
    api?.close();
    for (const stop of [() => applier?.stop(), () => proxy?.close(), () => processor?.stop(), () => lb?.close()]) {
      await Promise.resolve()
        .then(stop)
        .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
    }
    agent.destroy();
    for (const u of upstreams) {
      u.server.closeAllConnections();
      await new Promise((r) => u.server.close(r));
    }
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });

  const cid = (n: number) => `${n.toString(16).padStart(12, 'e')}${'0'.repeat(52)}`;
  function life(n: number, action: string, host: string): LifecycleEvent {
    return routedLifecycle({ eventPrefix: ns.id, labelPrefix: prefix, containerId: cid(n), n, action, host, port: upstreams[n]!.port });
  }

  const send = (...events: LifecycleEvent[]) => bus.publish('lifecycle', events.map((event) => ({ event })));
  const serverOf = (n: number) => upstreamServerName({ container_id: cid(n), address: '127.0.0.1', port: upstreams[n]!.port });

  const A = `a-${ns.id}.test`;
  const B = `b-${ns.id}.test`;
  const C = `c-${ns.id}.test`;

  test('a hint that comes while a reap reads one backend goes in before the next backend is reaped', { timeout: 180_000 }, async () => {
    // Container 0 serves A, 1 serves B (2 is C's, hinted below).
    await send(life(0, 'start', A), life(1, 'start', B));
    await applier!.waitFor(A, (r) => r.upstreams.length === 1);
    await applier!.waitFor(B, (r) => r.upstreams.length === 1);
    const map = await api!.showMap(lb!.mapFile);
    const beA = map.get(A);
    const beB = map.get(B);
    assert.ok(beA && beB && beA !== beB, `A and B each in a backend of their own: ${JSON.stringify([...map])}`);

    // A request to A stays in flight on its server, which is taken out: it drains, busy.
    const inFlight = getWithHost({ port: lbPort, host: A, agent, timeoutMs: 170_000 });
    await aReached.promise;
    await send(life(0, 'die', A));
    await applier!.waitFor(A, (r) => r.upstreams.length === 0);
    const aStat = `show stat ${beA} 4 -1`;
    await eventually("the reap reads A's backend and leaves its busy server", async () => (proxy!.lines.includes(aStat) ? true : undefined));

    // The first read of A's backend once B's server is in maintenance: that reap has B's backend to do next.
    let bOut = false;
    const held = proxy!.hold((line) => {
      if (line === `set server ${beB}/${serverOf(1)} state maint`) bOut = true;
      return bOut && line === aStat;
    });
    await send(life(1, 'die', B));
    const h = await held;

    const preview = processor!.preview(life(2, 'start', C));
    assert.ok(preview, 'the route table would route C');
    const hint: RouteHint = { host: C, upstream: preview.upstream, version: preview.version };
    const hinted = new Promise<void>((resolve) => {
      const off = applier!.onHinted((x) => {
        if (x.host !== C) return;
        off();
        resolve();
      });
    });
    assert.equal(applier!.hint(hint), true, 'the hint is taken');
    const at = h.release();
    await hinted;
    assert.deepEqual(await getWithHost({ port: lbPort, host: C, agent, timeoutMs: 5000 }), { status: 200, body: 'c' }, 'the hinted server answers through HAProxy');

    const delB = `del server ${beB}/${serverOf(1)}`;
    await eventually("B's drained server deleted", async () => (proxy!.lines.includes(delB) ? true : undefined));
    const addMapC = proxy!.lines.find((l) => l.startsWith(`add map ${lb!.mapFile} ${C} `));
    assert.ok(addMapC, "C's map entry was sent");
    const beC = addMapC.split(' ').pop()!;
    const c = serverOf(2);
    // The held line, then what the applier sent next (new connections' `prompt` left out).
    const next = proxy!.lines.slice(at).filter((l) => l !== 'prompt');
    assert.deepEqual(
      next.slice(0, 6),
      [aStat, `add server ${beC}/${c} 127.0.0.1:${upstreams[2]!.port}`, `enable server ${beC}/${c}`, addMapC, `show stat ${beB} 4 -1`, delB],
      `the hint right after the held read of A's backend, before B's is read and its server deleted; commands from the held one on:\n${next.slice(0, 12).join('\n')}`,
    );

    // A's drained request still finishes on its server; then that server goes too.
    aLetGo.resolve();
    assert.deepEqual(await inFlight, { status: 200, body: 'a' });
    const delA = `del server ${beA}/${serverOf(0)}`;
    await eventually("A's drained server deleted once its request ended", async () => (proxy!.lines.includes(delA) ? true : undefined));
  });
});

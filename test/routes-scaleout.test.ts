/**
 * The route processor as N instances (processes of their own, test/helpers/routes-instance.ts)
 * on real Kafka. One recorded lifecycle workload (12 hosts, 2 on each of the 6 routes
 * partitions, several changes per host, in three parts) goes through 1 instance, then 3
 * instances with one stopped (SIGTERM) between the second and the third part, then 3 with
 * one killed (SIGKILL) there. Each run has topics of its own. Asserted on the routes topic:
 * per host the versions are 1, 2, 3 … once each in topic order; the final sets are the
 * ones the pure table computes from the workload, and the same in every run; the stopped
 * instance publishes nothing after its stop; in the 3-instance runs more than one
 * instance published.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LifecycleEvent, RouteSet, Upstream } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import type { EventBus } from '../lib/bus/bus.js';
import { loadConfig } from '../app/config.js';
import { RouteTable } from '../processors/routes/table.js';
import { loadRoutesConfig } from '../processors/routes/config.js';
import { ROOT, eventually, namespace } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

const ns = namespace();
const labelPrefix = `${ns.id}.`;
const SESSION_MS = 6000;
const codecP = AvroCodec.create(new ManifestSource());
const buses: EventBus[] = [];
const children = new Set<ChildProcess>();
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const b of buses) await b.close();
  ns.cleanup();
});

// ---- the workload ----------------------------------------------------------------------

let seq = 0;
const T0 = Date.now() - 600_000;
function life(host: string, n: number, action: string, o: Partial<LifecycleEvent> = {}): LifecycleEvent {
  const id = `${host.split('.')[0]}-c${n}`.padEnd(16, '0');
  return {
    ...SAMPLE_EVENTS.lifecycle,
    event_id: `scale-${seq}`,
    ts: T0 + seq++,
    container_id: id,
    container_name: id,
    tenant: 'acme',
    app: host.split('.')[0]!,
    action,
    exit_code: null,
    health: null,
    attributes: {},
    labels: { [`${labelPrefix}tenant`]: 'acme', [`${labelPrefix}app`]: host.split('.')[0]! },
    ports: [{ container_port: 80, protocol: 'tcp', host_ip: '127.0.0.1', host_port: 20_000 + (seq % 40_000) }],
    identity: { log_format: 'nginx-combined', lb_host: host, lb_port: 80, size: 'small' },
    ...o,
  };
}

/** Three parts; each changes every host's set (a container's events are in order on its partition). */
function workload(hosts: readonly string[]): LifecycleEvent[][] {
  const a: LifecycleEvent[] = [];
  const b: LifecycleEvent[] = [];
  const c: LifecycleEvent[] = [];
  for (const h of hosts) {
    a.push(life(h, 0, 'start'), life(h, 1, 'start'), life(h, 2, 'start'), life(h, 1, 'die'));
    b.push(life(h, 1, 'start'), life(h, 0, 'stop'), life(h, 0, 'destroy'), life(h, 3, 'start'));
    c.push(life(h, 2, 'health_status', { health: 'unhealthy' }), life(h, 4, 'start'), life(h, 1, 'kill', { attributes: { signal: 'KILL' } }), life(h, 5, 'start'), life(h, 5, 'pause'));
  }
  return [a, b, c];
}

/** What every run must end with: the workload through the pure table. */
function expected(parts: readonly LifecycleEvent[][]): Map<string, Upstream[]> {
  const routes = loadRoutesConfig({ labelPrefix }, {});
  const t = new RouteTable({ labelPrefix, wildcardAddress: routes.wildcardAddress, health: routes.health }, 'pure');
  for (const part of parts) for (const e of part) t.applyLifecycle(e);
  return new Map(t.flush(Date.now()).map((s) => [s.host, s.upstreams]));
}

// ---- instances -------------------------------------------------------------------------

interface Instance {
  node: string;
  child: ChildProcess;
  /** Its last ownership line. */
  owned(): { owned: number[]; reading: number[]; rebalancing: boolean } | undefined;
  lines(): Record<string, unknown>[];
  exited: Promise<number | null>;
}

function startInstance(prefix: string, node: string): Instance {
  const env = { ...ns.env, LOGMETER_TOPIC_PREFIX: prefix, LOGMETER_DATA_DIR: mkdtempSync(path.join(ns.dataDir, `${node}-`)), ROUTES_NODE: node, ROUTES_LABEL_PREFIX: labelPrefix, LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS: String(SESSION_MS / 1000) };
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('test', 'helpers', 'routes-instance.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((r) =>
    child.on('close', (code) => {
      children.delete(child);
      if (code !== 0 && code !== null) process.stderr.write(`instance ${node} exited ${code}:\n${err}\n`);
      r(code);
    }),
  );
  return {
    node,
    child,
    lines: () => lines,
    owned: () => lines.filter((l) => 'owned' in l).at(-1) as ReturnType<Instance['owned']>,
    exited,
  };
}

/** Every partition published by exactly one of `insts`, none reading back or rebalancing. */
function settled(insts: readonly Instance[], partitions: number): boolean {
  const count = new Map<number, number>();
  for (const i of insts) {
    const o = i.owned();
    if (!o || o.rebalancing || o.reading.length > 0) return false;
    for (const p of o.owned) count.set(p, (count.get(p) ?? 0) + 1);
  }
  return count.size === partitions && [...count.values()].every((n) => n === 1);
}

// ---- reading the routes topic ----------------------------------------------------------

interface Written {
  partition: number;
  offset: bigint;
  set: RouteSet;
}

/** Follows a run's routes topic from its beginning (a group of its own). */
async function follow(bus: EventBus) {
  const got: Written[] = [];
  const sub = await bus.subscribe({
    group: `check-${Date.now()}-${Math.random()}`,
    topics: ['routes'],
    handle: (batch) => {
      for (const m of batch) got.push({ partition: m.partition, offset: BigInt(m.offset), set: m.event });
      return Promise.resolve();
    },
  });
  const latest = () => {
    const by = new Map<string, RouteSet>();
    for (const w of [...got].sort((x, y) => (x.offset < y.offset ? -1 : 1))) by.set(w.set.host, w.set);
    return by;
  };
  return { got, latest, stop: () => sub.stop() };
}

const notes: string[] = [];
const note = (s: string) => notes.push(s);
const plain = (us: readonly Upstream[]) => us.map((u) => `${u.container_id}@${u.address}:${u.port}`);

// ---- the runs --------------------------------------------------------------------------

type Stop = 'none' | 'SIGTERM' | 'SIGKILL';

async function run(name: string, instances: number, stop: Stop, parts: readonly LifecycleEvent[][], want: Map<string, Upstream[]>) {
  const prefix = `${ns.id}.${name}.`;
  const bus = busFor(loadConfig({ env: { ...ns.env, LOGMETER_TOPIC_PREFIX: prefix } }), await codecP, ns.logger);
  buses.push(bus);
  await bus.ensureTopics();
  const partitions = (await bus.endOffsets(bus.topic('routes'))).length;
  const watch = await follow(bus);
  const finalReached = (by: Map<string, RouteSet>) => [...want].every(([h, us]) => JSON.stringify(plain(by.get(h)?.upstreams ?? [])) === JSON.stringify(plain(us)));
  try {
    await bus.publish('lifecycle', parts[0]!.map((event) => ({ event })));
    const insts: Instance[] = [];
    for (let i = 0; i < instances; i++) {
      insts.push(startInstance(prefix, `${name}-${i}`));
      await eventually(`${name}-${i} ready`, () => Promise.resolve(insts[i]!.lines().some((l) => l.ready) ? true : undefined), 90_000);
    }
    await eventually(`${name}: every partition owned once`, () => Promise.resolve(settled(insts, partitions) ? true : undefined), 90_000);
    await bus.publish('lifecycle', parts[1]!.map((event) => ({ event })));

    let stopped: { node: string; ends: Map<number, bigint> } | undefined;
    if (stop !== 'none') {
      const victim = insts.at(-1)!;
      assert.ok(victim.owned()!.owned.length > 0, 'the instance stopped publishes some hosts');
      // Stopped once it published some of the second part (the rest may still be under way).
      await eventually(`${victim.node} published`, () => Promise.resolve(watch.got.some((w) => w.set.node === victim.node) ? true : undefined), 60_000);
      victim.child.kill(stop);
      const code = await victim.exited;
      assert.equal(code, stop === 'SIGTERM' ? 0 : null, `${victim.node} exit`);
      if (stop === 'SIGTERM') assert.ok(victim.lines().some((l) => l.stopped), 'the stop completed');
      insts.pop();
      // Its partitions go to the others (after its session timed out when it was killed).
      await eventually(`${name}: the others own every partition`, () => Promise.resolve(settled(insts, partitions) ? true : undefined), 90_000);
      const ends = new Map((await bus.endOffsets(bus.topic('routes'))).map((p) => [p.partition, BigInt(p.high)] as const));
      stopped = { node: victim.node, ends };
    }
    await bus.publish('lifecycle', parts[2]!.map((event) => ({ event })));
    await eventually(`${name}: the final sets`, () => Promise.resolve(finalReached(watch.latest()) ? true : undefined), 90_000);
    for (const i of insts) i.child.kill('SIGTERM');
    for (const i of insts) assert.equal(await i.exited, 0, `${i.node} stopped cleanly`);
    // Everything on the topic read.
    const ends = await bus.endOffsets(bus.topic('routes'));
    await eventually(`${name}: the routes topic read`, () => Promise.resolve(ends.every((e) => watch.got.filter((w) => w.partition === e.partition).length === Number(BigInt(e.high) - BigInt(e.low))) ? true : undefined));

    // Per host: versions 1, 2, 3 … once each, in topic order; on the host's own partition.
    const byHost = new Map<string, Written[]>();
    for (const w of watch.got) byHost.set(w.set.host, [...(byHost.get(w.set.host) ?? []), w]);
    assert.deepEqual([...byHost.keys()].sort(), [...want.keys()].sort(), `${name}: sets of every host and no other`);
    for (const [host, ws] of byHost) {
      ws.sort((x, y) => (x.offset < y.offset ? -1 : 1));
      assert.equal(new Set(ws.map((w) => w.partition)).size, 1, `${host}: one partition`);
      assert.equal(ws[0]!.partition, bus.partitionForKey(host, partitions), `${host}: on the partition of its key`);
      assert.deepEqual(
        ws.map((w) => w.set.version),
        ws.map((_, i) => i + 1),
        `${name} ${host}: versions in topic order (${ws.map((w) => `${w.set.version} by ${w.set.node}`).join(', ')})`,
      );
    }
    const handedOver = [...byHost].filter(([, ws]) => new Set(ws.map((w) => w.set.node)).size > 1).map(([h]) => h);
    if (stopped) {
      const after = (w: Written) => w.offset >= (stopped.ends.get(w.partition) ?? 0n);
      const late = watch.got.filter((w) => w.set.node === stopped.node && after(w));
      assert.deepEqual(late.map((w) => `${w.set.host} v${w.set.version}`), [], `${name}: nothing from ${stopped.node} after its stop`);
      // Its hosts go on with the next versions from another instance (the last part changes every host).
      const its = [...byHost].filter(([, ws]) => ws.some((w) => w.set.node === stopped.node));
      assert.ok(its.length > 0, `${name}: ${stopped.node} had published hosts`);
      for (const [host, ws] of its) {
        const last = ws.findLastIndex((w) => w.set.node === stopped.node);
        assert.ok(ws.slice(last + 1).some((w) => w.set.node !== stopped.node), `${name} ${host}: continued by another instance after ${stopped.node}'s last set`);
      }
    }
    if (instances > 1) {
      assert.ok(new Set(watch.got.map((w) => w.set.node)).size >= 2, `${name}: more than one instance published`);
      assert.ok(handedOver.length > 0, `${name}: some host's versions continued across instances`);
    }
    note(`${name}: ${instances} instance(s)${stop === 'none' ? '' : `, one ${stop}ed`}: ${watch.got.length} sets, by ${[...new Set(watch.got.map((w) => w.set.node))].sort().join(', ')}; ${handedOver.length} of ${byHost.size} hosts published by more than one instance, versions contiguous`);
    return new Map([...watch.latest()].map(([h, s]) => [h, plain(s.upstreams)]));
  } finally {
    await watch.stop();
  }
}

test('3 instances (one stopped, one killed midway) publish the route sets 1 instance publishes, one version of each at a time', async (t) => {
  const bus = busFor(ns.config, await codecP, ns.logger);
  buses.push(bus);
  const partitions = ns.config.kafka.partitions;
  // 12 hosts, 2 keyed onto each routes partition.
  const hosts: string[] = [];
  const per = new Map<number, number>();
  for (let i = 0; hosts.length < 2 * partitions; i++) {
    const h = `app${i}.scale.test`;
    const p = bus.partitionForKey(h, partitions);
    if ((per.get(p) ?? 0) < 2) {
      per.set(p, (per.get(p) ?? 0) + 1);
      hosts.push(h);
    }
  }
  const parts = workload(hosts);
  const want = expected(parts);
  assert.equal(want.size, 12);
  for (const us of want.values()) assert.equal(us.length, 2, 'every host ends with 2 upstreams (c3, c4)');

  const one = await run('one', 1, 'none', parts, want);
  const term = await run('term', 3, 'SIGTERM', parts, want);
  const kill = await run('kill', 3, 'SIGKILL', parts, want);
  const expect = new Map([...want].map(([h, us]) => [h, plain(us)]));
  assert.deepEqual(one, expect, '1 instance: the pure table');
  assert.deepEqual(term, one, '3 instances, one stopped: as 1 instance');
  assert.deepEqual(kill, one, '3 instances, one killed: as 1 instance');
  for (const n of notes) t.diagnostic(n);
});

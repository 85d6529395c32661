/**
 * Container labels that must not be trusted, through the real collector, Kafka, the log
 * sink and the route table processor:
 * - identity labels (tenant, app, size, log-format) outside `a-z 0-9 _ . -` or longer
 *   than 63 characters: the container is refused — not collected, logged, counted
 *   (`logmeter_collector_containers_ignored_total{reason="bad_label"}`) and dead-lettered;
 * - a 1 MB label (about the most Docker takes in one request): the container is
 *   collected, its lifecycle events carry the label cut to 4 KiB (named in
 *   `attributes.labels_cut`), so they stay small on Kafka and in ClickHouse;
 * - an app claiming another tenant's load-balancer host: refused, the first tenant keeps
 *   the host (also after its containers are gone and after a restart), logged, counted
 *   and dead-lettered; the autoscaler's host → app map follows the same rule.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { note, pipeline, type Pipeline } from './helpers/bad-input.js';
import type { DeadLetter } from '../schemas/events.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { MAX_LABEL_VALUE_CHARS } from '../ingest/lifecycle.js';
import { sizeLabel } from '../processors/log-sink/rows.js';
import { startRouteProcessor, type RouteProcessor } from '../processors/routes/processor.js';
import { Fleet } from '../processors/autoscale/fleet.js';
import { eventually } from './helpers/env.js';
import { docker, runContainer } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';

let p: Pipeline;
let registry: Registry;
before(async () => {
  p = await pipeline({ sink: true });
  registry = createRegistry(false);
  await p.collector('collector', {}, registry).start();
});
after(() => p.close());

const byContainer = (ids: string[]) => (e: { container_id: string }) => ids.includes(e.container_id);

async function deadLetters(done: (l: DeadLetter[]) => boolean): Promise<DeadLetter[]> {
  return collect(p.bus, 'dlq', done, 60_000);
}

test('identity labels outside the allowed set or too long: refused — not collected, logged, counted, dead-lettered; the containers beside them are collected', async () => {
  const { prefix, bus, codec, ch } = p;
  const refused: Array<{ name: string; labels: Record<string, string>; problem: RegExp }> = [
    { name: 'upper case', labels: { tenant: 'Acme' }, problem: /label \S+\.tenant "Acme" has characters outside a-z 0-9 _ \. -/ },
    { name: 'a space', labels: { tenant: 'acme corp' }, problem: /\.tenant "acme corp" has characters outside/ },
    { name: 'a path', labels: { tenant: '../etc' }, problem: /\.tenant "\.\.\/etc" has characters outside/ },
    { name: 'not ASCII', labels: { tenant: 'acmé' }, problem: /\.tenant "acmé" has characters outside/ },
    { name: 'too long', labels: { tenant: 'a'.repeat(64) }, problem: /\.tenant is 64 characters long \(at most 63\)/ },
    { name: 'app with shell', labels: { tenant: 'acme', app: 'shop;rm -rf /' }, problem: /\.app "shop;rm -rf \/" has characters outside/ },
    { name: 'size too long', labels: { tenant: 'acme', app: 'shop', size: 'x'.repeat(100) }, problem: /\.size is 100 characters long/ },
    { name: 'log-format with a newline', labels: { tenant: 'acme', 'log-format': 'json\nnginx' }, problem: /\.log-format "json\\nnginx" has characters outside/ },
  ];
  const ids: string[] = [];
  for (const r of refused) {
    const labels = Object.fromEntries(Object.entries(r.labels).map(([k, v]) => [`${prefix}${k}`, v]));
    const c = await runContainer({ prefix, labels, script: `echo refused ${r.name}` });
    ids.push(c.id);
  }
  // A 1 MB label, beside valid identity labels: collected, its events bounded.
  const blob = 'b'.repeat(1_000_000);
  const bigLabel = await docker.createContainer({
    Image: BASE_IMAGE,
    Cmd: ['sh', '-c', 'echo big label; sleep 1'],
    Labels: { 'logmeter.test': 'true', [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'big-label', 'com.example.blob': blob },
    HostConfig: { Init: true },
  });
  await bigLabel.start();
  const good = await runContainer({ prefix, tenant: 'acme', app: 'ok', script: 'echo collected' });

  const logs = await collect(bus, 'logs', (evs) => evs.some(byContainer([good.id])) && evs.some(byContainer([bigLabel.id])), 60_000);
  const life = await collect(bus, 'lifecycle', (evs) => evs.some((e) => e.container_id === bigLabel.id && e.action === 'start'), 60_000);
  const letters = (await deadLetters((l) => l.filter(byContainer(ids)).length >= refused.length)).filter(byContainer(ids));
  await new Promise((r) => setTimeout(r, 1000));

  assert.deepEqual(logs.filter(byContainer([good.id, bigLabel.id])).map((e) => e.line.toString()).sort(), ['big label', 'collected']);
  assert.equal(logs.filter(byContainer(ids)).length, 0, 'nothing of a refused container is collected');
  assert.equal(life.filter(byContainer(ids)).length, 0, 'not even its lifecycle');
  assert.equal(letters.length, refused.length, 'one dead letter per refused container');
  for (const [i, r] of refused.entries()) {
    const l = letters.find((x) => x.container_id === ids[i])!;
    assert.equal(l.error_code, 'bad_label', r.name);
    assert.equal(l.source_topic, 'docker');
    assert.equal(l.consumer_group, 'collector');
    assert.match(l.reason, new RegExp(`^container \\S+ \\(${ids[i]!.slice(0, 12)}\\) not collected: `), r.name);
    assert.match(l.reason, r.problem, r.name);
    const shown = JSON.parse(l.payload!.toString()) as Record<string, string>;
    assert.equal(shown[`${prefix}tenant`], r.labels.tenant!.slice(0, 256), `${r.name}: the labels as they were`);
  }
  const ignored = (await registry.getSingleMetric('logmeter_collector_containers_ignored_total')!.get()).values.find((v) => v.labels.reason === 'bad_label');
  assert.equal(ignored?.value, refused.length);

  const start = life.find((e) => e.container_id === bigLabel.id && e.action === 'start')!;
  assert.equal(start.labels['com.example.blob'], blob.slice(0, MAX_LABEL_VALUE_CHARS));
  assert.equal(start.attributes.labels_cut, 'com.example.blob');
  assert.equal(start.labels[`${prefix}tenant`], 'acme');
  assert.ok(codec.encode('lifecycle', start).length < 16 * 1024, 'the event stays small');

  // The letters are stored like any other (source position 0: they come from Docker, not from a topic).
  const rows = await eventually('dead letters in ClickHouse', async () => {
    const rs = await ch.client.query({
      query: `SELECT count() AS n FROM ${ch.table('dead_letters')} FINAL WHERE source_topic = 'docker' AND error_code = 'bad_label' AND key IN {keys:Array(String)}`,
      query_params: { keys: ids.map((id) => Buffer.from(id).toString('base64')) },
      format: 'JSONEachRow',
    });
    const [r] = await rs.json<{ n: string }>();
    return Number(r?.n) >= refused.length ? Number(r!.n) : undefined;
  }, 60_000);
  note(`labels: ${refused.length} containers refused (${letters.length} dead letters, ${rows} rows in ClickHouse, counter bad_label=${ignored?.value}); a 1,000,000-character label cut to ${MAX_LABEL_VALUE_CHARS}, its start event ${codec.encode('lifecycle', start).length} bytes`);
});

test("an app claiming another tenant's load-balancer host: refused, the first tenant keeps it (after its containers are gone and after a restart); logged, counted, dead-lettered", async () => {
  const { prefix, bus, codec, ns } = p;
  const host = `shop-${ns.id}.test`;
  const lb = { [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80' };
  const routesRegistry = createRegistry(false);
  const start = (registry: Registry): Promise<RouteProcessor> =>
    startRouteProcessor({ bus, logger: ns.logger, registry, node: 'test-node', stateDir: path.join(ns.dataDir, 'routes'), config: { labelPrefix: prefix } });
  let rp = await start(routesRegistry);
  const published: Array<{ version: number; tenant: string; upstreams: string[] }> = [];
  const listen = (p: RouteProcessor) => p.onPublished((sets) => sets.filter((s) => s.host === host).forEach((s) => published.push({ version: s.version, tenant: s.tenant, upstreams: s.upstreams.map((u) => u.container_id) })));
  listen(rp);
  try {
    const owner = await runContainer({ prefix, tenant: 'acme', app: 'shop', labels: lb, script: 'sleep 120', publish: 80 });
    await eventually('acme routed', async () => (published.some((p) => p.upstreams.includes(owner.id)) ? true : undefined), 60_000);
    const thief = await runContainer({ prefix, tenant: 'mallory', app: 'shop', labels: lb, script: 'sleep 120', publish: 80 });
    const second = await runContainer({ prefix, tenant: 'acme', app: 'shop', labels: lb, script: 'sleep 120', publish: 80 });
    await eventually('second acme replica routed', async () => (published.some((p) => p.upstreams.includes(second.id)) ? true : undefined), 60_000);

    // The owner's containers go away: the host keeps its tenant.
    await owner.stop({ t: 0 });
    await second.stop({ t: 0 });
    await eventually('acme out of rotation', async () => (published.at(-1)?.upstreams.length === 0 ? true : undefined), 60_000);
    await rp.stop();
    // A restart (table from its snapshot and the routes topic), then mallory tries again.
    rp = await start(createRegistry(false));
    listen(rp);
    await thief.restart({ t: 0 });
    const letters = (await deadLetters((l) => l.filter((x) => x.error_code === 'lb_host_claimed' && x.container_id === thief.id).length >= 2)).filter((x) => x.error_code === 'lb_host_claimed');
    await new Promise((r) => setTimeout(r, 1000));

    assert.ok(published.every((p) => p.tenant === 'acme' && !p.upstreams.includes(thief.id)), JSON.stringify(published));
    assert.deepEqual(rp.table.current().filter((h) => h.host === host).map((h) => [h.tenant, h.upstreams.length]), [['acme', 0]]);
    const mine = letters.filter((x) => x.container_id === thief.id);
    assert.equal(mine.length, 2, 'its start and its restart, one letter each');
    assert.equal(new Set(mine.map((x) => x.event_id)).size, 2);
    for (const l of mine) {
      assert.equal(l.tenant, 'mallory');
      assert.equal(l.source_topic, bus.topic('lifecycle'));
      assert.equal(l.consumer_group, `${ns.id}.routes.lifecycle.${rp.instance}`, 'the lifecycle group of the instance (ownership.ts)');
      assert.match(l.reason, new RegExp(`of tenant "mallory" \\(app "shop"\\) claims lb-host ${host.replace(/\./g, '\\.')}: host belongs to tenant "acme", container is tenant "mallory": refused`));
      assert.equal(codec.decode('lifecycle', l.payload).container_id, thief.id, 'the claiming event itself');
    }
    const counted = (await routesRegistry.getSingleMetric('logmeter_routes_containers_not_routed_total')!.get()).values.find((v) => v.labels.reason === 'foreign_tenant');
    assert.equal(counted?.value, 1, 'counted by the first instance');
    note(`lb host: ${published.length} route sets for ${host}, all acme's; mallory's 2 claims refused and dead-lettered`);
  } finally {
    await rp.stop();
  }
});

test("the autoscaler's host → app map keeps a host with its first tenant too", () => {
  const f = new Fleet('lm.', 'platform/lb');
  const ev = (id: string, tenant: string, app: string, ts: number) => ({ container_id: id, tenant, app, ts, action: 'start', labels: { 'lm.lb-host': 'shop.acme.test' } });
  f.apply(ev('c1', 'acme', 'shop', 1));
  f.apply(ev('m1', 'mallory', 'shop', 2));
  assert.equal(f.appForHost('shop.acme.test'), 'acme/shop', "mallory's requests-by-host are not acme's");
  assert.equal(f.hostOf('mallory/shop'), '');
  f.apply(ev('c2', 'acme', 'shop-v2', 3));
  assert.equal(f.appForHost('shop.acme.test'), 'acme/shop-v2', 'the owner may move its host between its apps');
});

test('the size a container is billed by comes from the size label beside its tenant label, not from any label ending in .size', () => {
  const labels = { 'a.size': 'small', 'com.example.size': 'tiny', 'logmeter.tenant': 'acme', 'logmeter.size': 'large' };
  assert.equal(sizeLabel({ tenant: 'acme', labels }), 'large');
  assert.equal(sizeLabel({ tenant: 'acme', labels: { 'a.size': 'small', 'x.tenant': 'acme' } }), '', 'no size label under the tenant label’s prefix');
  assert.equal(sizeLabel({ tenant: 'acme', labels: { tenant: 'acme', size: 'medium' } }), 'medium', 'an empty prefix');
});

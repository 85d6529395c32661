/**
 * The traffic processor's previous counters on the real embedded ClickHouse and Kafka:
 * a sample whose predecessor is only in the table (the processor restarted in between)
 * gets the delta since that predecessor, and a sample sent twice (two overlapping stats
 * rounds, a redelivery) is billed once, whether the copy comes in the same handler call
 * as its first copy or after that one was inserted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { StatsSample } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import type { Subscription } from '../lib/bus/bus.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { startTraffic } from '../processors/traffic/processor.js';
import { eventually, namespace } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
let traffic: Subscription | undefined;

before(async () => {
  await bus.ensureTopics();
  await migrate(ch, ns.logger);
});

after(async () => {
  await traffic?.stop();
  await bus.close();
  await ch.close();
  ns.cleanup();
});

const start = async () => (traffic = await startTraffic({ bus, ch, logger: ns.logger, registry: createRegistry(false) }));
const T0 = Date.now() - 60_000;

/** A sample of `container` at T0 + `s` seconds, with one external interface's tx counter and block IO. */
function sample(container: string, s: number, tx: number, blkio: number): StatsSample {
  return {
    ...SAMPLE_EVENTS.stats,
    event_id: `stats-${container}-${s}`,
    tenant: 'acme',
    app: 'web',
    container_id: container,
    ts: T0 + s * 1000,
    interfaces: [{ name: 'eth0', network: 'public', traffic_class: 'external', rx_bytes: 10 * s, tx_bytes: tx, rx_packets: 0, tx_packets: 0 }],
    blkio_read_bytes: blkio,
    blkio_write_bytes: 0,
  };
}

/** Everything published to stats is handled: the traffic group committed each partition's end (after the insert). */
async function handled(): Promise<void> {
  const group = `${ns.config.kafka.topicPrefix}traffic`;
  await eventually('the traffic group committed every stats message', async () => {
    const [ends, committed] = await Promise.all([bus.endOffsets(bus.topic('stats')), bus.committedOffsets(group, bus.topic('stats'))]);
    return ends.every((e) => e.high === e.low || committed.find((c) => c.partition === e.partition)?.offset === e.high) ? true : undefined;
  });
}

type Row = { event_id: string; rx_bytes: number; tx_bytes: number; blkio_bytes: number };
/** A sample's two rows (block IO, then its network), as the table holds them. */
const expect = (container: string, s: number, rx: number, tx: number, blkio: number): Row[] => [
  { event_id: `stats-${container}-${s}:(blkio)`, rx_bytes: 0, tx_bytes: 0, blkio_bytes: blkio },
  { event_id: `stats-${container}-${s}:public`, rx_bytes: rx, tx_bytes: tx, blkio_bytes: 0 },
];
const rows = async (container: string) =>
  (await ch.query<Row>(`SELECT event_id, rx_bytes, tx_bytes, blkio_bytes FROM ${ch.table('traffic')} FINAL WHERE container_id = {c:String} ORDER BY ts, network`, { c: container })).map(
    (r) => ({ event_id: r.event_id, rx_bytes: Number(r.rx_bytes), tx_bytes: Number(r.tx_bytes), blkio_bytes: Number(r.blkio_bytes) }),
  );
const billed = async (container: string) =>
  Number((await ch.query<{ tx: number }>(`SELECT sum(tx_bytes) AS tx FROM ${ch.table('traffic')} FINAL WHERE container_id = {c:String}`, { c: container }))[0]!.tx);

test('a sample whose predecessor is only in the table (the processor restarted) gets the delta since it', async () => {
  await start();
  await bus.publish('stats', [{ event: sample('restart', 1, 1_000_000, 4096) }]);
  await handled();
  await traffic!.stop();
  // A new instance of the group: nothing in memory, the predecessor is in the table only.
  await start();
  await bus.publish('stats', [{ event: sample('restart', 2, 1_500_000, 12288) }]);
  await handled();
  assert.deepEqual(await rows('restart'), [...expect('restart', 1, 10, 1_000_000, 4096), ...expect('restart', 2, 10, 500_000, 8192)]);
});

test('a sample sent twice is billed once: the copy in the same handler call, and again after the insert', async () => {
  traffic ??= await start();
  const first = sample('copied', 1, 1_000, 0);
  const second = sample('copied', 2, 3_001_000, 0);
  // One publish: one record batch on the container's partition, so one handler call holds all three.
  await bus.publish('stats', [{ event: first }, { event: second }, { event: second }]);
  await handled();
  const expected = [...expect('copied', 1, 10, 1_000, 0), ...expect('copied', 2, 10, 3_000_000, 0)];
  assert.deepEqual(await rows('copied'), expected, 'the copy in the same call');
  assert.equal(await billed('copied'), 3_001_000);

  // The same sample once more, after its first copy was inserted (a redelivery, a later round).
  await bus.publish('stats', [{ event: second }]);
  await handled();
  assert.deepEqual(await rows('copied'), expected, 'the copy after the insert');
  assert.equal(await billed('copied'), 3_001_000);

  // And after a restart: the copy's predecessor comes from the table.
  await traffic.stop();
  await start();
  await bus.publish('stats', [{ event: second }, { event: sample('copied', 3, 3_002_000, 0) }]);
  await handled();
  assert.deepEqual(await rows('copied'), [...expected, ...expect('copied', 3, 10, 1_000, 0)]);
  assert.equal(await billed('copied'), 3_002_000);
});

/**
 * Tenant fairness on the real broker: the collector's sender, held while a loud tenant's
 * backlog builds up, sends a quiet tenant's line in the first request after it resumes,
 * and Kafka holds every line, each container's in order. No timing threshold: the order
 * of the requests is what is asserted.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { Sender, type Outgoing } from '../ingest/sender.js';
import { COLLECTOR_DEFAULTS } from '../ingest/config.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
after(async () => {
  await bus.close();
  ns.cleanup();
});

test('a quiet tenant\'s line is in the first Kafka request after the sender resumes, ahead of a loud backlog of 20,000 lines', async () => {
  await bus.ensureTopics();
  const topic = bus.topic('logs');
  let gate: Promise<void> | undefined;
  let open: () => void = () => {};
  gate = new Promise<void>((r) => (open = r));
  /** Keys (containers) per request, in the order the requests were made. */
  const requests: string[][] = [];
  const sender = new Sender(
    async (batches) => {
      requests.push(batches.flatMap((b) => b.messages.map((m) => m.key)));
      if (gate) await gate;
      await bus.publishRawBatch(batches.map((b) => ({ topic: b.topic, messages: b.messages.map((m) => ({ key: m.key, value: m.value })) })));
    },
    // The collector's defaults: 512 KiB requests.
    { batchBytes: COLLECTOR_DEFAULTS.batchBytes, lingerMs: COLLECTOR_DEFAULTS.lingerMs, maxBufferedBytes: COLLECTOR_DEFAULTS.maxBufferedBytes },
    ns.logger,
  );
  const event = (tenant: string, container: string, seq: number): Outgoing => ({
    topic,
    key: container,
    tenant,
    value: codec.encode('logs', { ...SAMPLE_EVENTS.logs, event_id: `${ns.id}-${container}-${seq}`, tenant, container_id: container, seq, line: Buffer.from(`${tenant} line ${seq} `.padEnd(120, 'x')) }),
  });
  const LOUD = 20_000;
  // The first loud line starts a request, which is held: the rest of the flood queues behind it.
  sender.enqueue(event('loud', `${ns.id}-loud`, 0));
  await new Promise((r) => setTimeout(r, COLLECTOR_DEFAULTS.lingerMs + 50));
  assert.equal(requests.length, 1, 'one request in flight, held');
  for (let i = 1; i < LOUD; i++) sender.enqueue(event('loud', `${ns.id}-loud`, i));
  sender.enqueue(event('quiet', `${ns.id}-quiet`, 0));
  const queued = sender.buffered;
  assert.ok(queued > 4 * COLLECTOR_DEFAULTS.batchBytes, `a backlog of several requests (${queued} bytes)`);
  gate = undefined;
  open();
  await sender.flush();
  assert.ok(requests.length >= 5, `${requests.length} requests`);
  const quietIn = requests.findIndex((r) => r.includes(`${ns.id}-quiet`));
  assert.equal(quietIn, 1, 'the quiet line went out in the first request after the held one');

  // Kafka has every line once, each container's in order.
  const got = new Map<string, number[]>();
  const sub = await bus.subscribe({
    group: `fair-${ns.id}`,
    topics: ['logs'],
    handle: async (batch) => {
      for (const m of batch) {
        const list = got.get(m.event.container_id) ?? [];
        list.push(m.event.seq);
        got.set(m.event.container_id, list);
      }
    },
  });
  try {
    await eventually('every line consumed', async () => ((got.get(`${ns.id}-loud`)?.length ?? 0) + (got.get(`${ns.id}-quiet`)?.length ?? 0) >= LOUD + 1 ? true : undefined), 120_000);
  } finally {
    await sub.stop();
  }
  assert.deepEqual(got.get(`${ns.id}-quiet`), [0]);
  assert.deepEqual(got.get(`${ns.id}-loud`), Array.from({ length: LOUD }, (_, i) => i));
  await sender.close();
});

/**
 * The SCHEMA_REGISTRY_URL path. No Confluent-compatible registry can be installed on
 * these machines (Karapace is not on PyPI, Confluent's is not on Maven Central, and Java
 * runs only as the Kafka broker), so this test serves the registry's REST API from a
 * small in-process stand-in that keeps subjects, ids and a BACKWARD compatibility check
 * (avsc's resolver) — and uses real Kafka for everything else.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deepEqual as looseDeepEqual } from 'node:assert';
import Fastify from 'fastify';
import avro from 'avsc';
import { AvroCodec } from '../schemas/codec.js';
import { ConfluentRegistrySource } from '../schemas/registry.js';
import { TOPIC_NAMES, type DeadLetter, type TopicName } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';

interface Registered {
  id: number;
  subject: string;
  version: number;
  schema: string;
}

const registry = Fastify();
const schemas: Registered[] = [];
registry.addContentTypeParser('application/vnd.schemaregistry.v1+json', { parseAs: 'string' }, (_req, body, done) => {
  try {
    done(null, JSON.parse(body as string));
  } catch (err) {
    done(err as Error, undefined);
  }
});
registry.post<{ Params: { subject: string }; Body: { schema: string } }>('/subjects/:subject/versions', async (req, reply) => {
  const { subject } = req.params;
  const same = schemas.find((s) => s.subject === subject && s.schema === req.body.schema);
  if (same) return { id: same.id };
  const reader = avro.Type.forSchema(JSON.parse(req.body.schema) as avro.Schema);
  for (const old of schemas.filter((s) => s.subject === subject)) {
    try {
      reader.createResolver(avro.Type.forSchema(JSON.parse(old.schema) as avro.Schema));
    } catch {
      return reply.status(409).send({ error_code: 409, message: `Schema being registered is incompatible with an earlier schema for subject "${subject}"` });
    }
  }
  const entry = { id: schemas.length + 1, subject, version: schemas.filter((s) => s.subject === subject).length + 1, schema: req.body.schema };
  schemas.push(entry);
  return { id: entry.id };
});
registry.get<{ Params: { id: string } }>('/schemas/ids/:id', async (req, reply) => {
  const s = schemas.find((x) => x.id === Number(req.params.id));
  if (!s) return reply.status(404).send({ error_code: 40403, message: 'Schema not found' });
  return { schema: s.schema };
});

const ns = namespace();
let url = '';

before(async () => {
  url = await registry.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await registry.close();
  ns.cleanup();
});

test('with a registry: ids come from it, every event type round-trips through Kafka, unknown ids go to dlq', async () => {
  const source = new ConfluentRegistrySource(url, ns.config.kafka.topicPrefix);
  const codec = await AvroCodec.create(source);
  for (const name of TOPIC_NAMES) {
    const reg = schemas.find((s) => s.subject === `${ns.config.kafka.topicPrefix}${name}-value`);
    assert.ok(reg, `${name} registered`);
    assert.equal(codec.writerId(name), reg.id);
  }
  const bus = busFor(ns.config, codec, ns.logger);
  try {
    await bus.ensureTopics();
    const got = new Map<TopicName, unknown>();
    const dead: DeadLetter[] = [];
    const sub = await bus.subscribe({
      group: 'registry-roundtrip',
      topics: TOPIC_NAMES,
      handle: async (b) => {
        for (const m of b) {
          if (m.topic === 'dlq') dead.push(m.event as DeadLetter);
          else got.set(m.topic, m.event);
        }
      },
    });
    try {
      for (const name of TOPIC_NAMES.filter((t) => t !== 'dlq')) await bus.publish(name, [{ event: SAMPLE_EVENTS[name] }]);
      // A payload framed with an id the registry never issued.
      await bus.publishRaw(bus.topic('logs'), [{ key: 'k', value: Buffer.from([0, 0, 0, 0x30, 0x39, 1, 2]) }]);
      await eventually('all delivered', async () => (got.size === TOPIC_NAMES.length - 1 && dead.length >= 1 ? true : undefined), 60_000);
      for (const name of TOPIC_NAMES.filter((t) => t !== 'dlq')) looseDeepEqual(got.get(name), SAMPLE_EVENTS[name]);
      assert.equal(dead[0]!.error_code, 'unknown_schema_id');
      assert.match(dead[0]!.reason, /12345 is not registered/);
    } finally {
      await sub.stop();
    }
  } finally {
    await bus.close();
  }
});

test('an earlier version registered under the subject is read; an incompatible schema is refused with a clear error', async () => {
  const prefix = `${ns.id}b.`;
  const subject = `${prefix}logs-value`;
  // An older writer: the current logs schema without the fields that have defaults.
  const current = JSON.parse(JSON.stringify(avro.Type.forSchema(JSON.parse(JSON.stringify((await new ConfluentRegistrySource(url, `${ns.id}tmp.`).writerSchema('logs')).schema)) as avro.Schema).schema())) as { fields: Array<{ name: string; default?: unknown }> };
  const older = { ...current, fields: current.fields.filter((f) => f.default === undefined) };
  const res = await fetch(`${url}/subjects/${subject}/versions`, { method: 'POST', headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' }, body: JSON.stringify({ schema: JSON.stringify(older) }) });
  const { id: oldId } = (await res.json()) as { id: number };
  const codec = await AvroCodec.create(new ConfluentRegistrySource(url, prefix));
  assert.notEqual(codec.writerId('logs'), oldId);
  const oldType = avro.Type.forSchema(older as avro.Schema);
  const rec = Object.fromEntries(older.fields.map((f) => [f.name, (SAMPLE_EVENTS.logs as unknown as Record<string, unknown>)[f.name]]));
  const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), oldType.toBuffer(rec)]);
  framed.writeUInt32BE(oldId, 1);
  await codec.prepare([framed]);
  const decoded = codec.decode('logs', framed);
  assert.equal(decoded.event_id, SAMPLE_EVENTS.logs.event_id);
  assert.equal(decoded.tty, false, 'a field the old writer lacked gets its default');

  // A subject whose registered version the current schema cannot read: registration is refused.
  const other = `${ns.id}c.`;
  // Its `seq` was a string: the current reader's int cannot read it.
  const incompatible = { ...current, fields: current.fields.map((f) => (f.name === 'seq' ? { name: 'seq', type: 'string' } : f)) };
  await fetch(`${url}/subjects/${other}logs-value/versions`, { method: 'POST', headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' }, body: JSON.stringify({ schema: JSON.stringify(incompatible) }) });
  await assert.rejects(AvroCodec.create(new ConfluentRegistrySource(url, other)), /refused the logs schema for subject .*logs-value as incompatible/);
});

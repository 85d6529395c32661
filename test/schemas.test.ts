import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deepEqual as looseDeepEqual } from 'node:assert';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import avro from 'avsc';
import { AvroCodec, DecodeError, compatibilityProblems } from '../schemas/codec.js';
import { ManifestSource, MANIFEST_FILE, SCHEMA_DIR, loadManifest, readSchemaFile, type SchemaSource } from '../schemas/registry.js';
import { releaseSchemas } from '../schemas/release.js';
import { TOPIC_NAMES } from '../schemas/events.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

test('manifest: every topic has a schema, ids fixed, released files unchanged', () => {
  const entries = loadManifest();
  assert.deepEqual(new Set(entries.map((e) => e.name)), new Set(TOPIC_NAMES));
  assert.equal(new Set(entries.map((e) => e.id)).size, entries.length);
});

test('every sample event encodes with Confluent framing and decodes byte-exactly', async () => {
  const codec = await AvroCodec.create(new ManifestSource());
  for (const name of TOPIC_NAMES) {
    const event = SAMPLE_EVENTS[name];
    assert.ok(codec.readerType(name).isValid(event), `${name} sample matches its schema`);
    const buf = codec.encode(name, event);
    assert.equal(buf[0], 0, 'magic byte');
    assert.equal(buf.readUInt32BE(1), codec.writerId(name));
    const back = codec.decode(name, buf);
    // Decoded records are avsc record instances; the re-encode below makes the check byte-exact.
    looseDeepEqual(back, event);
    assert.deepEqual(codec.encode(name, back), buf);
  }
});

test('each earlier schema version is read by the current one', async () => {
  const entries = loadManifest();
  const codec = await AvroCodec.create(new ManifestSource(entries));
  for (const name of TOPIC_NAMES) {
    const versions = entries.filter((e) => e.name === name).sort((a, b) => a.version - b.version);
    assert.deepEqual(compatibilityProblems(readSchemaFile(versions.at(-1)!.file), versions.map((v) => readSchemaFile(v.file))), []);
    for (const v of versions) {
      const writer = avro.Type.forSchema(readSchemaFile(v.file));
      const record = writer.random() as object;
      const body = writer.toBuffer(record);
      const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
      framed.writeUInt32BE(v.id, 1);
      await codec.prepare([framed]);
      const decoded = codec.decode(name, framed) as unknown as Record<string, unknown>;
      // Every field the old writer had reads back unchanged.
      for (const [k, val] of Object.entries(record)) looseDeepEqual(decoded[k], val, `${v.file}: field ${k}`);
    }
  }
});

test('an incompatible change to a schema is refused', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'logmeter-schemas-'));
  cpSync(SCHEMA_DIR, dir, { recursive: true });
  const manifest = path.join(dir, 'manifest.json');
  cpSync(MANIFEST_FILE, manifest);

  // A new version adding a field without a default cannot read old records.
  const current = readSchemaFile('logs.v1.avsc', dir) as { fields: object[] };
  const next = { ...current, fields: [...current.fields, { name: 'region', type: 'string' }] };
  writeFileSync(path.join(dir, 'logs.v2.avsc'), JSON.stringify(next));
  assert.throws(() => releaseSchemas(manifest, dir), /logs\.v2\.avsc cannot read earlier versions/);

  // Changing a type incompatibly is refused too.
  const retyped = { ...current, fields: current.fields.map((f) => ((f as { name: string }).name === 'seq' ? { name: 'seq', type: 'string' } : f)) };
  writeFileSync(path.join(dir, 'logs.v2.avsc'), JSON.stringify(retyped));
  assert.throws(() => releaseSchemas(manifest, dir), /cannot read earlier versions/);

  // A compatible one (new field with a default) is released with the next id.
  const ok = { ...current, fields: [...current.fields, { name: 'region', type: 'string', default: '' }] };
  writeFileSync(path.join(dir, 'logs.v2.avsc'), JSON.stringify(ok));
  const nextId = Math.max(...loadManifest(manifest, dir).map((e) => e.id)) + 1;
  const added = releaseSchemas(manifest, dir);
  assert.deepEqual(added.map((e) => [e.name, e.version, e.id]), [['logs', 2, nextId]]);

  // Editing a released version afterwards is caught by the manifest check.
  writeFileSync(path.join(dir, 'logs.v1.avsc'), JSON.stringify({ ...current, fields: current.fields.slice(0, -1) }));
  assert.throws(() => loadManifest(manifest, dir), /logs\.v1\.avsc changed after release/);
});

test('undecodable payloads fail with a reason code', async () => {
  const codec = await AvroCodec.create(new ManifestSource());
  const good = codec.encode('logs', SAMPLE_EVENTS.logs);
  const cases: Array<[Buffer | null, string]> = [
    [null, 'empty_payload'],
    [Buffer.from([0, 0]), 'too_short'],
    [Buffer.from('garbage bytes here'), 'bad_magic_byte'],
    [Buffer.from([0, 0, 0, 0x7f, 0x7f, 1, 2, 3]), 'unknown_schema_id'],
    [codec.encode('stats', SAMPLE_EVENTS.stats), 'schema_mismatch'],
    [good.subarray(0, good.length - 3), 'avro_decode'],
    [Buffer.concat([good, Buffer.from([1, 2, 3])]), 'avro_decode'],
  ];
  for (const [payload, code] of cases) {
    if (payload) await codec.prepare([payload]);
    assert.throws(() => codec.decode('logs', payload), (e: unknown) => e instanceof DecodeError && e.reasonCode === code, code);
  }
});

test('the hand-written TypeScript shapes name exactly the schema fields', () => {
  for (const name of TOPIC_NAMES) {
    const entries = loadManifest().filter((e) => e.name === name);
    const schema = JSON.parse(readFileSync(path.join(SCHEMA_DIR, entries.at(-1)!.file), 'utf8')) as { fields: { name: string }[] };
    assert.deepEqual(Object.keys(SAMPLE_EVENTS[name]).sort(), schema.fields.map((f) => f.name).sort(), name);
  }
});

test('a source that does not know an id leaves it undecodable, not fatal', async () => {
  const manifest = new ManifestSource();
  const flaky: SchemaSource = { kind: 'manifest', writerSchema: (n) => manifest.writerSchema(n), schemaById: (id) => manifest.schemaById(id) };
  const codec = await AvroCodec.create(flaky);
  const payload = Buffer.from([0, 0, 0, 1, 0, 9]);
  await codec.prepare([payload]);
  assert.throws(() => codec.decode('logs', payload), /not registered/);
});

test('autoscale version 2 (owner_since): a version 1 signal reads with owner_since 0, and a version 1 reader reads a version 2 signal', async () => {
  const entries = loadManifest();
  const [v1, v2] = [1, 2].map((v) => entries.find((e) => e.name === 'autoscale' && e.version === v)!);
  assert.ok(v1 && v2);
  const frame = (id: number, body: Buffer) => {
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    framed.writeUInt32BE(id, 1);
    return framed;
  };
  const { owner_since: _since, ...old } = SAMPLE_EVENTS.autoscale;
  const current = await AvroCodec.create(new ManifestSource(entries));
  const fromOld = frame(v1.id, avro.Type.forSchema(readSchemaFile(v1.file)).toBuffer(old));
  await current.prepare([fromOld]);
  looseDeepEqual(current.decode('autoscale', fromOld), { ...old, owner_since: 0 });
  // An old reader (its writer schema is version 1) that can look the new id up, as through a registry.
  const manifest = new ManifestSource(entries);
  const oldReader = await AvroCodec.create({ kind: 'manifest', writerSchema: async (n) => (n === 'autoscale' ? { id: v1.id, schema: readSchemaFile(v1.file) } : manifest.writerSchema(n)), schemaById: (id) => manifest.schemaById(id) });
  const fromNew = current.encode('autoscale', SAMPLE_EVENTS.autoscale);
  assert.equal(fromNew.readUInt32BE(1), v2.id, 'written with version 2');
  await oldReader.prepare([fromNew]);
  looseDeepEqual(oldReader.decode('autoscale', fromNew), old);
});

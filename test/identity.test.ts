/**
 * A container's identity is resolved once, by the collector, and carried in its
 * lifecycle events (schema version 2); events written with version 1 still give the
 * same identity, from their labels.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import avro from 'avsc';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource, loadManifest, readSchemaFile } from '../schemas/registry.js';
import { identityFromLabels, identityOf } from '../lib/identity.js';
import { toLifecycleEvent } from '../ingest/lifecycle.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

const labels = { 'lm.tenant': 'acme', 'lm.app': 'shop', 'lm.size': 'large', 'lm.lb-host': 'shop.acme.test', 'lm.lb-port': '8080', 'lm.log-format': 'json', 'a.size': 'small' };

test('the collector writes the identity it resolved into the lifecycle event', () => {
  const identity = identityFromLabels(labels, 'lm.')!;
  const e = toLifecycleEvent({ Type: 'container', Action: 'start', Actor: { ID: 'c1', Attributes: { ...labels, name: 'shop-1', image: 'x' } }, timeNano: 1e18 }, undefined, identity, 'node-1');
  assert.deepEqual(e.identity, { log_format: 'json', lb_host: 'shop.acme.test', lb_port: 8080, size: 'large' });
  assert.deepEqual(identityOf(e), { tenant: 'acme', app: 'shop', logFormat: 'json', lbHost: 'shop.acme.test', lbPort: 8080, size: 'large' });
});

test('a version 1 lifecycle event reads with identity null, and identityOf resolves it from its labels under its tenant label’s prefix', async () => {
  const entries = loadManifest();
  const v1 = entries.find((e) => e.name === 'lifecycle' && e.version === 1)!;
  const codec = await AvroCodec.create(new ManifestSource(entries));
  const old = { ...SAMPLE_EVENTS.lifecycle, labels } as Record<string, unknown>;
  delete old.identity;
  const body = avro.Type.forSchema(readSchemaFile(v1.file)).toBuffer(old);
  const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
  framed.writeUInt32BE(v1.id, 1);
  await codec.prepare([framed]);
  const decoded = codec.decode('lifecycle', framed);
  assert.equal(decoded.identity, null);
  assert.deepEqual(identityOf(decoded), { tenant: 'acme', app: SAMPLE_EVENTS.lifecycle.app, logFormat: 'json', lbHost: 'shop.acme.test', lbPort: 8080, size: 'large' });
});

test('an event without identity or tenant label has an empty identity, not another tenant’s', () => {
  assert.deepEqual(identityOf({ tenant: 'acme', app: 'shop', labels: { 'lm.tenant': 'mallory', 'lm.size': 'large' } }), { tenant: 'acme', app: 'shop', logFormat: null, lbHost: null, lbPort: null, size: null });
});

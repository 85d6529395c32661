/**
 * Where schema ids come from. By default the checked-in, append-only manifest
 * (`manifest.json`): every .avsc version ever released, with a fixed id and the
 * fingerprint of its canonical form, so an edit to a released version is caught.
 * With `SCHEMA_REGISTRY_URL` set, a Confluent-compatible registry: the newest local
 * version of each schema is registered under the subject `<topic>-value` and ids
 * are the registry's.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { TOPIC_NAMES, type TopicName } from './events.js';

export const SCHEMA_DIR = fileURLToPath(new URL('./avro/', import.meta.url));
export const MANIFEST_FILE = fileURLToPath(new URL('./manifest.json', import.meta.url));

export interface ManifestEntry {
  id: number;
  name: TopicName;
  version: number;
  file: string;
  /** sha256 of the schema's Avro parsing canonical form, hex. */
  fingerprint: string;
}

export interface RegisteredSchema {
  id: number;
  schema: avro.Schema;
}

export interface SchemaSource {
  readonly kind: 'manifest' | 'registry';
  /** The id and schema writers use for `name`: its newest version. */
  writerSchema(name: TopicName): Promise<RegisteredSchema>;
  /** The schema registered under `id`; throws LogmeterError `unknown_schema_id`. */
  schemaById(id: number): Promise<avro.Schema>;
}

export function readSchemaFile(file: string, dir = SCHEMA_DIR): avro.Schema {
  return JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as avro.Schema;
}

export function fingerprint(schema: avro.Schema): string {
  return avro.Type.forSchema(schema).fingerprint('sha256').toString('hex');
}

/** Reads and checks the manifest: ids unique and increasing, versions 1..n per schema, files unchanged. */
export function loadManifest(file = MANIFEST_FILE, dir = SCHEMA_DIR): ManifestEntry[] {
  const entries = (JSON.parse(readFileSync(file, 'utf8')) as { schemas: ManifestEntry[] }).schemas;
  const problems: string[] = [];
  let lastId = 0;
  const versions = new Map<string, number>();
  for (const e of entries) {
    if (!TOPIC_NAMES.includes(e.name)) problems.push(`id ${e.id}: unknown schema name ${e.name}`);
    if (e.id <= lastId) problems.push(`id ${e.id}: ids must be unique and increasing`);
    lastId = e.id;
    const expected = (versions.get(e.name) ?? 0) + 1;
    if (e.version !== expected) problems.push(`id ${e.id}: ${e.name} version ${e.version}, expected ${expected}`);
    versions.set(e.name, e.version);
    try {
      const actual = fingerprint(readSchemaFile(e.file, dir));
      if (actual !== e.fingerprint) problems.push(`id ${e.id}: ${e.file} changed after release (fingerprint ${actual.slice(0, 12)}, manifest ${e.fingerprint.slice(0, 12)}); add a new version instead`);
    } catch (err) {
      problems.push(`id ${e.id}: ${e.file}: ${errorMessage(err)}`);
    }
  }
  for (const name of TOPIC_NAMES) if (!versions.has(name)) problems.push(`no schema for topic ${name}`);
  if (problems.length > 0) throw new LogmeterError('manifest_invalid', `schema manifest ${file}:\n  ${problems.join('\n  ')}`);
  return entries;
}

export class ManifestSource implements SchemaSource {
  readonly kind = 'manifest';
  private readonly byId = new Map<number, avro.Schema>();
  private readonly newest = new Map<TopicName, RegisteredSchema>();

  constructor(entries: ManifestEntry[] = loadManifest(), dir = SCHEMA_DIR) {
    for (const e of entries) {
      const schema = readSchemaFile(e.file, dir);
      this.byId.set(e.id, schema);
      this.newest.set(e.name, { id: e.id, schema });
    }
  }

  writerSchema(name: TopicName): Promise<RegisteredSchema> {
    const s = this.newest.get(name);
    if (!s) return Promise.reject(new LogmeterError('unknown_schema', `no schema for ${name}`));
    return Promise.resolve(s);
  }

  schemaById(id: number): Promise<avro.Schema> {
    const s = this.byId.get(id);
    if (!s) return Promise.reject(new LogmeterError('unknown_schema_id', `schema id ${id} is not in the manifest`));
    return Promise.resolve(s);
  }
}

/** A Confluent-compatible schema registry (Confluent, Karapace, Redpanda, Apicurio's ccompat API). */
export class ConfluentRegistrySource implements SchemaSource {
  readonly kind = 'registry';
  private readonly cache = new Map<number, avro.Schema>();
  private readonly local: Map<TopicName, avro.Schema>;

  constructor(
    private readonly url: string,
    private readonly topicPrefix: string,
    entries: ManifestEntry[] = loadManifest(),
    dir = SCHEMA_DIR,
  ) {
    this.local = new Map(entries.map((e) => [e.name, readSchemaFile(e.file, dir)]));
  }

  subject(name: TopicName): string {
    return `${this.topicPrefix}${name}-value`;
  }

  async writerSchema(name: TopicName): Promise<RegisteredSchema> {
    const schema = this.local.get(name);
    if (!schema) throw new LogmeterError('unknown_schema', `no schema for ${name}`);
    let body: { id: number };
    try {
      body = await this.request<{ id: number }>(`/subjects/${encodeURIComponent(this.subject(name))}/versions`, {
        method: 'POST',
        body: JSON.stringify({ schemaType: 'AVRO', schema: JSON.stringify(schema) }),
      });
    } catch (err) {
      if (err instanceof LogmeterError && err.code === 'registry_409') {
        throw new LogmeterError('schema_incompatible', `schema registry refused the ${name} schema for subject ${this.subject(name)} as incompatible with its registered versions: ${err.message}`);
      }
      throw err;
    }
    this.cache.set(body.id, schema);
    return { id: body.id, schema };
  }

  async schemaById(id: number): Promise<avro.Schema> {
    const hit = this.cache.get(id);
    if (hit) return hit;
    let body: { schema: string; schemaType?: string };
    try {
      body = await this.request<{ schema: string; schemaType?: string }>(`/schemas/ids/${id}`, { method: 'GET' });
    } catch (err) {
      if (err instanceof LogmeterError && err.code === 'registry_404') throw new LogmeterError('unknown_schema_id', `schema id ${id} is not in the registry`);
      throw err;
    }
    if (body.schemaType && body.schemaType !== 'AVRO') throw new LogmeterError('unknown_schema_id', `schema id ${id} is ${body.schemaType}, not Avro`);
    const schema = JSON.parse(body.schema) as avro.Schema;
    this.cache.set(id, schema);
    return schema;
  }

  private async request<T>(route: string, init: { method: string; body?: string }): Promise<T> {
    let res: Response;
    try {
      res = await fetch(new URL(route.replace(/^\//, ''), this.url.endsWith('/') ? this.url : `${this.url}/`), {
        method: init.method,
        headers: { 'content-type': 'application/vnd.schemaregistry.v1+json', accept: 'application/vnd.schemaregistry.v1+json' },
        ...(init.body === undefined ? {} : { body: init.body }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new LogmeterError('registry_unreachable', `schema registry ${this.url}: ${errorMessage(err)}`, { retriable: true, cause: err });
    }
    const text = await res.text();
    if (!res.ok) {
      throw new LogmeterError(`registry_${res.status}`, `schema registry ${init.method} ${route}: HTTP ${res.status} ${text.slice(0, 300)}`, {
        retriable: res.status >= 500,
      });
    }
    return JSON.parse(text) as T;
  }
}

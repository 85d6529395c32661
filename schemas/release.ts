/**
 * Appends unreleased .avsc versions to the manifest (`logmeter schemas release`).
 * Released entries are never rewritten; a new version must read every earlier one.
 */
import { readdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { LogmeterError } from '../lib/errors.js';
import { compatibilityProblems } from './codec.js';
import { TOPIC_NAMES, type TopicName } from './events.js';
import { MANIFEST_FILE, SCHEMA_DIR, fingerprint, readSchemaFile, type ManifestEntry } from './registry.js';

export function releaseSchemas(file = MANIFEST_FILE, dir = SCHEMA_DIR): ManifestEntry[] {
  const entries: ManifestEntry[] = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { schemas: ManifestEntry[] }).schemas : [];
  const released = new Set(entries.map((e) => e.file));
  const added: ManifestEntry[] = [];
  const files = readdirSync(dir)
    .map((f) => /^([a-z]+)\.v(\d+)\.avsc$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ file: m[0], name: m[1] as TopicName, version: Number(m[2]) }))
    .sort((a, b) => a.version - b.version || TOPIC_NAMES.indexOf(a.name) - TOPIC_NAMES.indexOf(b.name));
  let nextId = entries.reduce((max, e) => Math.max(max, e.id), 0) + 1;
  for (const f of files) {
    if (released.has(f.file)) continue;
    if (!TOPIC_NAMES.includes(f.name)) throw new LogmeterError('unknown_schema', `${f.file}: no topic named ${f.name}`);
    const earlier = entries.filter((e) => e.name === f.name).sort((a, b) => a.version - b.version);
    if (f.version !== earlier.length + 1) throw new LogmeterError('schema_version_gap', `${f.file}: expected version ${earlier.length + 1}`);
    const schema = readSchemaFile(f.file, dir);
    const problems = compatibilityProblems(schema, earlier.map((e) => readSchemaFile(e.file, dir)));
    if (problems.length > 0) throw new LogmeterError('schema_incompatible', `${f.file} cannot read earlier versions:\n  ${problems.join('\n  ')}`);
    const entry = { id: nextId++, name: f.name, version: f.version, file: f.file, fingerprint: fingerprint(schema) };
    entries.push(entry);
    added.push(entry);
  }
  writeFileSync(file, `${JSON.stringify({ schemas: entries }, null, 2)}\n`);
  return added;
}

/**
 * Migration runner over `sql/NNN_name.sql`. Files run in numeric order; each applied
 * file is recorded (version, name, checksum) in `<db>.schema_migrations`, and skipped
 * next time. Every statement is itself idempotent (IF NOT EXISTS), so a run interrupted
 * between a statement and its record is safe to repeat. A recorded file whose text has
 * changed is refused: migrations are append-only.
 *
 * Files may use `${database}` for the target database; statements are separated by a
 * line ending in `;`.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LogmeterError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ClickHouse } from './client.js';

export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  checksum: string;
  statements: string[];
}

export function loadMigrations(dir = SQL_DIR, database: string): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  const seen = new Set<number>();
  return files.map((file) => {
    const version = Number(file.slice(0, 3));
    if (seen.has(version)) throw new LogmeterError('migration_duplicate', `two migrations numbered ${version} in ${dir}`);
    seen.add(version);
    const text = readFileSync(path.join(dir, file), 'utf8');
    return {
      version,
      name: file.slice(4, -4),
      checksum: createHash('sha256').update(text).digest('hex'),
      statements: splitStatements(text.replaceAll('${database}', database)),
    };
  });
}

/** Splits on `;` at a line end, dropping `--` comment lines. */
export function splitStatements(text: string): string[] {
  const out: string[] = [];
  let current: string[] = [];
  for (const line of text.split('\n')) {
    if (/^\s*--/.test(line)) continue;
    current.push(line);
    if (/;\s*$/.test(line)) {
      const stmt = current.join('\n').trim().replace(/;$/, '').trim();
      if (stmt) out.push(stmt);
      current = [];
    }
  }
  const rest = current.join('\n').trim();
  if (rest) out.push(rest);
  return out;
}

export async function migrate(ch: ClickHouse, logger: Logger, dir = SQL_DIR): Promise<{ applied: number[]; skipped: number[] }> {
  const db = ch.database;
  await ch.client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
  await ch.client.command({
    query: `CREATE TABLE IF NOT EXISTS ${db}.schema_migrations (
      version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY version`,
  });
  const rs = await ch.client.query({
    query: `SELECT version, name, checksum FROM ${db}.schema_migrations FINAL ORDER BY version`,
    format: 'JSONEachRow',
  });
  const done = new Map((await rs.json<{ version: number; name: string; checksum: string }>()).map((r) => [Number(r.version), r]));
  const applied: number[] = [];
  const skipped: number[] = [];
  for (const m of loadMigrations(dir, db)) {
    const prior = done.get(m.version);
    if (prior) {
      if (prior.checksum !== m.checksum) {
        throw new LogmeterError(
          'migration_changed',
          `migration ${m.version}_${m.name} was changed after it was applied (checksum ${prior.checksum.slice(0, 12)} → ${m.checksum.slice(0, 12)}); add a new migration instead`,
        );
      }
      skipped.push(m.version);
      continue;
    }
    for (const stmt of m.statements) await ch.client.command({ query: stmt });
    await ch.client.insert({
      table: `${db}.schema_migrations`,
      values: [{ version: m.version, name: m.name, checksum: m.checksum, applied_at: Date.now() }],
      format: 'JSONEachRow',
    });
    logger.info({ version: m.version, name: m.name }, 'migration applied');
    applied.push(m.version);
  }
  return { applied, skipped };
}

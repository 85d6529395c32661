/**
 * Runs every `test/**\/*.test.ts` file with node's built-in test runner (through tsx),
 * one file at a time: the tests share one Kafka broker, one dockerd and two cores.
 * Extra arguments are passed on (e.g. a file list, or `--test-name-pattern=…`).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const args = process.argv.slice(2);
const explicit = args.filter((a) => a.endsWith('.ts'));
const flags = args.filter((a) => !a.endsWith('.ts'));

function find(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return find(p);
    return e.name.endsWith('.test.ts') ? [path.relative(root, p)] : [];
  });
}

const files = explicit.length > 0 ? explicit : find(path.join(root, 'test')).sort();
const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=600000', '--test-reporter=spec', ...flags, ...files],
  { cwd: root, stdio: 'inherit', env: { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1' } },
);
process.exit(res.status ?? 1);

/**
 * Realistic log lines of an exact size: application-log shaped text with varying ids,
 * paths, numbers and words (seeded, so every run prints the same bytes). Varying lines
 * matter: the collector and kcat both gzip their Kafka batches, and one line repeated
 * would compress far better than any real log.
 */
import { writeFileSync } from 'node:fs';

/** mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LEVELS = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
const WORDS = 'request handled cache miss upstream user session order cart checkout payment retry timeout queue worker db pool conn ok slow fast items total region eu us tenant shop api v2 token refresh'.split(' ');
const PATHS = ['/api/v2/orders', '/api/v2/cart', '/products', '/checkout', '/login', '/static/app.js', '/healthz', '/search'];

/** One line of exactly `bytes - 1` characters (ASCII; the newline makes `bytes`). */
export function makeLine(i: number, bytes: number, rnd: () => number): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const t = 1_764_146_757_000 + i * 3;
  let s = `${new Date(t).toISOString()} ${pick(LEVELS)} [worker-${i % 8}] ${pick(PATHS)}/${Math.floor(rnd() * 100_000)} status=${rnd() < 0.95 ? 200 : 503} dur_ms=${(rnd() * 250).toFixed(1)} req=${Math.floor(rnd() * 2 ** 32).toString(16).padStart(8, '0')}`;
  while (s.length < bytes - 1) s += ` ${pick(WORDS)}=${Math.floor(rnd() * 1000)}`;
  return s.slice(0, bytes - 1);
}

/** Writes `count` lines of `bytes` each (newline included) to `file`, `repeat` times over. */
export function writeLinesFile(file: string, count: number, bytes: number, repeat = 1, seed = 42): void {
  const rnd = prng(seed);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(makeLine(i, bytes, rnd));
  const block = Buffer.from(`${lines.join('\n')}\n`, 'latin1');
  if (block.length !== count * bytes) throw new Error(`line generator: ${block.length} bytes, expected ${count * bytes}`);
  writeFileSync(file, repeat === 1 ? block : Buffer.concat(Array.from({ length: repeat }, () => block)));
}

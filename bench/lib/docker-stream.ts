/**
 * A pre-built multiplexed Docker log stream (8-byte frame headers, stdout and stderr
 * alternating, Docker-style RFC 3339 timestamps with nanoseconds, 50 lines per
 * millisecond) cut into 64 KiB chunks: the input of the benchmarks of the collector's line
 * path without Docker (bench/logstream.ts, bench/log-frame.ts).
 */
export function dockerLogChunks(lines: number, o: { lineChars: number; base: string }): Buffer[] {
  const frames: Buffer[] = [];
  const base = Date.parse(o.base);
  for (let i = 0; i < lines; i++) {
    const ms = base + Math.floor(i / 50);
    const ts = `${new Date(ms).toISOString().slice(0, 23)}${String((i * 7919) % 1_000_000).padStart(6, '0')}Z`;
    const payload = Buffer.from(`${ts} ${`line ${i} `.padEnd(o.lineChars, 'x')}\n`);
    const h = Buffer.alloc(8);
    h[0] = i % 2 === 0 ? 1 : 2;
    h.writeUInt32BE(payload.length, 4);
    frames.push(h, payload);
  }
  const all = Buffer.concat(frames);
  const chunks: Buffer[] = [];
  for (let off = 0; off < all.length; off += 64 * 1024) chunks.push(all.subarray(off, off + 64 * 1024));
  return chunks;
}

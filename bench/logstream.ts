/**
 * The collector's Docker stream demux alone (ingest/logstream.ts: MessageReader frames →
 * LineAssembler lines), no Docker, no Kafka: CPU µs per line on a pre-built multiplexed
 * stream of 120 B lines in 64 KiB chunks, stdout and stderr alternating, Docker-style
 * timestamps (many lines per second). Median of `--rounds`.
 *
 *   node --import tsx bench/logstream.ts [--lines 400000] [--rounds 5]
 */
import { performance } from 'node:perf_hooks';
import { LineAssembler, MessageReader } from '../ingest/logstream.js';
import { flags, fmt, median, out } from './lib/common.js';
import { dockerLogChunks } from './lib/docker-stream.js';

const f = flags(['lines', 'rounds']);
const lines = f.num('lines', 400_000);
const rounds = f.num('rounds', 5);


const chunks = dockerLogChunks(lines, { lineChars: 120, base: '2026-12-04T16:00:00Z' });
const times: number[] = [];
let sink = 0;
for (let r = 0; r < rounds; r++) {
  const reader = new MessageReader(false);
  const asm = new LineAssembler(16 * 1024);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  for (const chunk of chunks) {
    for (const m of reader.push(chunk)) {
      const line = asm.push(m);
      if (line) {
        n++;
        sink += line.seq + line.tsNanos;
      }
    }
  }
  const cpu = process.cpuUsage(c0);
  if (n !== lines) throw new Error(`${n} lines of ${lines}`);
  times.push(((cpu.user + cpu.system) / lines) * 1000);
  process.stderr.write(`round ${r + 1}: ${fmt((performance.now() - t0) / 1000, 2)} s wall, ${fmt(times[times.length - 1]! / 1000, 3)} CPU µs per line\n`);
}
out(`logstream demux, ${lines} lines of 120 B: ${fmt(median(times) / 1000, 3)} CPU µs per line (median of ${rounds}; checksum ${sink % 1000})`);

/**
 * The collector's own per-line path in process, no Docker, no Kafka: a multiplexed Docker
 * stream (120 B lines, Docker timestamps, 64 KiB chunks) → MessageReader → PositionTracker
 * → LineAssembler → the framed `logs` event, two ways in alternating rounds of one run:
 *   - avsc: the event object built field by field, `eventId(…)` and `codec.encode('logs', …)`
 *     (what the collector did before schemas/log-frame.ts);
 *   - fused: `LogFrameWriter.frame(line)` (what it does now).
 * Both must give the same bytes (checked on every frame of the first round). CPU µs per line,
 * median of `--rounds` rounds each.
 *
 *   node --import tsx bench/log-frame.ts [--lines 300000] [--rounds 6]
 */
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { LogFrameWriter, type LogFrameConstants } from '../schemas/log-frame.js';
import { eventId } from '../lib/event-id.js';
import { LineAssembler, MessageReader, type Line } from '../ingest/logstream.js';
import { PositionTracker } from '../ingest/position.js';
import { flags, fmt, median, out } from './lib/common.js';
import { dockerLogChunks } from './lib/docker-stream.js';

const f = flags(['lines', 'rounds']);
const lines = f.num('lines', 300_000);
const rounds = f.num('rounds', 6);

const codec = await AvroCodec.create(new ManifestSource());
const c: LogFrameConstants = { tenant: 'acme', app: 'shop', node: 'bench', containerId: 'ab'.repeat(32), containerName: 'shop-1', tty: false, logFormat: null };


function viaAvsc(line: Line): Buffer {
  return codec.encode('logs', {
    event_id: eventId(c.containerId, line.stream, line.ts, line.seq),
    tenant: c.tenant,
    app: c.app,
    node: c.node,
    container_id: c.containerId,
    container_name: c.containerName,
    ts: line.tsMs,
    ts_nanos: line.tsNanos,
    seq: line.seq,
    stream: line.stream,
    tty: c.tty,
    line: line.bytes,
    original_length: line.originalLength,
    truncated: line.truncated,
    invalid_utf8: line.invalidUtf8,
    log_format: c.logFormat,
  });
}

const chunks = dockerLogChunks(lines, { lineChars: 119, base: '2026-12-05T05:00:00Z' });
/** One pass over the stream; returns CPU µs per line. `check`: both ways, bytes compared. */
function pass(how: 'avsc' | 'fused', check = false): number {
  const reader = new MessageReader(false);
  const asm = new LineAssembler(16 * 1024);
  const tracker = new PositionTracker(2000);
  const writer = new LogFrameWriter(codec, c);
  let n = 0;
  const c0 = process.cpuUsage();
  for (const chunk of chunks) {
    for (const m of reader.push(chunk)) {
      tracker.observe(m);
      const line = asm.push(m);
      if (!line) continue;
      const frame = how === 'fused' ? writer.frame(line) : viaAvsc(line);
      if (check && !frame.equals(viaAvsc(line))) throw new Error(`line ${n}: the frames differ`);
      n++;
    }
  }
  const cpu = process.cpuUsage(c0);
  if (n !== lines) throw new Error(`${n} lines of ${lines}`);
  return (cpu.user + cpu.system) / lines;
}

pass('fused', true);
pass('avsc');
const times = { avsc: [] as number[], fused: [] as number[] };
for (let r = 0; r < rounds; r++) {
  for (const how of r % 2 === 0 ? (['avsc', 'fused'] as const) : (['fused', 'avsc'] as const)) {
    times[how].push(pass(how));
    process.stderr.write(`round ${r + 1} ${how}: ${fmt(times[how][times[how].length - 1]!, 3)} CPU µs per line\n`);
  }
}
const a = median(times.avsc);
const b = median(times.fused);
out(`collector line path, ${lines} lines of 120 B (parse, assemble, frame; bytes equal): avsc ${fmt(a, 3)}, fused ${fmt(b, 3)} CPU µs per line (median of ${rounds}); fused / avsc ${fmt(b / a, 2)}`);

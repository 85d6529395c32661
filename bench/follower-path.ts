/**
 * The follower's per-line JavaScript path once the bytes of Docker's logs stream have
 * arrived (issue 13), in process: no Docker, no Kafka, no shared service, one core.
 *
 * Input: a multiplexed Docker stream of `--lines` application-log lines of 120 B (newline
 * included), three of four on stdout, stamped as Docker stamps them (RFC 3339 with
 * nanoseconds, each stream's rising 1–4 µs per line: a container printing as fast as it can,
 * as in bench/collector.ts, gets ~2 µs apart; so hundreds of lines per millisecond, and the
 * seconds roll over), cut into 64 KiB chunks (frames split across chunks). Each chunk goes
 * through what ingest/follower.ts does per message (onMessage, emit):
 * `MessageReader.feed/next` → `PositionTracker.observe` → `LineAssembler.push` →
 * `LogFrameWriter.frame`.
 *
 * Stages, measured as cumulative passes (each a full pass over the stream; a step's cost is
 * its stage minus the one before):
 *   read     MessageReader alone
 *   observe  + PositionTracker.observe
 *   push     + LineAssembler.push
 *   frame    + LogFrameWriter.frame (the whole path)
 *   frameonly  LogFrameWriter.frame alone, over lines assembled beforehand
 * CPU µs per line (process.cpuUsage, user + system), best and median of `--passes`; the
 * stages (and, with `--other`, the two implementations) are interleaved, their order
 * rotating from pass to pass.
 *
 * `--other DIR`: a second checkout (e.g. /work/wt/base) whose ingest/logstream.ts,
 * ingest/position.ts and schemas/log-frame.ts run in the same passes: ratios this ÷ other.
 * Before measuring, both are checked to give the same frames (byte for byte) and the same
 * resume points (tracker snapshots after every chunk), also when resumed from a point taken
 * mid-stream (replay with skip).
 *
 *   node --import tsx bench/follower-path.ts [--lines 200000] [--passes 7] [--other /work/wt/base]
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';
import { flags, fmt, median, out } from './lib/common.js';
import { makeLine, prng } from './lib/lines.js';
import type { LogFrameConstants } from '../schemas/log-frame.js';

const f = flags(['lines', 'passes', 'other', 'chunk-bytes']);
const lines = f.num('lines', 200_000);
const passes = f.num('passes', 7);
const other = f.str('other', '');
const chunkBytes = f.num('chunk-bytes', 64 * 1024);

/** What one implementation gives: the modules of one checkout. */
interface Impl {
  name: string;
  MessageReader: new (tty: boolean) => { feed(chunk: Buffer): void; next(): unknown };
  PositionTracker: new (overlapMs: number, from?: unknown) => { observe(m: unknown): boolean; snapshot(): unknown };
  LineAssembler: new (maxLineBytes: number) => { push(m: unknown): unknown };
  LogFrameWriter: new (codec: unknown, c: LogFrameConstants) => { frame(line: unknown): Buffer };
  codec: unknown;
}

async function load(dir: string, name: string): Promise<Impl> {
  const mod = async (p: string) => (await import(pathToFileURL(path.join(dir, p)).href)) as Record<string, unknown>;
  const ls = await mod('ingest/logstream.ts');
  const pos = await mod('ingest/position.ts');
  const lf = await mod('schemas/log-frame.ts');
  const codecMod = await mod('schemas/codec.ts');
  const reg = await mod('schemas/registry.ts');
  const AvroCodec = codecMod.AvroCodec as { create(s: unknown): Promise<unknown> };
  const ManifestSource = reg.ManifestSource as new () => unknown;
  return {
    name,
    MessageReader: ls.MessageReader as Impl['MessageReader'],
    PositionTracker: pos.PositionTracker as Impl['PositionTracker'],
    LineAssembler: ls.LineAssembler as Impl['LineAssembler'],
    LogFrameWriter: lf.LogFrameWriter as Impl['LogFrameWriter'],
    codec: await AvroCodec.create(new ManifestSource()),
  };
}

const here = path.resolve(new URL('..', import.meta.url).pathname);
const impls: Impl[] = [await load(here, 'this')];
if (other) impls.push(await load(path.resolve(other), 'other'));

const constants: LogFrameConstants = { tenant: 'acme', app: 'shop', node: 'bench', containerId: 'ab'.repeat(32), containerName: 'shop-1', tty: false, logFormat: null };

/** The stream: Docker frames of 120 B lines with Docker's timestamps, in chunks of `chunkBytes`. */
function dockerStream(): Buffer[] {
  const rnd = prng(7);
  const frames: Buffer[] = [];
  // Nanoseconds since the epoch as [ms, ns within the ms], per stream (Docker stamps each stream in its own goroutine).
  const clock = { stdout: Date.parse('2026-12-05T12:00:59.000Z') * 1e6, stderr: Date.parse('2026-12-05T12:00:59.000Z') * 1e6 };
  for (let i = 0; i < lines; i++) {
    const stream = i % 4 === 3 ? 'stderr' : 'stdout';
    clock[stream] += 1000 + Math.floor(rnd() * 3000);
    const ns = clock[stream];
    const ms = Math.floor(ns / 1e6);
    const ts = `${new Date(ms).toISOString().slice(0, 23)}${String(ns % 1e6).padStart(6, '0')}Z`;
    const payload = Buffer.from(`${ts} ${makeLine(i, 120, rnd)}\n`, 'latin1');
    const h = Buffer.alloc(8);
    h[0] = stream === 'stdout' ? 1 : 2;
    h.writeUInt32BE(payload.length, 4);
    frames.push(h, payload);
  }
  const all = Buffer.concat(frames);
  const chunks: Buffer[] = [];
  for (let off = 0; off < all.length; off += chunkBytes) chunks.push(all.subarray(off, off + chunkBytes));
  return chunks;
}

const chunks = dockerStream();
type Stage = 'read' | 'observe' | 'push' | 'frame';
const STAGES: Stage[] = ['read', 'observe', 'push', 'frame'];

let sink = 0;
/** One pass up to `stage`; CPU µs per line. */
function pass(impl: Impl, stage: Stage): number {
  const reader = new impl.MessageReader(false);
  const tracker = new impl.PositionTracker(2000);
  const asm = new impl.LineAssembler(16 * 1024);
  const writer = new impl.LogFrameWriter(impl.codec, constants);
  const upTo = STAGES.indexOf(stage);
  let n = 0;
  const c0 = process.cpuUsage();
  for (const chunk of chunks) {
    reader.feed(chunk);
    for (let m = reader.next(); m; m = reader.next()) {
      n++;
      if (upTo < 1) continue;
      const replay = tracker.observe(m);
      if (upTo < 2) continue;
      const line = asm.push(m);
      if (upTo < 3 || !line || replay) continue;
      sink += writer.frame(line).length;
    }
  }
  const cpu = process.cpuUsage(c0);
  if (n !== lines) throw new Error(`${impl.name} ${stage}: ${n} messages of ${lines}`);
  return (cpu.user + cpu.system) / lines;
}

/** Lines assembled once, for the frame writer alone. */
function assembled(impl: Impl): unknown[] {
  const reader = new impl.MessageReader(false);
  const asm = new impl.LineAssembler(16 * 1024);
  const got: unknown[] = [];
  for (const chunk of chunks) {
    reader.feed(chunk);
    for (let m = reader.next(); m; m = reader.next()) {
      const line = asm.push(m);
      if (line) got.push(line);
    }
  }
  return got;
}
const lineSets = impls.map(assembled);

function frameOnly(i: number): number {
  const impl = impls[i]!;
  const writer = new impl.LogFrameWriter(impl.codec, constants);
  const ls = lineSets[i]!;
  const c0 = process.cpuUsage();
  for (const l of ls) sink += writer.frame(l).length;
  const cpu = process.cpuUsage(c0);
  return (cpu.user + cpu.system) / ls.length;
}

/** SHA-256 of every frame, and of the resume point after each chunk. */
function digest(impl: Impl): { frames: string; points: string; count: number } {
  const reader = new impl.MessageReader(false);
  const tracker = new impl.PositionTracker(2000);
  const asm = new impl.LineAssembler(16 * 1024);
  const writer = new impl.LogFrameWriter(impl.codec, constants);
  const hf = createHash('sha256');
  const hp = createHash('sha256');
  let count = 0;
  for (const chunk of chunks) {
    reader.feed(chunk);
    for (let m = reader.next(); m; m = reader.next()) {
      const replay = tracker.observe(m);
      const line = asm.push(m);
      if (line && !replay) {
        hf.update(writer.frame(line));
        count++;
      }
    }
    hp.update(JSON.stringify(tracker.snapshot()));
  }
  return { frames: hf.digest('hex'), points: hp.digest('hex'), count };
}

const checks = impls.map((impl) => ({ whole: digest(impl) }));
out(`follower path: ${lines} lines of 120 B (Docker frames, ${chunks.length} chunks of ${chunkBytes} B); frames ${checks[0]!.whole.count}, digest ${checks[0]!.whole.frames.slice(0, 16)}, resume points ${checks[0]!.whole.points.slice(0, 16)}`);
if (impls.length === 2) {
  const [a, b] = checks;
  if (a!.whole.frames !== b!.whole.frames || a!.whole.count !== b!.whole.count) throw new Error('the frames differ between this checkout and the other');
  if (a!.whole.points !== b!.whole.points) throw new Error('the resume points differ between this checkout and the other');
  out('  this and other: the same frames and the same resume point after every chunk');
}
replayCheck();

/**
 * A follow resumed from a point taken mid-stream: the messages Docker would send again (every
 * one stamped at or after `sinceMs`, in stream order), rebuilt as a stream of their own; the
 * frames handed on after the skip must be exactly those after the point in the whole run.
 */
function replayCheck(): void {
  const results = impls.map((impl) => {
    const reader = new impl.MessageReader(false);
    const tracker = new impl.PositionTracker(2000);
    const asm = new impl.LineAssembler(16 * 1024);
    const writer = new impl.LogFrameWriter(impl.codec, constants);
    const frames: Buffer[] = [];
    const raw: Array<{ header: Buffer; payload: Buffer; tsMs: number }> = [];
    let point: { sinceMs: number } | undefined;
    let at = 0;
    chunks.forEach((chunk, k) => {
      reader.feed(chunk);
      for (let m = reader.next(); m; m = reader.next()) {
        const msg = m as { stream: string; ts: string; tsMs: number; content: Buffer };
        raw.push({ header: Buffer.from([msg.stream === 'stdout' ? 1 : 2, 0, 0, 0, 0, 0, 0, 0]), payload: Buffer.from(`${msg.ts} ${msg.content.toString('latin1')}`, 'latin1'), tsMs: msg.tsMs });
        const replay = tracker.observe(m);
        const line = asm.push(m);
        if (line && !replay) frames.push(Buffer.from(writer.frame(line)));
      }
      if (k === Math.floor(chunks.length / 3)) {
        point = tracker.snapshot() as { sinceMs: number };
        at = frames.length;
      }
    });
    if (!point) throw new Error('no mid-stream point');
    const again = raw.filter((r) => r.tsMs >= point!.sinceMs);
    const stream = Buffer.concat(again.flatMap((r) => (r.header.writeUInt32BE(r.payload.length, 4), [r.header, r.payload])));
    const reader2 = new impl.MessageReader(false);
    const tracker2 = new impl.PositionTracker(2000, point);
    const asm2 = new impl.LineAssembler(16 * 1024);
    const resumed: Buffer[] = [];
    for (let off = 0; off < stream.length; off += 50_000) {
      reader2.feed(stream.subarray(off, off + 50_000));
      for (let m = reader2.next(); m; m = reader2.next()) {
        const replay = tracker2.observe(m);
        const line = asm2.push(m);
        if (line && !replay) resumed.push(writer.frame(line));
      }
    }
    const want = frames.slice(at);
    if (resumed.length !== want.length || resumed.some((r, i) => !r.equals(want[i]!))) throw new Error(`${impl.name}: a resumed follow did not give the frames after its resume point`);
    return createHash('sha256').update(Buffer.concat(resumed)).digest('hex');
  });
  out(`  resumed mid-stream (skip ${results.length === 2 && results[0] === results[1] ? 'and frames the same in both' : 'checked'}): the frames after the point, exactly`);
}

// Warm-up: every stage of every implementation, twice.
for (let w = 0; w < 2; w++) for (const impl of impls) for (const s of STAGES) pass(impl, s);
for (let i = 0; i < impls.length; i++) frameOnly(i);

type Key = `${string}/${Stage | 'frameonly'}`;
const times = new Map<Key, number[]>();
const record = (k: Key, v: number) => {
  const a = times.get(k) ?? [];
  a.push(v);
  times.set(k, a);
};
for (let p = 0; p < passes; p++) {
  const runs: Array<[number, Stage | 'frameonly']> = [];
  for (let i = 0; i < impls.length; i++) for (const s of [...STAGES, 'frameonly' as const]) runs.push([i, s]);
  // Rotate the order each pass, and reverse it every other pass.
  const rot = runs.map((_, j) => runs[(j + p * 3) % runs.length]!);
  if (p % 2 === 1) rot.reverse();
  for (const [i, s] of rot) {
    const impl = impls[i]!;
    record(`${impl.name}/${s}`, s === 'frameonly' ? frameOnly(i) : pass(impl, s));
  }
  process.stderr.write(`pass ${p + 1}/${passes}: ${impls.map((impl) => `${impl.name} ${fmt(times.get(`${impl.name}/frame`)!.at(-1)!, 3)}`).join(', ')} CPU µs per line (whole path)\n`);
}

const best = (k: Key) => Math.min(...times.get(k)!);
const med = (k: Key) => median(times.get(k)!);
out('');
out(`CPU µs per line, best / median of ${passes} passes (a step = its stage minus the one before)`);
const cols = impls.map((i) => i.name);
out(`| step | ${cols.map((c) => `${c} best | ${c} median`).join(' | ')}${impls.length === 2 ? ' | this ÷ other (median) |' : ' |'}`);
out(`|---|${cols.map(() => '---:|---:').join('|')}|${impls.length === 2 ? '---:|' : ''}`);
const rows: Array<[string, (name: string, how: (k: Key) => number) => number]> = [
  ['MessageReader (read)', (n, h) => h(`${n}/read`)],
  ['PositionTracker.observe', (n, h) => h(`${n}/observe`) - h(`${n}/read`)],
  ['LineAssembler.push', (n, h) => h(`${n}/push`) - h(`${n}/observe`)],
  ['LogFrameWriter.frame (in the path)', (n, h) => h(`${n}/frame`) - h(`${n}/push`)],
  ['LogFrameWriter.frame alone', (n, h) => h(`${n}/frameonly`)],
  ['**whole path**', (n, h) => h(`${n}/frame`)],
];
for (const [label, v] of rows) {
  const cells = cols.map((c) => `${fmt(v(c, best), 3)} | ${fmt(v(c, med), 3)}`).join(' | ');
  const ratio = impls.length === 2 ? ` ${fmt(v('this', med) / v('other', med), 2)} |` : '';
  out(`| ${label} | ${cells} |${ratio}`);
}
out(`(checksum ${sink % 997})`);

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DOCKER_PIECE_BYTES, LineAssembler, MessageReader, isCleanText, parseTimestamp, printableAscii, sinceParam, type Line, type Message } from '../ingest/logstream.js';
import { PositionTracker, type ResumePoint } from '../ingest/position.js';
import { RefLineAssembler, RefMessageReader, RefPositionTracker, type RefMessage } from './helpers/logstream-reference.js';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { LogFrameWriter, type LogFrameConstants } from '../schemas/log-frame.js';
import { eventId } from '../lib/event-id.js';
import { TenantLimiter, TokenBucket } from '../ingest/ratelimit.js';
import type { Stream } from '../schemas/events.js';

const BASE_MS = Date.parse('2026-11-26T10:00:00.000Z');

function stamp(ms: number, nanos: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}.${String(ms % 1000).padStart(3, '0')}${String(nanos).padStart(6, '0')}Z`;
}

/** Docker's frames for lines: pieces of DOCKER_PIECE_BYTES, the last with its newline (json-file). */
function frames(lines: Array<{ stream: Stream; bytes: Buffer; ms: number }>): Buffer[] {
  const out: Buffer[] = [];
  for (const l of lines) {
    const pieces: Buffer[] = [];
    for (let o = 0; o < l.bytes.length; o += DOCKER_PIECE_BYTES) pieces.push(l.bytes.subarray(o, o + DOCKER_PIECE_BYTES));
    const last = pieces.pop() ?? Buffer.alloc(0);
    pieces.push(Buffer.concat([last, Buffer.from('\n')]));
    for (const p of pieces) {
      const payload = Buffer.concat([Buffer.from(`${stamp(l.ms, 0)} `), p]);
      const h = Buffer.alloc(8);
      h[0] = l.stream === 'stdout' ? 1 : 2;
      h.writeUInt32BE(payload.length, 4);
      out.push(h, payload);
    }
  }
  return out;
}

const lineBytes = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: DOCKER_PIECE_BYTES - 2, max: 3 * DOCKER_PIECE_BYTES + 5 }).map((n) => new Uint8Array(n).fill(0x41)) },
).map((a) => Buffer.from(a.filter((b) => b !== 0x0a)));

test('any lines, split into Docker pieces and cut into chunks anywhere, come back exactly, per stream, capped', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ stream: fc.constantFrom<Stream>('stdout', 'stderr'), bytes: lineBytes }), { maxLength: 30 }),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }),
      fc.integer({ min: 1024, max: 40_000 }),
      (lines, cuts, cap) => {
        // A piece without newline shorter than a full piece ends a line; lines ending in CR lose it; keep inputs unambiguous.
        const input = lines.map((l, i) => ({ ...l, bytes: l.bytes.at(-1) === 0x0d ? Buffer.concat([l.bytes, Buffer.from('x')]) : l.bytes, ms: BASE_MS + i }));
        const stream = Buffer.concat(frames(input));
        const reader = new MessageReader(false);
        const asm = new LineAssembler(cap);
        const got: Array<{ stream: Stream; bytes: Buffer; original: number; truncated: boolean }> = [];
        let off = 0;
        let k = 0;
        while (off < stream.length) {
          const n = cuts[k++ % cuts.length]!;
          for (const m of reader.push(stream.subarray(off, off + n))) {
            const line = asm.push(m);
            if (line) got.push({ stream: line.stream, bytes: line.bytes, original: line.originalLength, truncated: line.truncated });
          }
          off += n;
        }
        assert.equal(reader.pending, 0);
        assert.ok(asm.clean);
        for (const s of ['stdout', 'stderr'] as const) {
          const want = input.filter((l) => l.stream === s);
          const have = got.filter((l) => l.stream === s);
          assert.equal(have.length, want.length);
          have.forEach((h, i) => {
            const w = want[i]!.bytes;
            assert.equal(h.original, w.length);
            assert.equal(h.truncated, w.length > cap);
            assert.ok(h.bytes.equals(w.subarray(0, cap)));
          });
        }
      },
    ),
    { numRuns: 150 },
  );
});

test('a resume point lands exactly after the last message read, despite out-of-order stamps across streams', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ stream: fc.constantFrom<Stream>('stdout', 'stderr'), gap: fc.integer({ min: 0, max: 3 }), skew: fc.integer({ min: 0, max: 50 }) }), { minLength: 1, maxLength: 300 }),
      fc.nat(),
      (spec, at) => {
        // Per stream, stamps never go back; across streams a message may be filed up to 50 ms "late".
        const clock: Record<Stream, number> = { stdout: BASE_MS, stderr: BASE_MS };
        const messages: Message[] = spec.map((s) => {
          clock[s.stream] += s.gap;
          const ms = Math.max(clock[s.stream], Math.max(clock.stdout, clock.stderr) - s.skew);
          clock[s.stream] = ms;
          return { stream: s.stream, ts: stamp(ms, 0), tsMs: ms, tsNanos: 0, content: Buffer.from('x\n') };
        });
        const k = at % (messages.length + 1);
        const tracker = new PositionTracker(2000);
        messages.slice(0, k).forEach((m) => tracker.observe(m));
        const point = tracker.snapshot();
        // What Docker returns for `since`: every message stamped at or after it, in file order.
        const resent = messages.filter((m) => m.tsMs >= point.sinceMs);
        const resumed = new PositionTracker(2000, point);
        const emitted = resent.filter((m) => !resumed.observe(m));
        assert.deepEqual(emitted, messages.slice(k));
      },
    ),
    { numRuns: 300 },
  );
});

test('TTY streams: lines split on newlines, CRLF trimmed, a last line without newline kept at end', () => {
  const r = new MessageReader(true);
  const asm = new LineAssembler(1024);
  const t = stamp(BASE_MS, 5);
  const msgs = [...r.push(Buffer.from(`${t} one\r\n${t} tw`)), ...r.push(Buffer.from(`o\r\n${t} three`)), ...r.end()];
  const lines = msgs.map((m) => asm.push(m)).filter((l) => l !== undefined);
  assert.deepEqual(lines.map((l) => [l.bytes.toString(), l.seq, l.stream]), [['one', 0, 'stdout'], ['two', 1, 'stdout'], ['three', 2, 'stdout']]);
});

test('a malformed multiplexed stream is an error, not silent loss', () => {
  assert.throws(() => new MessageReader(false).push(Buffer.from([7, 0, 0, 0, 0, 0, 0, 1, 0x41])), /unexpected stream type 7/);
  assert.throws(() => new MessageReader(false).push(Buffer.from([1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x42, 0x43])), /without a timestamp/);
  const r = new MessageReader(false);
  r.push(Buffer.from([1, 0, 0, 0, 0, 0, 0, 9]));
  assert.throws(() => r.end(), /ended inside a frame/);
});

test('timestamps: nanoseconds kept, since parameter exact to the millisecond', () => {
  assert.deepEqual(parseTimestamp('2026-11-26T10:00:00.123456789Z'), { ms: BASE_MS + 123, nanos: 456789 });
  assert.deepEqual(parseTimestamp('2026-11-26T10:00:00Z'), { ms: BASE_MS, nanos: 0 });
  assert.throws(() => parseTimestamp('yesterday'), /bad Docker timestamp/);
  assert.equal(sinceParam(BASE_MS + 7), `${BASE_MS / 1000}.007000000`);
  assert.throws(() => parseTimestamp('2026-13-26T10:00:00.123456789Z'), /bad Docker timestamp/);
  assert.deepEqual(parseTimestamp('2026-11-26T11:00:00.123456789+01:00'), { ms: BASE_MS + 123, nanos: 456789 });
});

test('timestamps: the per-second fast path gives what the general parser gives, across seconds and years', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 4_102_444_799_999 }), fc.integer({ min: 0, max: 999_999 }), (ms, sub) => {
      const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
      const docker = `${iso.slice(0, 23)}${String(sub).padStart(6, '0')}Z`;
      assert.deepEqual(parseTimestamp(docker), { ms, nanos: sub });
      // The same instant written with an offset takes the general path.
      assert.deepEqual(parseTimestamp(`${docker.slice(0, 29)}+00:00`), { ms, nanos: sub });
    }),
  );
});

test('clean text: UTF-8 with tabs and colours passes; NUL, invalid bytes and U+FFFD are flagged', () => {
  assert.ok(isCleanText(Buffer.from('héllo\t\x1b[31mred\x1b[0m €')));
  assert.ok(!isCleanText(Buffer.from([0x61, 0x00, 0x62])));
  assert.ok(!isCleanText(Buffer.from([0x61, 0xff])));
  assert.ok(!isCleanText(Buffer.from('bad \ufffd')));
});

test('clean text: the ASCII fast path flags exactly what the byte-by-byte check flags (property)', async () => {
  const { isUtf8 } = await import('node:buffer');
  // The check as it was before the fast path (issue 13).
  const reference = (b: Buffer): boolean => {
    for (let i = 0; i < b.length; i++) {
      const c = b[i]!;
      if (c < 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x1b && c !== 0x0b && c !== 0x0c) return false;
      if (c === 0x7f) return false;
      if (c === 0xef && b[i + 1] === 0xbf && b[i + 2] === 0xbd) return false;
    }
    return isUtf8(b);
  };
  const byte = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x09, 0x0d, 0x1b, 0x7f, 0xef, 0xbf, 0xbd, 0xc3, 0xa9));
  const bytes = fc.oneof(fc.array(byte, { maxLength: 200 }).map((a) => Buffer.from(a)), fc.string({ unit: 'binary', maxLength: 100 }).map((s) => Buffer.from(s)));
  fc.assert(fc.property(bytes, (b) => isCleanText(b) === reference(b)), { numRuns: 5000 });
});

test('token buckets: a tenant gets its rate and burst; others are untouched', () => {
  let now = 0;
  const limiter = new TenantLimiter({ linesPerSecond: 10, bytesPerSecond: 1000, burstSeconds: 1, tenants: { big: { linesPerSecond: 100 } } }, () => now);
  let passed = 0;
  for (let i = 0; i < 50; i++) if (limiter.allow('flood', 10)) passed++;
  assert.equal(passed, 10, 'burst of one second');
  assert.ok(limiter.allow('quiet', 10), 'another tenant has its own bucket');
  now = 500;
  passed = 0;
  for (let i = 0; i < 50; i++) if (limiter.allow('flood', 10)) passed++;
  assert.equal(passed, 5, 'half a second refills half the rate');
  passed = 0;
  for (let i = 0; i < 200; i++) if (limiter.allow('big', 1)) passed++;
  assert.equal(passed, 100, 'per-tenant override');
  const b = new TokenBucket(1, 1, 0);
  assert.ok(b.take(1, 0));
  assert.ok(!b.take(1, 999));
  assert.ok(b.take(1, 1000));
});

// Issue 13's rework of the line path (RawMessage, LastStamp, run-length counts, bytes kept as
// bytes) against the code as it was (test/helpers/logstream-reference.ts): the same messages,
// lines, seq numbers, replay flags and resume points, and frames byte-identical to avsc's with
// the event id of lib/event-id.ts, for any stream cut anywhere.
const codec = await AvroCodec.create(new ManifestSource());

/** Timestamps as Docker writes them, and the other RFC 3339 forms parseTimestamp takes. */
function stampOf(ms: number, nanos: number, form: number): string {
  const iso = new Date(ms).toISOString();
  const frac = `${iso.slice(20, 23)}${String(nanos).padStart(6, '0')}`;
  switch (form) {
    case 0:
      return `${iso.slice(0, 19)}.${frac}Z`;
    case 1:
      return `${iso.slice(0, 19)}Z`;
    case 2:
      return `${iso.slice(0, 19)}.${frac.slice(0, 3)}Z`;
    default:
      return `${new Date(ms + 3_600_000).toISOString().slice(0, 19)}.${frac}+01:00`;
  }
}

const messageSpec = fc.record({
  stream: fc.constantFrom<Stream>('stdout', 'stdout', 'stderr'),
  // 0: the same stamp again; small steps within a ms, across ms and seconds; now and then back (the other stream's clock).
  step: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 6, arbitrary: fc.integer({ min: 1, max: 3_000_000 }) }, { weight: 1, arbitrary: fc.integer({ min: -5_000_000, max: -1 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3_000_000_000 }) }),
  form: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
  content: fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 150, size: 'max' }).map((s) => Buffer.from(s, 'latin1')) },
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 150, size: 'max' }).map((a) => Buffer.from(a)) },
    // ASCII with a control byte here and there (tabs and ESC are clean, NUL and DEL are not).
    { weight: 3, arbitrary: fc.array(fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) }, { weight: 1, arbitrary: fc.constantFrom(0x00, 0x01, 0x09, 0x0b, 0x0c, 0x0d, 0x1b, 0x1f, 0x7f) }), { maxLength: 150, size: 'max' }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(DOCKER_PIECE_BYTES, 0x61)) },
  ),
  end: fc.constantFrom('\n', '\n', '\r\n', ''),
});

function equivalence(tty: boolean) {
  return fc.property(
    fc.array(messageSpec, { minLength: 1, maxLength: 80 }),
    fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 10 }),
    fc.integer({ min: 0, max: 20_000 }),
    fc.integer({ min: 0, max: 1_000_000_000 }),
    fc.nat(),
    fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.string({ unit: 'binary', maxLength: 70 })),
    (specs, cuts, cap, startOffset, at, containerId) => {
      // Nanoseconds since the epoch, starting near the end of a second.
      let ns = BASE_MS * 1e6 + 998_000_000 + startOffset;
      const raw: Array<{ stream: Stream; tsMs: number; bytes: Buffer }> = [];
      for (const s of specs) {
        ns += s.step;
        const ms = Math.floor(ns / 1e6);
        let content = Buffer.concat([s.content, Buffer.from(s.end)]);
        if (tty) content = Buffer.concat([Buffer.from(content.toString('latin1').replace(/\n/g, ' '), 'latin1'), Buffer.from('\n')]);
        const payload = Buffer.concat([Buffer.from(`${stampOf(ms, ns % 1e6, s.form)} `), content]);
        raw.push({ stream: tty ? 'stdout' : s.stream, tsMs: ms, bytes: payload });
      }
      const streamOf = (msgs: typeof raw) =>
        Buffer.concat(
          msgs.flatMap((r) => {
            if (tty) return [r.bytes];
            const h = Buffer.alloc(8);
            h[0] = r.stream === 'stdout' ? 1 : 2;
            h.writeUInt32BE(r.bytes.length, 4);
            return [h, r.bytes];
          }),
        );
      const c: LogFrameConstants = { tenant: 't', app: 'a', node: 'n', containerId, containerName: 'x', tty, logFormat: null };
      const writer = new LogFrameWriter(codec, c);
      /** Runs both ways over `msgs`, cut by `cuts`, from `from`; compares everything; returns the point after message `stopAt`. */
      const run = (msgs: typeof raw, from: ResumePoint | undefined, stopAt: number) => {
        const bytes = streamOf(msgs);
        const now = { reader: new MessageReader(tty), asm: new LineAssembler(cap), tracker: new PositionTracker(50, from) };
        const ref = { reader: new RefMessageReader(tty), asm: new RefLineAssembler(cap), tracker: new RefPositionTracker(50, from) };
        let point: ResumePoint | undefined;
        let n = 0;
        const step = (m: Message, r: RefMessage) => {
          assert.deepEqual([m.stream, m.ts, m.tsMs, m.tsNanos, m.content], [r.stream, r.ts, r.tsMs, r.tsNanos, r.content]);
          assert.equal(now.tracker.observe(m), ref.tracker.observe(r));
          compareLines(now.asm.push(m), ref.asm.push(r));
          if (++n === stopAt) point = now.tracker.snapshot();
          assert.deepEqual(now.tracker.snapshot(), ref.tracker.snapshot());
        };
        const compareLines = (l: Line | undefined, r: Line | undefined) => {
          if (!l || !r) return assert.equal(l, r);
          assert.deepEqual([l.stream, l.ts, l.tsMs, l.tsNanos, l.seq, l.bytes, l.originalLength, l.truncated, l.invalidUtf8], [r.stream, r.ts, r.tsMs, r.tsNanos, r.seq, r.bytes, r.originalLength, r.truncated, r.invalidUtf8]);
          assert.deepEqual(outcome(() => writer.frame(l)), outcome(() => codec.encode('logs', writer.event(r, eventId(containerId, r.stream, r.ts, r.seq)))));
        };
        let off = 0;
        let k = 0;
        while (off < bytes.length) {
          const len = cuts[k++ % cuts.length]!;
          const chunk = bytes.subarray(off, off + len);
          off += len;
          now.reader.feed(chunk);
          ref.reader.feed(chunk);
          for (;;) {
            const m = now.reader.next();
            const r = ref.reader.next();
            if (!m || !r) {
              assert.equal(m, r);
              break;
            }
            step(m, r);
          }
          assert.equal(now.reader.pending, ref.reader.pending);
        }
        const ends = [now.reader.end(), ref.reader.end()] as const;
        assert.equal(ends[0].length, ends[1].length);
        ends[0].forEach((m, i) => step(m, ends[1][i]!));
        const flushed = [now.asm.flush(), ref.asm.flush()] as const;
        assert.equal(flushed[0].length, flushed[1].length);
        flushed[0].forEach((l, i) => compareLines(l, flushed[1][i]));
        assert.equal(now.asm.held, ref.asm.held);
        return point;
      };
      const point = run(raw, undefined, (at % raw.length) + 1);
      // Resumed there: what Docker sends again for `since` (every message stamped at or after it, in order).
      if (point) run(raw.filter((r) => r.tsMs >= point.sinceMs), point, 0);
    },
  );
}

function outcome(f: () => Buffer): Buffer | string {
  try {
    return f();
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
}

test('the line path gives what it gave before issue 13: messages, lines, seq, resume points, replays, frames (property)', () => {
  fc.assert(equivalence(false), { numRuns: 400 });
});

test('the line path gives what it gave before issue 13, TTY streams (property)', () => {
  fc.assert(equivalence(true), { numRuns: 200 });
});

test('printable ASCII four bytes at a time: exactly the bytes 0x20–0x7e, at any offset and alignment (property)', () => {
  const byte = fc.oneof({ weight: 40, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }, { weight: 1, arbitrary: fc.constantFrom(0x00, 0x1f, 0x7f, 0x80, 0xff) });
  fc.assert(
    fc.property(fc.array(byte, { maxLength: 120, size: 'max' }), fc.nat(7), fc.nat(7), (bytes, before, after) => {
      // Inside a bigger buffer at any offset, as a line inside a chunk.
      const b = Buffer.concat([Buffer.alloc(before, 0x41), Buffer.from(bytes), Buffer.alloc(after, 0)]);
      const want = bytes.every((c) => c >= 0x20 && c <= 0x7e);
      assert.equal(printableAscii(b, before, before + bytes.length), want);
      assert.equal(printableAscii(b.subarray(before, before + bytes.length), 0, bytes.length), want);
    }),
    { numRuns: 5000 },
  );
});

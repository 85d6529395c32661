/**
 * The collector's line path as it was before issue 13's per-line work on it (ingest/logstream.ts
 * and ingest/position.ts at ac1db99), kept verbatim apart from names: what the property tests
 * of test/logstream.test.ts compare the current code with (same lines, seq, resume points).
 */
import { isUtf8 } from 'node:buffer';
import type { Stream } from '../../schemas/events.js';
import type { LogFrameLine } from '../../schemas/log-frame.js';

export interface RefMessage {
  stream: Stream;
  /** Docker's timestamp as sent (RFC3339 with nanoseconds). */
  ts: string;
  /** Milliseconds since the epoch, and nanoseconds past that millisecond. */
  tsMs: number;
  tsNanos: number;
  content: Buffer;
}

/** An assembled line: what the collector frames (schemas/log-frame.ts, where its fields are described). */
export type RefLine = LogFrameLine;

const HEADER = 8;
/**
 * Docker cuts longer lines into pieces of exactly this many bytes. A piece without a
 * newline that is shorter ends its line: the `local` log driver sends a split line's
 * last piece without the newline (json-file keeps it), and so does a final line printed
 * without one.
 */
const DOCKER_PIECE_BYTES = 16 * 1024;
const NEWLINE = 0x0a;
const SPACE = 0x20;
const EMPTY = Buffer.alloc(0);

/**
 * Splits a (possibly multiplexed) logs stream into timestamped messages; chunk boundaries may
 * fall anywhere. A chunk is parsed one message at a time (feed(), then next() until it gives
 * none): a reader that stops mid-chunk (the collector, when the Kafka buffer is full) holds
 * the rest of the chunk as bytes, not as hundreds of parsed messages (issue 19).
 */
export class RefMessageReader {
  private buf: Buffer = EMPTY;
  /** Where the next message starts in `buf`. */
  private off = 0;
  /** True when `buf` is a copy of our own (a rest), not a chunk we were fed. */
  private owned = true;

  constructor(private readonly tty: boolean) {}

  /** Feeds a chunk: its messages come from next(). */
  feed(chunk: Buffer): void {
    const rest = this.buf.length - this.off;
    this.buf = rest === 0 ? chunk : Buffer.concat([this.buf.subarray(this.off), chunk]);
    this.off = 0;
    this.owned = rest !== 0;
  }

  /**
   * The next complete message, or undefined when the bytes fed end inside one; then only that
   * rest is kept (copied, so the chunk can be freed). Throws on a malformed stream.
   */
  next(): RefMessage | undefined {
    const m = this.tty ? this.nextTty() : this.nextFrame();
    if (m) return m;
    if (this.off === this.buf.length) {
      this.buf = EMPTY;
      this.owned = true;
    } else if (this.off > 0 || !this.owned) {
      this.buf = Buffer.from(this.buf.subarray(this.off));
      this.owned = true;
    }
    this.off = 0;
    return undefined;
  }

  /** Feeds a chunk; returns the complete messages it finished. Throws on a malformed stream. */
  push(chunk: Buffer): RefMessage[] {
    this.feed(chunk);
    const out: RefMessage[] = [];
    for (let m = this.next(); m; m = this.next()) out.push(m);
    return out;
  }

  /** Bytes held waiting for the rest of a frame (after next() gave none). */
  get pending(): number {
    return this.buf.length - this.off;
  }

  /** At end of stream: whatever is left as a last message (a TTY line without newline). */
  end(): RefMessage[] {
    if (this.buf.length === this.off) return [];
    const rest = this.buf.subarray(this.off);
    this.buf = EMPTY;
    this.off = 0;
    if (!this.tty) throw new Error(`logs stream ended inside a frame (${rest.length} bytes left)`);
    return [parseRefMessage('stdout', rest)];
  }

  private nextFrame(): RefMessage | undefined {
    const b = this.buf;
    const off = this.off;
    if (b.length - off < HEADER) return undefined;
    const type = b[off]!;
    const size = b.readUInt32BE(off + 4);
    if (b.length - off - HEADER < size) return undefined;
    if (type !== 1 && type !== 2) throw new Error(`unexpected stream type ${type} in logs stream (is the container a TTY?)`);
    this.off = off + HEADER + size;
    return parseRefMessageAt(type === 1 ? 'stdout' : 'stderr', b, off + HEADER, off + HEADER + size);
  }

  private nextTty(): RefMessage | undefined {
    const b = this.buf;
    const nl = b.indexOf(NEWLINE, this.off);
    if (nl < 0) return undefined;
    const start = this.off;
    this.off = nl + 1;
    return parseRefMessageAt('stdout', b, start, nl + 1);
  }
}

/** `<timestamp> <content>` → RefMessage. The content keeps its newline, if any. */
function parseRefMessage(stream: Stream, payload: Buffer): RefMessage {
  return parseRefMessageAt(stream, payload, 0, payload.length);
}

/**
 * parseRefMessage of `b[start, end)` without a view of the whole payload first: the demux
 * makes one Buffer view per line (the content), not two, and Docker's own timestamp form
 * is read digit by digit without intermediate strings (issue 13: per-line allocations).
 */
function parseRefMessageAt(stream: Stream, b: Buffer, start: number, end: number): RefMessage {
  const sp = b.indexOf(SPACE, start);
  if (sp < 0 || sp >= end || sp - start > 40) throw new Error(`log message without a timestamp: ${JSON.stringify(b.toString('latin1', start, Math.min(end, start + 60)))}`);
  const ts = b.toString('latin1', start, sp);
  const content = b.subarray(sp + 1, end);
  const ms = dockerTimestampMs(ts);
  if (ms >= 0) return { stream, ts, tsMs: ms, tsNanos: fracDigits(ts, 23, 29), content };
  const t = parseTimestamp(ts);
  return { stream, ts, tsMs: t.ms, tsNanos: t.nanos, content };
}

let lastSecond = '';
let lastSecondMs = 0;

/** The value of the decimal digits `ts[from, to)`, or -1 if one is not a digit. */
function fracDigits(ts: string, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = ts.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/**
 * Docker's own form `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` → ms since the epoch, or -1 when `ts`
 * is not in that form. The second is parsed once per second of logs, not once per line.
 */
function dockerTimestampMs(ts: string): number {
  if (ts.length !== 30 || ts.charCodeAt(19) !== 0x2e || ts.charCodeAt(29) !== 0x5a || fracDigits(ts, 20, 29) < 0) return -1;
  if (!ts.startsWith(lastSecond) || lastSecond.length !== 19) {
    const second = ts.slice(0, 19);
    const base = Date.parse(`${second}Z`);
    if (Number.isNaN(base)) throw new Error(`bad Docker timestamp ${JSON.stringify(ts)}`);
    lastSecond = second;
    lastSecondMs = base;
  }
  return lastSecondMs + fracDigits(ts, 20, 23);
}

/** RFC3339 with up to 9 fractional digits (Docker's RFC3339NanoFixed) → ms and nanoseconds past it. */
function parseTimestamp(ts: string): { ms: number; nanos: number } {
  const fast = dockerTimestampMs(ts);
  if (fast >= 0) return { ms: fast, nanos: fracDigits(ts, 23, 29) };
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) throw new Error(`bad Docker timestamp ${JSON.stringify(ts)}`);
  const frac = (m[2] ?? '').padEnd(9, '0');
  const ms = Date.parse(`${m[1]}.${frac.slice(0, 3)}${m[3]}`);
  if (Number.isNaN(ms)) throw new Error(`bad Docker timestamp ${JSON.stringify(ts)}`);
  return { ms, nanos: Number(frac.slice(3)) };
}

interface Partial {
  ts: string;
  tsMs: number;
  tsNanos: number;
  parts: Buffer[];
  kept: number;
  total: number;
}

/** Re-joins Docker's pieces per stream into lines, numbers them, caps and flags them. */
export class RefLineAssembler {
  private readonly partial: Record<Stream, Partial | undefined> = { stdout: undefined, stderr: undefined };
  private readonly last: Record<Stream, { ts: string; count: number }> = { stdout: { ts: '', count: 0 }, stderr: { ts: '', count: 0 } };

  constructor(private readonly maxLineBytes: number) {}

  /** True when no stream holds the start of an unfinished line. */
  get clean(): boolean {
    return !this.partial.stdout && !this.partial.stderr;
  }

  /** Bytes held for unfinished lines (their kept pieces), what the line cap bounds. */
  get held(): number {
    let n = 0;
    for (const p of [this.partial.stdout, this.partial.stderr]) for (const b of p?.parts ?? []) n += b.length;
    return n;
  }

  /** Feeds one message; returns the line it completed, if any. */
  push(m: RefMessage): RefLine | undefined {
    let p = this.partial[m.stream];
    const c = m.content;
    if (!p && ((c.length > 0 && c[c.length - 1] === NEWLINE) || c.length < DOCKER_PIECE_BYTES)) {
      // The common case, a line complete in one piece: the same line as below without the
      // unfinished-line state (issue 13: per-line allocations). It may point into the chunk
      // (it is used before the next chunk is read).
      const end = c.length > 0 && c[c.length - 1] === NEWLINE ? c.length - 1 : c.length;
      return this.line(m.stream, m.ts, m.tsMs, m.tsNanos, c, Math.min(end, Math.max(0, this.maxLineBytes)), end);
    }
    if (!p) {
      p = { ts: m.ts, tsMs: m.tsMs, tsNanos: m.tsNanos, parts: [], kept: 0, total: 0 };
      this.partial[m.stream] = p;
    }
    const newline = m.content.length > 0 && m.content[m.content.length - 1] === NEWLINE;
    const complete = newline || m.content.length < DOCKER_PIECE_BYTES;
    const piece = newline ? m.content.subarray(0, m.content.length - 1) : m.content;
    p.total += piece.length;
    const room = this.maxLineBytes - p.kept;
    if (room > 0 && piece.length > 0) {
      const kept = piece.length <= room ? piece : piece.subarray(0, room);
      // A line complete in one piece is used at once (encoded before the next chunk is
      // read) and may point into the chunk; a piece kept for later is copied, so an
      // unfinished line does not hold its whole 64 KiB chunk in memory.
      p.parts.push(complete && p.parts.length === 0 ? kept : Buffer.from(kept));
      p.kept += kept.length;
    }
    if (!complete) return undefined;
    this.partial[m.stream] = undefined;
    return this.finish(m.stream, p);
  }

  /** At end of stream: unfinished lines are emitted as they are (the container printed no final newline). */
  flush(): RefLine[] {
    const out: RefLine[] = [];
    for (const s of ['stdout', 'stderr'] as const) {
      const p = this.partial[s];
      if (p) {
        this.partial[s] = undefined;
        out.push(this.finish(s, p));
      }
    }
    return out;
  }

  private finish(stream: Stream, p: Partial): RefLine {
    const bytes = p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts, p.kept);
    return this.line(stream, p.ts, p.tsMs, p.tsNanos, bytes, bytes.length, p.total);
  }

  /** The line of `kept` bytes at the start of `b`, of `total` bytes as printed: numbered, flagged. */
  private line(stream: Stream, ts: string, tsMs: number, tsNanos: number, b: Buffer, kept: number, total: number): RefLine {
    // CRLF (TTYs, Windows-style apps): the CR belongs to the line ending.
    if (kept > 0 && kept === total && b[kept - 1] === 0x0d) {
      kept -= 1;
      total -= 1;
    }
    const bytes = kept === b.length ? b : b.subarray(0, kept);
    const last = this.last[stream];
    let seq = 0;
    if (last.ts === ts) seq = ++last.count;
    else {
      last.ts = ts;
      last.count = 0;
    }
    return { stream, ts, tsMs, tsNanos, seq, bytes, originalLength: total, truncated: total > kept, invalidUtf8: !isCleanText(bytes) };
  }
}

/**
 * Valid UTF-8 without NUL or other control bytes (tab, CR, form feed, vertical tab and
 * ESC for colours allowed), and without U+FFFD: Docker's json-file log driver stores
 * lines as JSON strings and has already replaced invalid bytes with U+FFFD before any
 * reader sees them (the `local` driver keeps the bytes exactly).
 */
function isCleanText(b: Buffer): boolean {
  // Printable ASCII, the usual byte, costs one range check; a line of ASCII alone is valid
  // UTF-8 without asking isUtf8 (issue 13: per-line CPU).
  let ascii = true;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c >= 0x20 && c < 0x7f) continue;
    if (c < 0x20) {
      if (c !== 0x09 && c !== 0x0d && c !== 0x1b && c !== 0x0b && c !== 0x0c) return false;
      continue;
    }
    if (c === 0x7f) return false;
    ascii = false;
    if (c === 0xef && b[i + 1] === 0xbf && b[i + 2] === 0xbd) return false;
  }
  return ascii || isUtf8(b);
}

interface ResumePoint {
  /** Ask Docker for messages stamped at or after this instant (ms). */
  sinceMs: number;
  /** Then skip this many of them: they were read before. */
  skip: number;
  /** Newest timestamp read (for lag metrics and humans). */
  lastTs: string;
  lastTsMs: number;
}

const START: ResumePoint = { sinceMs: 0, skip: 0, lastTs: '', lastTsMs: 0 };

export class RefPositionTracker {
  /** Message count per millisecond, for the recent window. */
  private readonly buckets = new Map<number, number>();
  private maxMs = 0;
  private lastTs = '';
  private skipLeft: number;
  private readonly floorMs: number;

  constructor(
    private readonly overlapMs: number,
    from: ResumePoint = START,
  ) {
    this.floorMs = from.sinceMs;
    this.skipLeft = from.skip;
    this.maxMs = from.lastTsMs;
    this.lastTs = from.lastTs;
  }

  /** Records a message in stream order; true when it was read before (replay: do not emit). */
  observe(m: RefMessage): boolean {
    this.buckets.set(m.tsMs, (this.buckets.get(m.tsMs) ?? 0) + 1);
    if (m.tsMs > this.maxMs || (m.tsMs === this.maxMs && m.ts > this.lastTs)) {
      this.maxMs = m.tsMs;
      this.lastTs = m.ts;
      if (this.buckets.size > 4 * this.overlapMs) this.prune();
    }
    if (this.skipLeft > 0) {
      this.skipLeft--;
      return true;
    }
    return false;
  }

  /** True while messages read before are being skipped. */
  get replaying(): boolean {
    return this.skipLeft > 0;
  }

  /** The resume point just after every message observed so far. */
  snapshot(): ResumePoint {
    const sinceMs = Math.max(this.floorMs, this.maxMs - this.overlapMs);
    let skip = 0;
    for (const [ms, n] of this.buckets) if (ms >= sinceMs) skip += n;
    return { sinceMs, skip, lastTs: this.lastTs, lastTsMs: this.maxMs };
  }

  private prune(): void {
    const keepFrom = this.maxMs - 2 * this.overlapMs;
    for (const ms of this.buckets.keys()) if (ms < keepFrom) this.buckets.delete(ms);
  }
}

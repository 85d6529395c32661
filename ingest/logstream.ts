/**
 * Turns the byte stream of Docker's logs API (`timestamps=1`) into lines.
 *
 * Non-TTY containers: Docker multiplexes stdout and stderr into frames (8-byte header:
 * stream type, 3 zero bytes, big-endian payload length). Each frame is one log message,
 * `<RFC3339Nano timestamp> <content>`; content ends with `\n` unless Docker cut the line
 * into 16 KiB pieces, in which case the next message of the same stream continues it
 * (see DOCKER_PIECE_BYTES for how a line's end is told).
 * Pieces are re-joined per stream, so stdout and stderr never mix. TTY containers have
 * no frames: the stream is `<timestamp> <content>\n` messages (a TTY line over 16 KiB
 * reaches us as several lines; Docker gives no way to tell its pieces apart there).
 *
 * Lines are capped at `maxLineBytes` (the rest counted, not kept); bytes are kept as
 * printed, and lines that are not clean UTF-8 text are flagged.
 */
import { isUtf8 } from 'node:buffer';
import type { Stream } from '../schemas/events.js';
import type { LogFrameLine } from '../schemas/log-frame.js';

export interface Message {
  stream: Stream;
  /** Docker's timestamp as sent (RFC3339 with nanoseconds). */
  ts: string;
  /** Milliseconds since the epoch, and nanoseconds past that millisecond. */
  tsMs: number;
  tsNanos: number;
  content: Buffer;
}

/**
 * A message as the reader parsed it. Its timestamp and content stay bytes of the buffer
 * it was read from until asked for: the collector's path reads neither as such (the
 * timestamp goes into the event id as bytes, the line is cut from the bytes), so a line
 * costs no timestamp string and no content view (issue 13: per-line allocations).
 * `src` is not changed later (the reader never writes into what it was fed). `ts` and
 * `content` are getters: a spread copy (`{ ...m }`) has neither.
 */
export class RawMessage implements Message {
  constructor(
    readonly stream: Stream,
    readonly tsMs: number,
    readonly tsNanos: number,
    /** The bytes the message is in: its timestamp is `src[tsStart, tsEnd)`, its content `src[tsEnd + 1, end)`. */
    readonly src: Buffer,
    readonly tsStart: number,
    readonly tsEnd: number,
    readonly end: number,
    /**
     * A timestamp in Docker's own form is `${second}.${frac as 9 digits}Z`: its second (one
     * string per second of logs, shared) and fraction, what stamps are compared by. Undefined
     * for any other form (then `ts` is compared as a string).
     */
    readonly second: string | undefined,
    readonly frac: number,
    private tsText?: string,
  ) {}

  get ts(): string {
    return (this.tsText ??= this.src.toString('latin1', this.tsStart, this.tsEnd));
  }

  get content(): Buffer {
    return this.src.subarray(this.tsEnd + 1, this.end);
  }
}

/** An assembled line: what the collector frames (schemas/log-frame.ts, where its fields are described). */
export type Line = LogFrameLine;

const HEADER = 8;
/**
 * Docker cuts longer lines into pieces of exactly this many bytes. A piece without a
 * newline that is shorter ends its line: the `local` log driver sends a split line's
 * last piece without the newline (json-file keeps it), and so does a final line printed
 * without one.
 */
export const DOCKER_PIECE_BYTES = 16 * 1024;
const NEWLINE = 0x0a;
const SPACE = 0x20;
const EMPTY = Buffer.alloc(0);

/**
 * Splits a (possibly multiplexed) logs stream into timestamped messages; chunk boundaries may
 * fall anywhere. A chunk is parsed one message at a time (feed(), then next() until it gives
 * none): a reader that stops mid-chunk (the collector, when the Kafka buffer is full) holds
 * the rest of the chunk as bytes, not as hundreds of parsed messages (issue 19).
 */
export class MessageReader {
  private buf: Buffer = EMPTY;
  /** Where the next message starts in `buf`. */
  private off = 0;
  /** True when `buf` is a copy of our own (a rest), not a chunk we were fed. */
  private owned = true;
  /** The second of the last timestamp in Docker's own form, parsed once per second of logs. */
  private readonly second = new SecondCache();

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
   * rest is kept (copied, so the chunk can be freed). Throws on a malformed stream. The
   * message points into the chunk (as its content always did): use it before the chunk is
   * let go.
   */
  next(): Message | undefined {
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
  push(chunk: Buffer): Message[] {
    this.feed(chunk);
    const out: Message[] = [];
    for (let m = this.next(); m; m = this.next()) out.push(m);
    return out;
  }

  /** Bytes held waiting for the rest of a frame (after next() gave none). */
  get pending(): number {
    return this.buf.length - this.off;
  }

  /** At end of stream: whatever is left as a last message (a TTY line without newline). */
  end(): Message[] {
    if (this.buf.length === this.off) return [];
    const rest = this.buf.subarray(this.off);
    this.buf = EMPTY;
    this.off = 0;
    if (!this.tty) throw new Error(`logs stream ended inside a frame (${rest.length} bytes left)`);
    return [messageAt('stdout', rest, 0, rest.length, this.second)];
  }

  private nextFrame(): Message | undefined {
    const b = this.buf;
    const off = this.off;
    if (b.length - off < HEADER) return undefined;
    const type = b[off]!;
    const size = ((b[off + 4]! << 24) >>> 0) + ((b[off + 5]! << 16) | (b[off + 6]! << 8) | b[off + 7]!);
    if (b.length - off - HEADER < size) return undefined;
    if (type !== 1 && type !== 2) throw new Error(`unexpected stream type ${type} in logs stream (is the container a TTY?)`);
    this.off = off + HEADER + size;
    return messageAt(type === 1 ? 'stdout' : 'stderr', b, off + HEADER, off + HEADER + size, this.second);
  }

  private nextTty(): Message | undefined {
    const b = this.buf;
    const nl = b.indexOf(NEWLINE, this.off);
    if (nl < 0) return undefined;
    const start = this.off;
    this.off = nl + 1;
    return messageAt('stdout', b, start, nl + 1, this.second);
  }
}

/** `<timestamp> <content>` → Message. The content keeps its newline, if any. */
export function parseMessage(stream: Stream, payload: Buffer): Message {
  return messageAt(stream, payload, 0, payload.length, new SecondCache());
}

const DOT = 0x2e;
const ZED = 0x5a;
/** Length of Docker's own timestamp form, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, and of its second, `YYYY-MM-DDTHH:MM:SS`. */
const DOCKER_TS_BYTES = 30;
const SECOND_BYTES = 19;
/** A timestamp is the message's first word, of at most this many bytes. */
const MAX_TS_BYTES = 40;

/**
 * The second (`YYYY-MM-DDTHH:MM:SS`) of the last timestamp in Docker's own form, as bytes, and
 * its instant: consecutive messages mostly share it, so it is parsed once per second of logs.
 */
class SecondCache {
  private readonly bytes = Buffer.alloc(SECOND_BYTES);
  private valid = false;
  /** The second as a string, and its instant. */
  text = '';
  ms = 0;

  /** True when `b` holds this second at `at`. */
  holds(b: Buffer, at: number): boolean {
    if (!this.valid) return false;
    const own = this.bytes;
    // From the end: the seconds' digits are what changes.
    for (let i = SECOND_BYTES - 1; i >= 0; i--) if (b[at + i] !== own[i]) return false;
    return true;
  }

  /** Parses the second at `b[at]` of the Docker timestamp `b[at, at + 30)` (Date.parse, as before); throws if it is none. */
  load(b: Buffer, at: number): void {
    const text = b.toString('latin1', at, at + SECOND_BYTES);
    const base = Date.parse(`${text}Z`);
    if (Number.isNaN(base)) throw new Error(`bad Docker timestamp ${JSON.stringify(b.toString('latin1', at, at + DOCKER_TS_BYTES))}`);
    for (let i = 0; i < SECOND_BYTES; i++) this.bytes[i] = b[at + i]!;
    this.valid = true;
    this.text = text;
    this.ms = base;
  }
}

/** The value of the decimal digits `b[from, to)`, or -1 if one is not a digit. */
function digitsAt(b: Buffer, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/**
 * The message `<timestamp> <content>` of `b[start, end)`, without a string or a Buffer view:
 * Docker's own timestamp form is read digit by digit, its second parsed once per second
 * (issue 13: per-line allocations). Any other RFC 3339 form goes through parseTimestamp.
 */
function messageAt(stream: Stream, b: Buffer, start: number, end: number, second: SecondCache): Message {
  const tsEnd = start + DOCKER_TS_BYTES;
  // Docker's own form in a second seen before: the 19 bytes of that second hold no space, nor do
  // the checked bytes after it, so the space after them is the message's first.
  if (tsEnd < end && b[tsEnd] === SPACE && b[start + SECOND_BYTES] === DOT && b[start + 29] === ZED && second.holds(b, start)) {
    const ms = digitsAt(b, start + 20, start + 23);
    const nanos = digitsAt(b, start + 23, start + 29);
    if (ms >= 0 && nanos >= 0) return new RawMessage(stream, second.ms + ms, nanos, b, start, tsEnd, end, second.text, ms * 1_000_000 + nanos);
  }
  let sp = -1;
  for (let i = start, to = Math.min(end, start + MAX_TS_BYTES + 1); i < to; i++) {
    if (b[i] === SPACE) {
      sp = i;
      break;
    }
  }
  if (sp < 0) throw new Error(`log message without a timestamp: ${JSON.stringify(b.toString('latin1', start, Math.min(end, start + 60)))}`);
  if (sp === tsEnd && b[start + SECOND_BYTES] === DOT && b[start + 29] === ZED) {
    const ms = digitsAt(b, start + 20, start + 23);
    const nanos = digitsAt(b, start + 23, start + 29);
    if (ms >= 0 && nanos >= 0) {
      if (!second.holds(b, start)) second.load(b, start);
      return new RawMessage(stream, second.ms + ms, nanos, b, start, tsEnd, end, second.text, ms * 1_000_000 + nanos);
    }
  }
  const ts = b.toString('latin1', start, sp);
  const t = parseTimestamp(ts);
  return new RawMessage(stream, t.ms, t.nanos, b, start, sp, end, undefined, 0, ts);
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
export function parseTimestamp(ts: string): { ms: number; nanos: number } {
  const fast = dockerTimestampMs(ts);
  if (fast >= 0) return { ms: fast, nanos: fracDigits(ts, 23, 29) };
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) throw new Error(`bad Docker timestamp ${JSON.stringify(ts)}`);
  const frac = (m[2] ?? '').padEnd(9, '0');
  const ms = Date.parse(`${m[1]}.${frac.slice(0, 3)}${m[3]}`);
  if (Number.isNaN(ms)) throw new Error(`bad Docker timestamp ${JSON.stringify(ts)}`);
  return { ms, nanos: Number(frac.slice(3)) };
}

/** Docker's `since` parameter for a millisecond instant. */
export function sinceParam(ms: number): string {
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, '0')}000000`;
}

/**
 * A timestamp kept to compare the next ones with. One in Docker's own form, of a RawMessage,
 * is kept as its second and fraction (no string per line, no bytes copied); any other as its
 * string. Compared as the strings compare: two Docker-form stamps order by their seconds
 * (19 characters, where they differ first) and then by their fractions (9 digits each).
 */
export class LastStamp {
  /** The second and fraction of a Docker-form stamp, or undefined when `text` holds the stamp. */
  private second: string | undefined;
  private frac = 0;
  private text: string | undefined;

  constructor(ts: string) {
    this.text = ts;
  }

  /** The timestamp as a string (made when asked for). */
  get ts(): string {
    return (this.text ??= `${this.second!}.${String(this.frac).padStart(9, '0')}Z`);
  }

  /** True when the timestamp is `ts`. */
  equalsText(ts: string): boolean {
    return ts === this.ts;
  }

  /** Holds `ts` from now on. */
  setText(ts: string): void {
    this.text = ts;
    this.second = undefined;
  }

  /** True when `m`'s timestamp is this one. */
  equals(m: Message): boolean {
    if (this.second === undefined || !(m instanceof RawMessage) || m.second === undefined) return m.ts === this.ts;
    return m.frac === this.frac && m.second === this.second;
  }

  /** True when `m`'s timestamp sorts after this one (`m.ts > ts`). */
  before(m: Message): boolean {
    if (this.second === undefined || !(m instanceof RawMessage) || m.second === undefined) return m.ts > this.ts;
    return m.second === this.second ? m.frac > this.frac : m.second > this.second;
  }

  /** Holds `m`'s timestamp from now on. */
  set(m: Message): void {
    if (m instanceof RawMessage && m.second !== undefined) {
      this.second = m.second;
      this.frac = m.frac;
      this.text = undefined;
    } else this.setText(m.ts);
  }
}

/**
 * An assembled line. A line complete in one piece keeps its timestamp as the bytes it was
 * read as (`tsSource[tsStart, tsEnd)`, the chunk its bytes point into as well): the frame
 * writer hashes them into the event id, and the string is made only if asked for (`ts` is
 * a getter: a spread copy has none).
 */
class AssembledLine implements Line {
  constructor(
    readonly stream: Stream,
    private tsText: string | undefined,
    readonly tsSource: Buffer | undefined,
    readonly tsStart: number,
    readonly tsEnd: number,
    readonly tsMs: number,
    readonly tsNanos: number,
    readonly seq: number,
    readonly bytes: Buffer,
    readonly originalLength: number,
    readonly truncated: boolean,
    readonly invalidUtf8: boolean,
  ) {}

  get ts(): string {
    return (this.tsText ??= this.tsSource!.toString('latin1', this.tsStart, this.tsEnd));
  }
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
export class LineAssembler {
  private readonly partial: Record<Stream, Partial | undefined> = { stdout: undefined, stderr: undefined };
  /** Per stream, the last line's timestamp and how many lines before it had the same (its seq). */
  private readonly last: Record<Stream, { stamp: LastStamp; count: number }> = { stdout: { stamp: new LastStamp(''), count: 0 }, stderr: { stamp: new LastStamp(''), count: 0 } };

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
  push(m: Message): Line | undefined {
    let p = this.partial[m.stream];
    if (!p && m instanceof RawMessage) {
      // The common case, a line complete in one piece, read from the bytes it is in: the same
      // line as below without the unfinished-line state, one Buffer view (its bytes) and no
      // timestamp string (issue 13: per-line allocations). It points into the chunk (it is
      // used before the next chunk is read).
      const src = m.src;
      const from = m.tsEnd + 1;
      const n = m.end - from;
      const newline = n > 0 && src[m.end - 1] === NEWLINE;
      if (newline || n < DOCKER_PIECE_BYTES) {
        const total = newline ? n - 1 : n;
        return this.line(m.stream, undefined, src, m.tsStart, m.tsEnd, m.tsMs, m.tsNanos, this.seq(m), src, from, Math.min(total, Math.max(0, this.maxLineBytes)), total);
      }
    }
    const c = m.content;
    if (!p && ((c.length > 0 && c[c.length - 1] === NEWLINE) || c.length < DOCKER_PIECE_BYTES)) {
      // A line complete in one piece, of a message made elsewhere.
      const end = c.length > 0 && c[c.length - 1] === NEWLINE ? c.length - 1 : c.length;
      return this.line(m.stream, m.ts, undefined, 0, 0, m.tsMs, m.tsNanos, this.seq(m), c, 0, Math.min(end, Math.max(0, this.maxLineBytes)), end);
    }
    if (!p) {
      p = { ts: m.ts, tsMs: m.tsMs, tsNanos: m.tsNanos, parts: [], kept: 0, total: 0 };
      this.partial[m.stream] = p;
    }
    const newline = c.length > 0 && c[c.length - 1] === NEWLINE;
    const complete = newline || c.length < DOCKER_PIECE_BYTES;
    const piece = newline ? c.subarray(0, c.length - 1) : c;
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
  flush(): Line[] {
    const out: Line[] = [];
    for (const s of ['stdout', 'stderr'] as const) {
      const p = this.partial[s];
      if (p) {
        this.partial[s] = undefined;
        out.push(this.finish(s, p));
      }
    }
    return out;
  }

  /** The seq of a line of `m`'s stream stamped as `m` is: how many lines before it had the same stamp. */
  private seq(m: Message): number {
    const last = this.last[m.stream];
    if (last.stamp.equals(m)) return ++last.count;
    last.stamp.set(m);
    last.count = 0;
    return 0;
  }

  /** seq() for a line stamped `ts`. */
  private seqText(stream: Stream, ts: string): number {
    const last = this.last[stream];
    if (last.stamp.equalsText(ts)) return ++last.count;
    last.stamp.setText(ts);
    last.count = 0;
    return 0;
  }

  private finish(stream: Stream, p: Partial): Line {
    const bytes = p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts, p.kept);
    return this.line(stream, p.ts, undefined, 0, 0, p.tsMs, p.tsNanos, this.seqText(stream, p.ts), bytes, 0, bytes.length, p.total);
  }

  /**
   * The line of the `kept` bytes at `b[from]`, of `total` bytes as printed: numbered, flagged. Its
   * timestamp is `ts`, or the bytes it was read as, `tsSource[tsStart, tsEnd)` (no string made).
   */
  private line(stream: Stream, ts: string | undefined, tsSource: Buffer | undefined, tsStart: number, tsEnd: number, tsMs: number, tsNanos: number, seq: number, b: Buffer, from: number, kept: number, total: number): Line {
    // CRLF (TTYs, Windows-style apps): the CR belongs to the line ending.
    if (kept > 0 && kept === total && b[from + kept - 1] === 0x0d) {
      kept -= 1;
      total -= 1;
    }
    const bytes = from === 0 && kept === b.length ? b : b.subarray(from, from + kept);
    const clean = printableAscii(b, from, from + kept) || isCleanText(bytes);
    return new AssembledLine(stream, ts, tsSource, tsStart, tsEnd, tsMs, tsNanos, seq, bytes, total, total > kept, !clean);
  }
}

/**
 * The last buffer printableAscii() read, as 32-bit words (a view, made once per chunk; it keeps
 * that one buffer alive until another is read).
 */
let wordsOf: ArrayBufferLike | undefined;
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);

/**
 * True when every byte of `b[from, to)` is printable ASCII (0x20–0x7e), what most lines are:
 * then isCleanText() is true. Four bytes at a time, the aligned ones as 32-bit words of the
 * buffer's memory (a byte below 0x20 or above 0x7e sets its lane's top bit in one of the two
 * terms), the rest one by one (issue 13: per-line CPU).
 */
export function printableAscii(b: Buffer, from: number, to: number): boolean {
  const base = b.byteOffset;
  let p = base + from;
  const end = base + to;
  if (end - p >= 16) {
    if (b.buffer !== wordsOf) {
      wordsOf = b.buffer;
      words = new Int32Array(b.buffer, 0, b.buffer.byteLength >> 2);
    }
    for (; (p & 3) !== 0; p++) {
      const c = b[p - base]!;
      if (c < 0x20 || c > 0x7e) return false;
    }
    const w = words;
    for (; p + 4 <= end; p += 4) {
      const x = w[p >> 2]!;
      if ((((x - 0x20202020) & ~x) | (x + 0x01010101) | x) & 0x80808080) return false;
    }
  }
  for (; p < end; p++) {
    const c = b[p - base]!;
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Valid UTF-8 without NUL or other control bytes (tab, CR, form feed, vertical tab and
 * ESC for colours allowed), and without U+FFFD: Docker's json-file log driver stores
 * lines as JSON strings and has already replaced invalid bytes with U+FFFD before any
 * reader sees them (the `local` driver keeps the bytes exactly).
 */
export function isCleanText(b: Buffer): boolean {
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

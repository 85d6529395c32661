/**
 * The collector's log events, framed (Confluent header + Avro body) without avsc's generic
 * writer (issue 13: per-line CPU). The bytes are exactly `codec.encode('logs', event)`'s:
 * `test/log-frame.test.ts` compares the two for arbitrary lines, containers and labels.
 *
 * Per container, the fields that never change (tenant, app, node, container id and name,
 * tty, log format) are encoded once, by avsc itself (each with its field's own type). Per
 * line only the event id, the timestamp, sequence, stream, the line's bytes, its length
 * and two flags are written, into a buffer of the exact size cut from a shared slab (one
 * allocation per 64 KiB of frames instead of one per line, and no scratch copy).
 *
 * The event id is `eventId(containerId, stream, ts, seq)` (lib/event-id.ts), written as
 * its 32 hex digits straight into the frame. When the line carries its timestamp as bytes
 * (`tsSource`), the hash's input is put together as bytes in a buffer of the writer's (the
 * same bytes as the joined string's UTF-8, which is what `hash` hashes of a string) and
 * hashed through a view of it kept per length: no string and no Buffer per line (issue 13).
 * Values avsc would refuse (a seq or nanosecond count outside int32, a long outside
 * ±(2^53 − 2)) go through `codec.encode`, which throws its usual error. When the writer
 * schema of `logs` is not the shape this writer knows, every event goes through
 * `codec.encode`.
 */
import { hash } from 'node:crypto';
import type avro from 'avsc';
import { HEADER_BYTES, MAGIC_BYTE, type AvroCodec } from './codec.js';
import type { LogLine, Stream } from './events.js';

/** What stays the same for every line of one container. */
export interface LogFrameConstants {
  tenant: string;
  app: string;
  node: string;
  containerId: string;
  containerName: string;
  tty: boolean;
  logFormat: string | null;
}

/** What changes per line: a line as the collector assembled it (ingest/logstream.ts `Line`). */
export interface LogFrameLine {
  stream: Stream;
  /** Docker's timestamp of the line's first piece, as sent: part of the event id. */
  ts: string;
  /**
   * Optional: `ts` as the bytes it was read as, `tsSource[tsStart, tsEnd)` (latin1, one
   * character per byte). When given, the event id is hashed from these bytes and `ts` is not
   * read (issue 13: no timestamp string per line).
   */
  tsSource?: Buffer | undefined;
  tsStart?: number;
  tsEnd?: number;
  tsMs: number;
  tsNanos: number;
  /** Index among this stream's lines with the same timestamp (Docker stamps one read's lines alike). */
  seq: number;
  /** The line without its newline, at most the cap. */
  bytes: Buffer;
  originalLength: number;
  truncated: boolean;
  invalidUtf8: boolean;
}

/**
 * Frames are cut from slabs of this size, shared by every writer of the thread (as Node's own
 * 8 KiB pool is): a quiet container does not keep a slab of its own (200 containers would hold
 * 12.5 MiB). A slab lives while any of its frames is referenced (waiting for Kafka). A bigger
 * frame gets a buffer of its own.
 */
const SLAB_BYTES = 64 * 1024;
const OWN_BUFFER_BYTES = 8 * 1024;
let slab = Buffer.allocUnsafe(0);
let slabUsed = 0;

/** `size` bytes for one frame (contents undefined). */
function allocFrame(size: number): Buffer {
  if (size > OWN_BUFFER_BYTES) return Buffer.allocUnsafe(size);
  if (slabUsed + size > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += size;
  return out;
}
/** The event id: 32 hex digits, so its Avro length prefix is one byte (zigzag 64). */
const ID_CHARS = 32;
const ID_LENGTH_BYTE = ID_CHARS << 1;

/** The fields of io.logmeter.LogLine in schema order, and the Avro type of each one written per line. */
const LAYOUT: ReadonlyArray<readonly [string, string | undefined]> = [
  ['event_id', 'string'],
  ['tenant', undefined],
  ['app', undefined],
  ['node', undefined],
  ['container_id', undefined],
  ['container_name', undefined],
  ['ts', 'long'],
  ['ts_nanos', 'int'],
  ['seq', 'int'],
  ['stream', 'enum'],
  ['tty', undefined],
  ['line', 'bytes'],
  ['original_length', 'long'],
  ['truncated', 'boolean'],
  ['invalid_utf8', 'boolean'],
  ['log_format', undefined],
];

interface RecordField {
  name: string;
  type: avro.Type & { typeName: string; symbols?: string[] };
}

/** The record's fields when the schema has exactly the layout this writer writes, else undefined. */
function knownFields(type: avro.Type): RecordField[] | undefined {
  const fields = (type as unknown as { fields?: RecordField[] }).fields;
  if (!fields || fields.length !== LAYOUT.length) return undefined;
  for (let i = 0; i < LAYOUT.length; i++) {
    const [name, typeName] = LAYOUT[i]!;
    const f = fields[i]!;
    if (f.name !== name || (typeName !== undefined && f.type.typeName !== typeName)) return undefined;
  }
  const symbols = fields[9]!.type.symbols;
  if (!symbols || symbols.length !== 2 || symbols[0] !== 'stdout' || symbols[1] !== 'stderr') return undefined;
  return fields;
}

/** Bytes of avsc's zigzag varint of the long `n` (a safe integer): compares, not a division per 7 bits. */
function longBytes(n: number): number {
  const f = n >= 0 ? n * 2 : -n * 2 - 1;
  if (f < 0x80) return 1;
  if (f < 0x4000) return 2;
  if (f < 0x200000) return 3;
  if (f < 0x10000000) return 4;
  if (f < 2 ** 35) return 5;
  if (f < 2 ** 42) return 6;
  if (f < 2 ** 49) return 7;
  return f < 2 ** 56 ? 8 : 9;
}

/** avsc's `Tap.writeLong`: the zigzag varint of `n` at `pos`; returns the position after it. */
function writeLong(buf: Buffer, pos: number, n: number): number {
  if (n >= -1073741824 && n < 1073741824) {
    let m = n >= 0 ? n << 1 : (~n << 1) | 1;
    while (m > 0x7f) {
      buf[pos++] = (m & 0x7f) | 0x80;
      m >>= 7;
    }
    buf[pos++] = m;
    return pos;
  }
  let f = n >= 0 ? n * 2 : -n * 2 - 1;
  while (f >= 128) {
    buf[pos++] = (f & 0x7f) | 0x80;
    f /= 128;
  }
  buf[pos++] = f & 0x7f;
  return pos;
}

/** Writes `b` into `out` at `pos`; returns the position after it. A few bytes by a loop, more by TypedArray#set. */
function put(out: Buffer, pos: number, b: Buffer): number {
  const n = b.length;
  if (n > 8) out.set(b, pos);
  else for (let i = 0; i < n; i++) out[pos + i] = b[i]!;
  return pos + n;
}

const isInt = (n: number) => n === (n | 0);
/** avsc's range for longs (its `isSafeLong`): one short of Number's safe integers at each end. */
const isLong = (n: number) => Math.floor(n) === n && n >= -9007199254740990 && n <= 9007199254740990;

/**
 * The event id's input `${containerId}\0${stream}\0${ts}\0${seq}\0` as bytes, for one container
 * and stream: the prefix written once, the timestamp's bytes and the seq's digits per line.
 */
class IdInput {
  /** Views of `buf` from its start, by length, made once each (a dense array: no dictionary lookup). */
  private readonly views: Array<Buffer | undefined>;

  private constructor(
    private readonly buf: Buffer,
    private readonly prefixBytes: number,
  ) {
    this.views = new Array<Buffer | undefined>(buf.length + 1).fill(undefined);
  }

  /** For `prefix`, or undefined when its UTF-8 would not be what `hash` hashes (lone surrogates). */
  static of(prefix: string): IdInput | undefined {
    const bytes = Buffer.from(prefix, 'utf8');
    if (bytes.toString('utf8') !== prefix) return undefined;
    // The timestamp (at most 40 bytes, as the reader takes it; longer ones go as strings), the seq's digits and two NULs.
    const buf = Buffer.alloc(bytes.length + 40 + 1 + 16 + 1);
    bytes.copy(buf);
    return new IdInput(buf, bytes.length);
  }

  /**
   * The input with the timestamp `src[start, end)` and `seq`, or undefined when these cannot go
   * as bytes (a byte that is not ASCII: the string's UTF-8 would differ; a seq that is not a
   * small natural number; a longer timestamp).
   */
  with(src: Buffer, start: number, end: number, seq: number): Buffer | undefined {
    if (end - start > 40 || !(seq >= 0 && seq <= 0x7fffffff && seq === (seq | 0))) return undefined;
    const buf = this.buf;
    let n = this.prefixBytes;
    let high = 0;
    for (let i = start; i < end; i++) {
      const c = src[i]!;
      high |= c;
      buf[n++] = c;
    }
    if (high >= 0x80) return undefined;
    buf[n++] = 0;
    if (seq < 10) buf[n++] = 0x30 + seq;
    else {
      const digits = seq < 100 ? 2 : seq < 1000 ? 3 : String(seq).length;
      for (let i = n + digits - 1, v = seq; i >= n; i--, v = Math.floor(v / 10)) buf[i] = 0x30 + (v % 10);
      n += digits;
    }
    buf[n++] = 0;
    return (this.views[n] ??= buf.subarray(0, n));
  }
}

/** Frames one container's log lines as `logs` events. */
export class LogFrameWriter {
  private readonly header: Buffer;
  /** tenant, app, node, container_id, container_name as avsc writes them. */
  private readonly middle: Buffer;
  private readonly tty: Buffer;
  private readonly logFormat: Buffer;
  /** `${containerId}\0${stream}\0`: the start of the event id's input. */
  private readonly idPrefixStdout: string;
  private readonly idPrefixStderr: string;
  /** The event id's input put together as bytes, per stream (prefix written once); undefined when the prefix is not plain UTF-8 (then the string is hashed). */
  private readonly idInputStdout: IdInput | undefined;
  private readonly idInputStderr: IdInput | undefined;
  /** False when the schema is not the known layout: every event goes through the codec. */
  private readonly fused: boolean;
  /** Bytes of every frame apart from the varints and the line: header, id, constants, stream and flags. */
  private readonly fixedBytes: number;

  constructor(
    private readonly codec: AvroCodec,
    private readonly c: LogFrameConstants,
  ) {
    const fields = knownFields(codec.readerType('logs'));
    this.fused = fields !== undefined;
    const enc = (i: number, v: unknown) => (fields ? fields[i]!.type.toBuffer(v) : Buffer.alloc(0));
    this.header = Buffer.alloc(HEADER_BYTES);
    this.header[0] = MAGIC_BYTE;
    this.header.writeUInt32BE(codec.writerId('logs'), 1);
    this.middle = Buffer.concat([enc(1, c.tenant), enc(2, c.app), enc(3, c.node), enc(4, c.containerId), enc(5, c.containerName)]);
    this.tty = enc(10, c.tty);
    this.logFormat = enc(15, c.logFormat);
    this.fixedBytes = HEADER_BYTES + 1 + ID_CHARS + this.middle.length + 1 + this.tty.length + 2 + this.logFormat.length;
    this.idPrefixStdout = `${c.containerId}\0stdout\0`;
    this.idPrefixStderr = `${c.containerId}\0stderr\0`;
    this.idInputStdout = IdInput.of(this.idPrefixStdout);
    this.idInputStderr = IdInput.of(this.idPrefixStderr);
  }

  /** The framed `logs` event of `line`: the bytes `codec.encode('logs', …)` gives for it. */
  frame(line: LogFrameLine): Buffer {
    const { tsMs, tsNanos, seq, bytes, originalLength } = line;
    if (!this.fused || !isLong(tsMs) || !isLong(originalLength) || !isInt(tsNanos) || !isInt(seq)) return this.viaCodec(line);
    const len = bytes.length;
    const size = this.fixedBytes + longBytes(tsMs) + longBytes(tsNanos) + longBytes(seq) + longBytes(len) + len + longBytes(originalLength);
    const out = allocFrame(size);
    // TypedArray#set, not Buffer#copy: no call into Node's binding for a few bytes (and a loop for fewer).
    let pos = put(out, 0, this.header);
    out[pos++] = ID_LENGTH_BYTE;
    const stderr = line.stream === 'stderr';
    const src = line.tsSource;
    const input = src === undefined ? undefined : stderr ? this.idInputStderr : this.idInputStdout;
    const idBytes = input?.with(src!, line.tsStart!, line.tsEnd!, seq);
    const id = hash('sha256', idBytes ?? `${stderr ? this.idPrefixStderr : this.idPrefixStdout}${line.ts}\0${seq}\0`, 'hex');
    // The first 32 hex digits, one byte each: a loop costs less than Buffer#write's call into the binding.
    for (let i = 0; i < ID_CHARS; i++) out[pos + i] = id.charCodeAt(i);
    pos += ID_CHARS;
    out.set(this.middle, pos);
    pos += this.middle.length;
    pos = writeLong(out, pos, tsMs);
    pos = writeLong(out, pos, tsNanos);
    pos = writeLong(out, pos, seq);
    out[pos++] = stderr ? 2 : 0;
    pos = put(out, pos, this.tty);
    pos = writeLong(out, pos, len);
    out.set(bytes, pos);
    pos += len;
    pos = writeLong(out, pos, originalLength);
    out[pos++] = line.truncated ? 1 : 0;
    out[pos++] = line.invalidUtf8 ? 1 : 0;
    put(out, pos, this.logFormat);
    return out;
  }

  /** The event as the codec sees it (the fallback, and what the frame must equal). */
  event(line: LogFrameLine, eventId: string): LogLine {
    const c = this.c;
    return {
      event_id: eventId,
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
    };
  }

  private viaCodec(line: LogFrameLine): Buffer {
    const prefix = line.stream === 'stderr' ? this.idPrefixStderr : this.idPrefixStdout;
    const id = hash('sha256', `${prefix}${line.ts}\0${line.seq}\0`, 'hex').slice(0, ID_CHARS);
    return this.codec.encode('logs', this.event(line, id));
  }
}

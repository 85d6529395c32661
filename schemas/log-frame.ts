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
 * its 32 hex digits straight into the frame. Values avsc would refuse (a seq or
 * nanosecond count outside int32, a long outside ±(2^53 − 2)) go through
 * `codec.encode`, which throws its usual error. When the writer schema of `logs` is not
 * the shape this writer knows, every event goes through `codec.encode`.
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

/** Bytes of avsc's zigzag varint of the long `n` (a safe integer). */
function longBytes(n: number): number {
  let f = n >= 0 ? n * 2 : -n * 2 - 1;
  let k = 1;
  while (f >= 128) {
    f = Math.floor(f / 128);
    k++;
  }
  return k;
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

const isInt = (n: number) => n === (n | 0);
/** avsc's range for longs (its `isSafeLong`): one short of Number's safe integers at each end. */
const isLong = (n: number) => n % 1 === 0 && n >= -9007199254740990 && n <= 9007199254740990;

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
  /** False when the schema is not the known layout: every event goes through the codec. */
  private readonly fused: boolean;

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
    this.idPrefixStdout = `${c.containerId}\0stdout\0`;
    this.idPrefixStderr = `${c.containerId}\0stderr\0`;
  }

  /** The framed `logs` event of `line`: the bytes `codec.encode('logs', …)` gives for it. */
  frame(line: LogFrameLine): Buffer {
    const { tsMs, tsNanos, seq, bytes, originalLength } = line;
    if (!this.fused || !isLong(tsMs) || !isLong(originalLength) || !isInt(tsNanos) || !isInt(seq)) return this.viaCodec(line);
    const len = bytes.length;
    const size =
      HEADER_BYTES +
      1 +
      ID_CHARS +
      this.middle.length +
      longBytes(tsMs) +
      longBytes(tsNanos) +
      longBytes(seq) +
      1 +
      this.tty.length +
      longBytes(len) +
      len +
      longBytes(originalLength) +
      2 +
      this.logFormat.length;
    const out = allocFrame(size);
    // TypedArray#set, not Buffer#copy: no call into Node's binding for a few bytes.
    out.set(this.header, 0);
    let pos = HEADER_BYTES;
    out[pos++] = ID_LENGTH_BYTE;
    const prefix = line.stream === 'stderr' ? this.idPrefixStderr : this.idPrefixStdout;
    out.write(hash('sha256', `${prefix}${line.ts}\0${seq}\0`, 'hex'), pos, ID_CHARS, 'latin1');
    pos += ID_CHARS;
    out.set(this.middle, pos);
    pos += this.middle.length;
    pos = writeLong(out, pos, tsMs);
    pos = writeLong(out, pos, tsNanos);
    pos = writeLong(out, pos, seq);
    out[pos++] = line.stream === 'stderr' ? 2 : 0;
    out.set(this.tty, pos);
    pos += this.tty.length;
    pos = writeLong(out, pos, len);
    out.set(bytes, pos);
    pos += len;
    pos = writeLong(out, pos, originalLength);
    out[pos++] = line.truncated ? 1 : 0;
    out[pos++] = line.invalidUtf8 ? 1 : 0;
    out.set(this.logFormat, pos);
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

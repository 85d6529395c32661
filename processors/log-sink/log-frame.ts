/**
 * The log sink's logs path in embedded mode, without decoding each event into an object
 * (issue 13): a precompiled reader of the Avro log schema (schemas/avro/logs.v1.avsc)
 * checks each frame once as it is consumed (`logFrameDecoder`, the bus's
 * `SubscribeOptions.decode`) and keeps the frame's place (in the fetched batch's memory)
 * with its tenant (the fair batcher's lane); at the insert the same reader writes its fields straight from the frame's bytes
 * into the binary columns (`SINK_LOG_COLUMNAR`): no event object, no strings for the
 * byte columns, only the tenant's (and, for a line with an access-log format, the line's,
 * to classify it).
 *
 * Same values as `codec.decode` then `LOG_COLUMNAR.write` (rows.ts), for every column
 * (test/sink-log-frame.test.ts). The reader takes only the frames it reads exactly as avsc
 * does: written with the schema id this process writes logs with, every length and value
 * within the frame and ending at its end, valid UTF-8 in every string, longs that avsc
 * takes (below 2^53 - 1 in magnitude), known enum and union indexes. Any other frame goes through
 * `codec.decode` as before: read into an event (an older schema resolved), or refused
 * with the codec's DecodeError and reason (dead-lettered by the bus).
 */
import { isUtf8 } from 'node:buffer';
import type { PayloadDecoder } from '../../lib/bus/bus.js';
import type { ColumnarEncoder, ColumnarWriter } from '../../lib/clickhouse/columnar.js';
import { HEADER_BYTES, MAGIC_BYTE, type AvroCodec } from '../../schemas/codec.js';
import type { LogLine } from '../../schemas/events.js';
import { isAccessLogFormat, parseAccessLine } from '../access-log/parse.js';
import { LOG_COLUMNAR } from './rows.js';

/**
 * A log event on the sink's logs path: where its checked frame is, or the event the codec read.
 *
 * A frame is kept as its place in the fetched batch's memory (`memory[start, end)`), not as
 * a Buffer of it: the rows wait for their insert for hundreds of milliseconds, long enough for
 * the young-generation GC to copy and promote whatever they hold, and a Buffer (a typed array
 * object) is ~3 × the size of this row's own fields. The view the bus made of the frame dies
 * young; the memory is the same the view would have kept alive (BENCHMARKS.md "Log sink: CPU per row").
 */
export type SinkLog =
  | { readonly tenant: string; readonly memory: ArrayBufferLike; readonly start: number; readonly end: number; readonly event?: undefined }
  | { readonly tenant: string; readonly event: LogLine; readonly memory?: undefined };

/** The fields (name:type) the reader is compiled for, in order: logs.v1. */
export const LOG_FRAME_FIELDS =
  'event_id:string tenant:string app:string node:string container_id:string container_name:string ts:long ts_nanos:int seq:int stream:enum(stdout,stderr) tty:boolean line:bytes original_length:long truncated:boolean invalid_utf8:boolean log_format:union(null,string)';

/** The field list of an avsc record type in LOG_FRAME_FIELDS' notation. */
export function fieldSignature(type: { fields?: Array<{ name: string; type: AvroTypeLike }> }): string {
  return (type.fields ?? []).map((f) => `${f.name}:${typeSignature(f.type)}`).join(' ');
}
interface AvroTypeLike {
  typeName: string;
  symbols?: string[];
  types?: AvroTypeLike[];
}
function typeSignature(t: AvroTypeLike): string {
  if (t.typeName === 'enum') return `enum(${(t.symbols ?? []).join(',')})`;
  if (t.typeName.startsWith('union')) return `union(${(t.types ?? []).map(typeSignature).join(',')})`;
  return t.typeName;
}

const STDOUT = Buffer.from('stdout');
const STDERR = Buffer.from('stderr');
const EMPTY = Buffer.alloc(0);
const ACCESS = Buffer.from('access');
const DEBUG = Buffer.from('debug');

/**
 * The string of the bytes read last in a field, kept with a copy of them: the next frame's
 * field is compared byte for byte and, the same, gets the same string. A packed record's
 * frames are one container's, so a tenant or log format is the same frame after frame: no
 * new string per row (the tenant's lives with its row until the insert), no decoding.
 * For bytes already checked to be valid UTF-8: the same bytes, the same string.
 */
class LastString {
  private bytes: Buffer = Buffer.alloc(0);
  private value = '';

  of(b: Buffer, start: number, end: number): string {
    const n = end - start;
    const last = this.bytes;
    if (n === last.length) {
      let i = 0;
      while (i < n && b[start + i] === last[i]) i++;
      if (i === n) return this.value;
    }
    this.value = b.toString('utf8', start, end);
    // A copy, not a view: a view would keep the whole fetched batch alive.
    this.bytes = Buffer.from(b.subarray(start, end));
    return this.value;
  }
}

const lastTenant = new LastString();
const lastFormat = new LastString();

/** A long avsc reads (its LongType refuses any other: 'potential precision loss'). */
function safeLong(n: number): boolean {
  return n >= -9007199254740990 && n <= 9007199254740990;
}

/** The position after the last `varint` read. */
let at = 0;

/**
 * Avro's zigzag varint at `p` (avsc's Tap.readLong, same arithmetic), `NaN` when it runs
 * past `end`; sets `at` after it.
 */
function varint(b: Buffer, p: number, end: number): number {
  let n = 0;
  let k = 0;
  let x: number;
  do {
    if (p >= end) return NaN;
    x = b[p++]!;
    n |= (x & 0x7f) << k;
    k += 7;
  } while (x & 0x80 && k < 28);
  if (x & 0x80) {
    let f = n;
    let fk = 268435456;
    do {
      if (p >= end || fk > 2 ** 70) return NaN;
      x = b[p++]!;
      f += (x & 0x7f) * fk;
      fk *= 128;
    } while (x & 0x80);
    at = p;
    return (f % 2 ? -(f + 1) : f) / 2;
  }
  at = p;
  return (n >> 1) ^ -(n & 1);
}

/** Whether b[s, e) is valid UTF-8 (what avsc's string decoding gives back byte for byte). */
function utf8(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i]! >= 0x80) return isUtf8(b.subarray(i, e));
  return true;
}

/** A string field at `p`: its end, or -1 (past the frame, a negative length; not checked for UTF-8); its bytes start at `at`. */
function str(b: Buffer, p: number, end: number): number {
  const n = varint(b, p, end);
  if (!(n >= 0) || at + n > end) return -1;
  return at + n;
}

/**
 * Checks a frame (header included) field by field as this reader reads it; its tenant, or
 * undefined when only the codec can tell (see the header).
 */
export function checkLogFrame(b: Buffer): string | undefined {
  const end = b.length;
  let p = HEADER_BYTES;
  let tenant = '';
  for (let f = 0; f < 6; f++) {
    const e = str(b, p, end);
    if (e < 0 || !utf8(b, at, e)) return undefined;
    if (f === 1) tenant = lastTenant.of(b, at, e);
    p = e;
  }
  if (!safeLong(varint(b, p, end))) return undefined; // ts
  if (!Number.isSafeInteger(varint(b, at, end))) return undefined; // ts_nanos
  if (!Number.isSafeInteger(varint(b, at, end))) return undefined; // seq
  const stream = varint(b, at, end);
  if (stream !== 0 && stream !== 1) return undefined;
  p = at + 1; // tty
  const line = p < end ? varint(b, p, end) : NaN;
  if (!(line >= 0) || at + line > end) return undefined;
  if (!safeLong(varint(b, at + line, end))) return undefined; // original_length
  p = at; // truncated, invalid_utf8
  const union = p + 2 < end ? varint(b, p + 2, end) : NaN;
  if (!(union === 0 || union === 1)) return undefined;
  p = at;
  if (union === 1) {
    p = str(b, p, end);
    if (p >= 0 && !utf8(b, at, p)) return undefined;
  }
  return p === end ? tenant : undefined;
}

/** The classification of rows.ts' logKind, from the frame's bytes. */
function kindOf(b: Buffer, fmtStart: number, fmtEnd: number, lineStart: number, lineEnd: number): Buffer {
  const format = lastFormat.of(b, fmtStart, fmtEnd);
  return isAccessLogFormat(format) && parseAccessLine(format, b.toString('utf8', lineStart, lineEnd)).ok ? ACCESS : DEBUG;
}

/** Writes the row of a frame `checkLogFrame` took (`b[start, end)`), straight from its bytes (LOG_COLUMNAR's columns). */
export function writeLogFrame(b: Buffer, w: ColumnarWriter, start = 0, end = b.length): void {
  let p = start + HEADER_BYTES;
  for (let col = 0; col < 6; col++) {
    const n = varint(b, p, end);
    w.bytesOf(col, b, at, at + n);
    p = at + n;
  }
  w.ms(6, varint(b, p, end));
  w.u32(7, varint(b, at, end));
  w.u32(8, varint(b, at, end));
  w.bytes(9, varint(b, at, end) === 0 ? STDOUT : STDERR);
  p = at;
  w.bool(10, b[p++] !== 0);
  const lineLength = varint(b, p, end);
  const lineStart = at;
  const lineEnd = at + lineLength;
  w.bytesOf(11, b, lineStart, lineEnd);
  w.u64(12, varint(b, lineEnd, end));
  p = at;
  w.bool(13, b[p] !== 0).bool(14, b[p + 1] !== 0);
  if (varint(b, p + 2, end) === 0) {
    w.bytes(15, EMPTY).bytes(16, DEBUG);
  } else {
    const n = varint(b, at, end);
    w.bytesOf(15, b, at, at + n).bytes(16, kindOf(b, at, at + n, lineStart, lineEnd));
  }
  w.endRow();
}

/**
 * The logs subscription's decoding (bus.ts `SubscribeOptions.decode`): a frame this reader
 * reads is kept as it is, with its tenant; any other goes through `codec.decode` (an
 * event, or a DecodeError with the codec's reason). The row holds the frame's place in the
 * fetched batch's memory until its insert (see SinkLog).
 */
export function logFrameDecoder(codec: AvroCodec): PayloadDecoder<'logs', SinkLog> {
  const writerId = codec.writerId('logs');
  // A reader schema other than the one compiled for (a new version): every frame through the codec.
  const fast = fieldSignature(codec.readerType('logs') as unknown as { fields: Array<{ name: string; type: AvroTypeLike }> }) === LOG_FRAME_FIELDS;
  return (topic, payload) => {
    if (fast && payload !== null && payload.length > HEADER_BYTES && payload[0] === MAGIC_BYTE && payload.readUInt32BE(1) === writerId) {
      const tenant = checkLogFrame(payload);
      if (tenant !== undefined) return { tenant, memory: payload.buffer, start: payload.byteOffset, end: payload.byteOffset + payload.length };
    }
    const event = codec.decode(topic, payload);
    return { tenant: event.tenant, event };
  };
}

/**
 * A Buffer over the whole of `memory`, the last one made kept for the next row: an insert's
 * rows come in runs of one fetched batch. Holds at most one batch's memory past its insert.
 */
let lastMemory: ArrayBufferLike | undefined;
let lastView: Buffer = Buffer.alloc(0);
function viewOf(memory: ArrayBufferLike): Buffer {
  if (memory !== lastMemory) {
    lastView = Buffer.from(memory);
    lastMemory = memory;
  }
  return lastView;
}

/** A row's frame as a Buffer of its own (tests, taps; the insert reads it in place). */
export function frameOf(row: SinkLog): Buffer | undefined {
  return row.memory === undefined ? undefined : Buffer.from(row.memory, row.start, row.end - row.start);
}

/** The logs insert of the sink's rows in embedded mode: a frame straight from its bytes, an event as LOG_COLUMNAR writes it. */
export const SINK_LOG_COLUMNAR: ColumnarEncoder<SinkLog> = {
  columns: LOG_COLUMNAR.columns,
  write(row: SinkLog, w: ColumnarWriter): void {
    if (row.memory !== undefined) writeLogFrame(viewOf(row.memory), w, row.start, row.end);
    else LOG_COLUMNAR.write(row.event, w);
  },
};

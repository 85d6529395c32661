/**
 * Packed records (issue 13): several messages of one key in one Kafka record, so the
 * collector pays the Kafka client's per-record cost (kafkajs: an object spread and a
 * zero-filled 512-byte encoder per record, request encoding, GC) once per ~300 log lines
 * instead of once per line. The event model is unchanged: each message stays one Avro
 * frame with its own event id; only the transport groups them.
 *
 * Format of a packed record's value (v1):
 *
 *     "LMPK" 0x01 | count (unsigned LEB128 varint, ≥ 1) | count × ( length (varint) | frame bytes )
 *
 * Marked by that 5-byte prefix, not by a record header: every logmeter frame starts with
 * 0x00 (Confluent framing, schemas/codec.ts), so a value starting with 0x4C ("L") can never
 * be a frame, and a reader that does not know packs fails loudly on it (bad magic byte)
 * instead of misreading it. The mark travels with the value where headers do not: a dead
 * letter keeps only key and payload, and `kcat -f '%s'` prints only the value. The key,
 * partition, offset and timestamp of every message of a record are the record's.
 *
 * The producer packs (`packRecords`) when a publish asks for it (`RawBatch.pack`); the
 * consumer side expands (`expandRecords`) before anything is decoded (delivery.ts), so
 * handlers see the messages one by one as before. Pure.
 */
import { LogmeterError } from '../errors.js';
import type { RawMessage } from './bus.js';

/** The prefix of a packed record's value: "LMPK" and the format version 1. */
export const PACK_MAGIC: Buffer = Buffer.from([0x4c, 0x4d, 0x50, 0x4b, 0x01]);

/**
 * Most bytes of frames (with their length prefixes) in one packed record: 64 KiB, ~330
 * log events of 120 B lines. Far below the broker's 1 MiB per record batch, and the
 * collector's 512 KiB batch still spreads over several records per container.
 */
export const PACK_MAX_BYTES = 64 * 1024;

/** Most frames in one packed record (a delivery part holds 5,000 messages: ten records at least). */
export const PACK_MAX_FRAMES = 500;

/** A packed record that cannot be read (truncated, a length past its end, trailing bytes). */
export class PackError extends LogmeterError {
  constructor(message: string) {
    super('pack_invalid', message, { retriable: false });
  }
}

/** Whether `value` is a packed record (starts with PACK_MAGIC). */
export function isPacked(value: Buffer | null | undefined): value is Buffer {
  return (
    value !== null &&
    value !== undefined &&
    value.length >= PACK_MAGIC.length &&
    value[0] === 0x4c &&
    value[1] === 0x4d &&
    value[2] === 0x50 &&
    value[3] === 0x4b &&
    value[4] === 0x01
  );
}

function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

/** Reads a varint at `pos`: [value, next position]; throws PackError past the end or beyond 2^31. */
function readVarint(buf: Buffer, pos: number): [number, number] {
  let n = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (pos >= buf.length) throw new PackError(`packed record truncated: a length runs past its end (${buf.length} bytes)`);
    const b = buf[pos++]!;
    n += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) {
      if (n > 0x7fffffff) throw new PackError(`packed record: a length of ${n} bytes`);
      return [n, pos];
    }
  }
  throw new PackError('packed record: a length of more than 5 bytes');
}

/** One packed record's value holding `frames`, in order. */
export function packFrames(frames: readonly Buffer[]): Buffer {
  return new PackedFrames(frames).toBuffer();
}

/**
 * A packed record's value not yet copied together: its frames and its length as packFrames()
 * would give it. The producer's request encoder (kafkajs-encoding.ts) writes it straight into
 * the batch it compresses, so the frames are copied once instead of twice (issue 13: Buffer
 * garbage at full speed). Only that encoder knows it: anything else that would read it as a
 * string (an older produce request version's encoder) fails loudly instead of sending its
 * text.
 */
export class PackedFrames {
  /** Bytes of the packed value. */
  readonly length: number;

  constructor(readonly frames: readonly Buffer[]) {
    let size = PACK_MAGIC.length + varintBytes(frames.length);
    for (const f of frames) size += varintBytes(f.length) + f.length;
    this.length = size;
  }

  /** Writes the packed value into `buf` at `pos` (room for `length` bytes); returns the position after it. */
  writeTo(buf: Buffer, pos: number): number {
    PACK_MAGIC.copy(buf, pos);
    pos = writeVarint(buf, pos + PACK_MAGIC.length, this.frames.length);
    for (const f of this.frames) {
      pos = writeVarint(buf, pos, f.length);
      pos += f.copy(buf, pos);
    }
    return pos;
  }

  /** The packed value as one Buffer (what packFrames gives). */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.writeTo(out, 0);
    return out;
  }

  toString(): string {
    throw new Error('a packed record value is written by logmeter\'s produce request encoder only (Kafka produce request v3 or later)');
  }
}

/** How many messages a record holds: a packed record's count (its first varint), 1 for any other (and for one too broken to say). */
export function framesIn(value: Buffer | null): number {
  if (!isPacked(value)) return 1;
  try {
    const [count] = readVarint(value, PACK_MAGIC.length);
    return Math.max(1, count);
  } catch {
    return 1;
  }
}

/**
 * The frames of a packed record, in order: views into `value`, nothing copied. Throws
 * PackError unless `value` is exactly a valid pack (at least one frame, every length
 * within the value, nothing after the last frame).
 */
export function unpack(value: Buffer): Buffer[] {
  if (!isPacked(value)) throw new PackError('not a packed record (no LMPK v1 prefix)');
  const [count, start] = readVarint(value, PACK_MAGIC.length);
  let pos = start;
  if (count < 1) throw new PackError('packed record of no frames');
  // Each frame takes one byte of length at least: a count beyond that is a broken record.
  if (count > value.length - pos) throw new PackError(`packed record says ${count} frames in ${value.length - pos} bytes`);
  const frames: Buffer[] = new Array<Buffer>(count);
  for (let i = 0; i < count; i++) {
    let len: number;
    // A frame's length is one or two bytes (below 16 KiB): read here, not through readVarint's pair.
    const b0 = value[pos];
    const b1 = value[pos + 1];
    if (b0 !== undefined && b0 < 0x80) {
      len = b0;
      pos += 1;
    } else if (b0 !== undefined && b1 !== undefined && b1 < 0x80) {
      len = (b0 & 0x7f) | (b1 << 7);
      pos += 2;
    } else [len, pos] = readVarint(value, pos);
    if (pos + len > value.length) throw new PackError(`packed record truncated: frame ${i + 1} of ${count} needs ${len} bytes, ${value.length - pos} left`);
    frames[i] = value.subarray(pos, pos + len);
    pos += len;
  }
  if (pos !== value.length) throw new PackError(`packed record: ${value.length - pos} bytes after its last frame`);
  return frames;
}

interface Group {
  key: string | Buffer;
  timestamp: number | undefined;
  messages: RawMessage[];
  /** Bytes of the frames with their length prefixes. */
  bytes: number;
}

/**
 * The records that carry `messages` to one topic: the messages of each key packed
 * together in their order, up to `maxBytes` of frames and `maxFrames` frames per record.
 * A record holds messages of one key (so one partition) and one timestamp; it sits where
 * its first message was, so each key's messages keep their order and every message is in
 * exactly one record (the order of different keys sharing a partition may change within
 * the publish). A message with no key or no value (a tombstone), or alone for its key, or
 * over `maxBytes` alone, goes as it is (the same object).
 */
export function packRecords(messages: readonly RawMessage[], maxBytes = PACK_MAX_BYTES, maxFrames = PACK_MAX_FRAMES): RawMessage[] {
  return packRecordsAs(messages, maxBytes, maxFrames, packFrames);
}

/** A record whose value may be PackedFrames: what the kafkajs producer sends (its request encoder copies the frames once). */
export type OutgoingRecord = Omit<RawMessage, 'value'> & { value: Buffer | PackedFrames | null };

/** As packRecords, the packed values left as PackedFrames (for kafkajs-encoding.ts' produce request). */
export function packRecordsLazily(messages: readonly RawMessage[], maxBytes = PACK_MAX_BYTES, maxFrames = PACK_MAX_FRAMES): OutgoingRecord[] {
  return packRecordsAs(messages, maxBytes, maxFrames, (frames) => new PackedFrames(frames));
}

function packRecordsAs<V>(messages: readonly RawMessage[], maxBytes: number, maxFrames: number, pack: (frames: Buffer[]) => V): Array<Omit<RawMessage, 'value'> & { value: Buffer | V | null }> {
  if (messages.length < 2) return [...messages];
  const open = new Map<string, Group>();
  const order: Array<Group | RawMessage> = [];
  for (const m of messages) {
    if (m.key === null || m.value === null) {
      if (m.key !== null) open.delete(keyString(m.key));
      order.push(m);
      continue;
    }
    const k = keyString(m.key);
    const size = varintBytes(m.value.length) + m.value.length;
    let g = open.get(k);
    if (g && (g.bytes + size > maxBytes || g.messages.length >= maxFrames || g.timestamp !== m.timestamp)) g = undefined;
    if (!g) {
      g = { key: m.key, timestamp: m.timestamp, messages: [], bytes: 0 };
      open.set(k, g);
      order.push(g);
    }
    g.messages.push(m);
    g.bytes += size;
  }
  return order.map((e) => {
    if (!('messages' in e)) return e;
    if (e.messages.length === 1) return e.messages[0]!;
    const rec: Omit<RawMessage, 'value'> & { value: V } = { key: e.key, value: pack(e.messages.map((m) => m.value!)) };
    if (e.timestamp !== undefined) rec.timestamp = e.timestamp;
    return rec;
  });
}

function keyString(key: string | Buffer): string {
  return typeof key === 'string' ? key : `\0buf:${key.toString('latin1')}`;
}

/** A fetched record (delivery.ts' FetchedMessage), as far as unpacking is concerned. */
export interface PackableRecord {
  offset: string;
  timestamp: string | number;
  key: Buffer | null;
  value: Buffer | null;
}

/** A message of a fetched record: the record itself, or one frame of a packed record. */
export interface ExpandedMessage extends PackableRecord {
  /** Of a packed record: this frame's place (0-based) and the record's frame count. */
  frame?: { index: number; count: number };
  /** A packed record that could not be unpacked (left whole; its dead letter gives this reason). */
  packError?: string;
}

/**
 * Fetched records as the messages they carry, in order: a packed record becomes its
 * frames, each with the record's offset, timestamp and key; any other record stays as it
 * is (the same object; the same array when none is packed). A packed record that cannot be
 * read stays whole with `packError` set. The one unpacking every reader of a topic
 * that may hold packed records goes through (the bus's consumers, delivery.ts).
 */
export function expandRecords(records: readonly PackableRecord[]): readonly ExpandedMessage[] {
  let out: ExpandedMessage[] | undefined;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (!isPacked(r.value)) {
      out?.push(r);
      continue;
    }
    out ??= records.slice(0, i);
    let frames: Buffer[];
    try {
      frames = unpack(r.value);
    } catch (err) {
      out.push({ offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value, packError: err instanceof Error ? err.message : String(err) });
      continue;
    }
    // The record's timestamp read once for all its frames (a string from kafkajs).
    const timestamp = Number(r.timestamp);
    for (let j = 0; j < frames.length; j++) out.push({ offset: r.offset, timestamp, key: r.key, value: frames[j]!, frame: { index: j, count: frames.length } });
  }
  return out ?? records;
}

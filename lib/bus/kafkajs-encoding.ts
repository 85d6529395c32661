/**
 * kafkajs 2.2.4's produce request (v3–v7) and request framing, encoded with one allocation
 * where kafkajs makes many (issue 13: the collector's memory at full speed). Installed in
 * Node's module cache before kafkajs loads (lib/bus/kafkajs-fixes.ts imports this module);
 * the bytes on the wire are the same as kafkajs' own, byte for byte (test/kafkajs-encoding.test.ts
 * encodes with both).
 *
 * Why. kafkajs builds a request out of nested `Encoder`s, each starting with a zero-filled
 * 512-byte buffer and growing by doubling and copying: a record of a 64 KiB packed value gets
 * a 128 KiB buffer, the records of a batch are copied into another encoder (doubling up to
 * 1 MiB for 512 KiB), and the compressed batch is copied four more times (batch body, batch,
 * partition, topic, request, framing), each into a power-of-two buffer. A 512 KiB batch of log
 * frames left several MiB of Buffers behind. V8 counts Buffer memory allocated since the last
 * full GC against the old generation's limit, so with `logmeter collector`'s heap setting
 * (lib/heap-limits.ts: the next full GC once the heap grew 30 % past what the last one left)
 * that garbage alone brought a full GC every ~80 ms at full speed (measured with
 * `--trace-incremental-marking`: marking started for the allocation limit with the heap itself
 * not growing), and the setting cost the collector 1.6 × its CPU per line.
 *
 * Here each partition's records are written into a reused scratch buffer of their exact size
 * (then compressed by the batch's codec, as kafkajs does), a packed record's frames copied
 * straight in (PackedFrames, pack.ts: not first into a value of their own), and the request
 * is written once into a buffer of its exact size; the framing (size, API key and version,
 * correlation id, client id) is one more exact copy. Nothing else about kafkajs changes: the same codec lookup,
 * CRC-32C, timestamps (kafkajs' own rules: the batch's first and max timestamps from a
 * string sort of the messages' timestamps, deltas by JavaScript subtraction), header and
 * key/value rules (a Buffer as it is, anything else as its UTF-8 string, null as -1).
 */
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { PackedFrames } from './pack.js';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(require.resolve('kafkajs')), 'src');
const at = (...p: string[]) => path.join(root, ...p);

interface KafkaLong {
  getHighBits(): number;
  getLowBits(): number;
}
interface LongClass {
  fromValue(v: unknown): KafkaLong;
  fromInt(v: number): KafkaLong;
}
/** What is used of kafkajs' Encoder here: its varlong, for values outside the fast path. */
interface EncoderLike {
  readonly buffer: Buffer;
  writeVarLong(v: unknown): EncoderLike;
}
type EncoderClass = new (initialSize?: number) => EncoderLike;
interface Codec {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
}

const Long = require(at('utils', 'long.js')) as LongClass;
const Encoder = require(at('protocol', 'encoder.js')) as EncoderClass;
const crc32C = require(at('protocol', 'recordBatch', 'crc32C', 'index.js')) as (b: Buffer) => number;
const { lookupCodec, COMPRESSION_CODEC_MASK } = require(at('protocol', 'message', 'compression', 'index.js')) as {
  lookupCodec: (this: void, type: number) => Codec | null;
  COMPRESSION_CODEC_MASK: number;
};
const apiKeys = require(at('protocol', 'requests', 'apiKeys.js')) as { Produce: number };

const NONE = 0;
const MAGIC_BYTE = 2;
const TRANSACTIONAL_MASK = 16;
/** The record batch's fields from `attributes` to the record count (what the CRC covers before the records). */
const BATCH_BODY_HEAD = 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
/** firstOffset, length, partitionLeaderEpoch, magic, crc. */
const BATCH_HEAD = 8 + 4 + 4 + 1 + 4;

/** kafkajs' `Encoder.encodeZigZag` (32-bit). */
const zigZag = (v: number) => (v << 1) ^ (v >> 31);

/** Bytes of kafkajs' `writeUVarInt(v)` (its loop: 7 bits at a time while any bit above the low 7 is set, as 32-bit). */
function uvarintBytes(v: number): number {
  let n = 1;
  while ((v & 0xffffff80) !== 0) {
    n++;
    v >>>= 7;
  }
  return n;
}

function writeUVarInt(b: Buffer, pos: number, v: number): number {
  while ((v & 0xffffff80) !== 0) {
    b[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[pos++] = v & 0x7f;
  return pos;
}

const varintBytes = (v: number) => uvarintBytes(zigZag(v));
const writeVarInt = (b: Buffer, pos: number, v: number) => writeUVarInt(b, pos, zigZag(v));

/** A varlong as kafkajs writes it (`writeVarLong`): small integers here, anything else through kafkajs' own encoder. */
function varlong(v: unknown): number | Buffer {
  return typeof v === 'number' && Number.isInteger(v) && v >= -0x40000000 && v < 0x40000000 ? v : new Encoder().writeVarLong(v).buffer;
}
const varlongBytes = (v: number | Buffer) => (typeof v === 'number' ? varintBytes(v) : v.length);
function writeVarLong(b: Buffer, pos: number, v: number | Buffer): number {
  if (typeof v === 'number') return writeVarInt(b, pos, v);
  v.copy(b, pos);
  return pos + v.length;
}

function writeInt64(b: Buffer, pos: number, v: unknown): number {
  const l = Long.fromValue(v);
  b.writeInt32BE(l.getHighBits(), pos);
  b.writeInt32BE(l.getLowBits(), pos + 4);
  return pos + 8;
}

/**
 * A key, value or header value as kafkajs writes it: a Buffer as it is, null/undefined as absent,
 * anything else as its string's UTF-8; and a packed record's value (PackedFrames, pack.ts) as the
 * bytes it stands for, its frames copied straight in.
 */
type Bytes = Buffer | string | PackedFrames | null;
function bytesOf(v: unknown): Bytes {
  if (v == null) return null;
  if (v instanceof PackedFrames) return v;
  // kafkajs' writeVarIntBytes: `String(value)` of anything but a Buffer.
  // eslint-disable-next-line @typescript-eslint/no-base-to-string
  return Buffer.isBuffer(v) ? v : String(v);
}
const bytesLength = (v: Bytes) => (v === null ? -1 : typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length);
/** Bytes of kafkajs' `writeVarIntBytes` / `writeVarIntString` of a value of `len` bytes (-1: null). */
const varBytesSize = (len: number) => (len < 0 ? varintBytes(-1) : varintBytes(len) + len);
function writeVarBytes(b: Buffer, pos: number, v: Bytes, len: number): number {
  pos = writeVarInt(b, pos, len);
  if (v === null) return pos;
  if (typeof v === 'string') return pos + b.write(v, pos, len, 'utf8');
  if (v instanceof PackedFrames) return v.writeTo(b, pos);
  v.copy(b, pos);
  return pos + len;
}

interface Message {
  key?: unknown;
  value?: unknown;
  timestamp?: unknown;
  headers?: Record<string, unknown> | undefined;
}

/** One record's parts, measured. */
interface Rec {
  delta: number | Buffer;
  key: Bytes;
  keyLen: number;
  value: Bytes;
  valueLen: number;
  headers: Array<{ key: string; keyLen: number; value: Buffer | string | null; valueLen: number }> | undefined;
  /** Bytes of the record after its length prefix. */
  body: number;
}

/** The records of a partition's messages as kafkajs' Record v0 writes them (attributes 0, the deltas, key, value, headers). */
function measure(messages: readonly Message[], firstTimestamp: unknown, dateNow: number): { recs: Rec[]; bytes: number } {
  const recs: Rec[] = new Array<Rec>(messages.length);
  let bytes = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    // kafkajs: `(message.timestamp || dateNow) - firstTimestamp`, JavaScript's subtraction.
    const delta = varlong(((m.timestamp || dateNow) as number) - (firstTimestamp as number));
    const key = bytesOf(m.key);
    const value = bytesOf(m.value);
    const keyLen = bytesLength(key);
    const valueLen = bytesLength(value);
    let body = 1 + varlongBytes(delta) + varintBytes(i) + varBytesSize(keyLen) + varBytesSize(valueLen);
    let headers: Rec['headers'];
    const h = m.headers ?? {};
    const names = Object.keys(h);
    if (names.length === 0) body += varintBytes(0);
    else {
      headers = [];
      for (const name of names) {
        const hv = h[name];
        for (const v of Array.isArray(hv) ? (hv as unknown[]) : [hv]) {
          // kafkajs sizes a header value with Buffer.byteLength: anything but a Buffer or a string is a
          // TypeError, as here (null too in kafkajs; here it is written as absent, -1).
          if (v !== null && typeof v !== 'string' && !Buffer.isBuffer(v)) Buffer.byteLength(v as string);
          const value = v === null ? null : (v as Buffer | string);
          headers.push({ key: name, keyLen: Buffer.byteLength(name, 'utf8'), value, valueLen: bytesLength(value) });
        }
      }
      body += varintBytes(headers.length);
      for (const x of headers) body += varBytesSize(x.keyLen) + varBytesSize(x.valueLen);
    }
    recs[i] = { delta, key, keyLen, value, valueLen, headers, body };
    bytes += varintBytes(body) + body;
  }
  return { recs, bytes };
}

/** The records, each at its offset delta (its index), as kafkajs' Record v0. */
function writeRecords(b: Buffer, pos: number, recs: readonly Rec[]): number {
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    pos = writeVarInt(b, pos, r.body);
    b[pos++] = 0;
    pos = writeVarLong(b, pos, r.delta);
    pos = writeVarInt(b, pos, i);
    pos = writeVarBytes(b, pos, r.key, r.keyLen);
    pos = writeVarBytes(b, pos, r.value, r.valueLen);
    if (!r.headers) pos = writeVarInt(b, pos, 0);
    else {
      pos = writeVarInt(b, pos, r.headers.length);
      for (const x of r.headers) {
        pos = writeVarBytes(b, pos, x.key, x.keyLen);
        pos = writeVarBytes(b, pos, x.value, x.valueLen);
      }
    }
  }
  return pos;
}

/**
 * Scratch buffers for uncompressed records, reused from one batch to the next: taken while a
 * codec compresses them, given back when it is done. A few are kept (concurrent requests to
 * several brokers), none larger than KEEP_BYTES (a rare huge batch is not held for ever).
 */
const SCRATCH_STEP = 64 * 1024;
const KEEP_BYTES = 4 * 1024 * 1024;
const KEEP_COUNT = 4;
const scratch: Buffer[] = [];

function takeScratch(bytes: number): Buffer {
  for (let i = 0; i < scratch.length; i++) {
    if (scratch[i]!.length >= bytes) return scratch.splice(i, 1)[0]!;
  }
  return Buffer.allocUnsafeSlow(Math.ceil(bytes / SCRATCH_STEP) * SCRATCH_STEP);
}

function giveScratch(b: Buffer): void {
  if (b.length > KEEP_BYTES) return;
  if (scratch.length < KEEP_COUNT) scratch.push(b);
  else {
    // Keep the larger ones: they serve every size.
    let smallest = 0;
    for (let i = 1; i < scratch.length; i++) if (scratch[i]!.length < scratch[smallest]!.length) smallest = i;
    if (scratch[smallest]!.length < b.length) scratch[smallest] = b;
  }
}

/** Scratch buffers held for reuse (tests). */
export function scratchHeld(): number {
  return scratch.reduce((n, b) => n + b.length, 0);
}

interface PartitionData {
  partition: number;
  messages: readonly Message[];
  firstSequence?: number;
}
interface TopicData {
  topic: string;
  partitions: readonly PartitionData[];
}
interface ProduceArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: readonly TopicData[];
}

/** One partition's record batch, ready to be written: its header values and its records (compressed, or to be written raw). */
interface Batch {
  partition: number;
  attributes: number;
  firstTimestamp: unknown;
  maxTimestamp: unknown;
  firstSequence: number;
  count: number;
  /** The compressed records, or undefined: `recs` are written raw. */
  compressed: Buffer | undefined;
  recs: Rec[];
  recordBytes: number;
}

async function batchOf(p: PartitionData, compression: number, transactional: boolean): Promise<Batch> {
  const dateNow = Date.now();
  // As kafkajs: the messages' timestamps that are set, sorted as strings (Array#sort's default).
  const stamps = p.messages.map((m) => m.timestamp).filter((t) => t != null);
  stamps.sort();
  const firstTimestamp = stamps.length === 0 ? dateNow : stamps[0];
  const maxTimestamp = stamps.length === 0 ? dateNow : stamps[stamps.length - 1];
  const { recs, bytes } = measure(p.messages, firstTimestamp, dateNow);
  const attributes = (compression & COMPRESSION_CODEC_MASK) | (transactional ? TRANSACTIONAL_MASK : 0);
  const batch: Batch = { partition: p.partition, attributes, firstTimestamp, maxTimestamp, firstSequence: p.firstSequence ?? 0, count: recs.length, compressed: undefined, recs, recordBytes: bytes };
  if (compression === NONE) return batch;
  const codec = lookupCodec(compression);
  if (!codec) throw new TypeError(`kafkajs has no codec for compression ${compression}`);
  const raw = takeScratch(bytes);
  try {
    const end = writeRecords(raw, 0, recs);
    if (end !== bytes) throw new Error(`produce encoding: wrote ${end} bytes of records, measured ${bytes}`);
    batch.compressed = await codec.compress({ buffer: raw.subarray(0, bytes) });
  } finally {
    giveScratch(raw);
  }
  batch.recs = [];
  batch.recordBytes = batch.compressed.length;
  return batch;
}

const stringBytes = (s: string | null | undefined) => 2 + (s == null ? 0 : Buffer.byteLength(s, 'utf8'));
function writeString(b: Buffer, pos: number, s: string | null | undefined): number {
  if (s == null) return b.writeInt16BE(-1, pos);
  const len = Buffer.byteLength(s, 'utf8');
  pos = b.writeInt16BE(len, pos);
  return pos + b.write(s, pos, len, 'utf8');
}

/** A request's encoded form as kafkajs' connection reads it (`.buffer`), shaped like its Encoder. */
class Encoded {
  constructor(
    readonly buf: Buffer,
    public offset: number,
  ) {}
  get buffer(): Buffer {
    return this.buf.subarray(0, this.offset);
  }
  size(): number {
    return this.offset;
  }
}

/** kafkajs' produce request v3 (and so v4–v7, which are v3 with another version number), encoded once. */
export function produceRequestV3({ acks, timeout, transactionalId = null, producerId = Long.fromInt(-1), producerEpoch = 0, compression = NONE, topicData }: ProduceArgs) {
  return {
    apiKey: apiKeys.Produce,
    apiVersion: 3,
    apiName: 'Produce',
    expectResponse: () => acks !== 0,
    encode: async (): Promise<Encoded> => {
      const transactional = !!transactionalId;
      // One partition after another, as kafkajs (its compression in turn, not at once).
      const topics: Array<{ topic: string; batches: Batch[] }> = [];
      for (const t of topicData) {
        const batches: Batch[] = [];
        for (const p of t.partitions) batches.push(await batchOf(p, compression, transactional));
        topics.push({ topic: t.topic, batches });
      }
      let size = stringBytes(transactionalId) + 2 + 4 + 4;
      for (const t of topics) {
        size += stringBytes(t.topic) + 4;
        for (const b of t.batches) size += 4 + 4 + BATCH_HEAD + BATCH_BODY_HEAD + b.recordBytes;
      }
      const out = Buffer.allocUnsafe(size);
      let pos = writeString(out, 0, transactionalId);
      pos = out.writeInt16BE(acks, pos);
      pos = out.writeInt32BE(timeout, pos);
      pos = out.writeInt32BE(topics.length, pos);
      for (const t of topics) {
        pos = writeString(out, pos, t.topic);
        pos = out.writeInt32BE(t.batches.length, pos);
        for (const b of t.batches) {
          const bodyBytes = BATCH_BODY_HEAD + b.recordBytes;
          pos = out.writeInt32BE(b.partition, pos);
          pos = out.writeInt32BE(BATCH_HEAD + bodyBytes, pos);
          pos = writeInt64(out, pos, 0);
          pos = out.writeInt32BE(4 + 1 + 4 + bodyBytes, pos);
          pos = out.writeInt32BE(0, pos); // partitionLeaderEpoch
          pos = out.writeInt8(MAGIC_BYTE, pos);
          const crcAt = pos;
          pos += 4;
          const body = pos;
          pos = out.writeInt16BE(b.attributes, pos);
          pos = out.writeInt32BE(b.count - 1, pos); // lastOffsetDelta
          pos = writeInt64(out, pos, b.firstTimestamp);
          pos = writeInt64(out, pos, b.maxTimestamp);
          pos = writeInt64(out, pos, producerId);
          pos = out.writeInt16BE(producerEpoch, pos);
          pos = out.writeInt32BE(b.firstSequence, pos);
          pos = out.writeInt32BE(b.count, pos);
          if (b.compressed) {
            b.compressed.copy(out, pos);
            pos += b.compressed.length;
          } else pos = writeRecords(out, pos, b.recs);
          out.writeUInt32BE(crc32C(out.subarray(body, pos)), crcAt);
        }
      }
      if (pos !== size) throw new Error(`produce encoding: wrote ${pos} bytes, measured ${size}`);
      return new Encoded(out, size);
    },
  };
}

/** kafkajs' request framing (protocol/request.js): size, API key, version, correlation id, client id, then the request; one exact copy. */
export async function createRequest({ correlationId, clientId, request: { apiKey, apiVersion, encode } }: { correlationId: number; clientId: string | null; request: { apiKey: number; apiVersion: number; encode: () => Promise<{ buffer: Buffer }> } }): Promise<Encoded> {
  const payload = (await encode()).buffer;
  const headerBytes = 2 + 2 + 4 + stringBytes(clientId);
  const out = Buffer.allocUnsafe(4 + headerBytes + payload.length);
  let pos = out.writeInt32BE(headerBytes + payload.length, 0);
  pos = out.writeInt16BE(apiKey, pos);
  pos = out.writeInt16BE(apiVersion, pos);
  pos = out.writeInt32BE(correlationId, pos);
  pos = writeString(out, pos, clientId);
  payload.copy(out, pos);
  return new Encoded(out, out.length);
}

/** Puts `exports` in Node's module cache as the module at `file` (before anything requires it). */
function install(file: string, exports: unknown, loadedBy: string): void {
  const cache = require.cache;
  const existing = cache[file];
  if (existing) {
    if (existing.exports === exports) return;
    throw new Error(`lib/bus/kafkajs-encoding.ts must be installed before kafkajs loads ${path.relative(root, file)} (${loadedBy})`);
  }
  const m = new Module(file);
  m.filename = file;
  m.exports = exports;
  m.loaded = true;
  cache[file] = m;
}

install(at('protocol', 'requests', 'produce', 'v3', 'request.js'), produceRequestV3, 'the first produce request');
install(at('protocol', 'request.js'), createRequest, 'its network connection');

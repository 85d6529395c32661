/**
 * Snappy for kafkajs (`kafka.compression: snappy`, issue 13): kafkajs 2.2.4 names the codec but
 * ships none. Registered in kafkajs' codec table on import, process-wide, so every consumer of
 * the process reads snappy batches whatever its own producer sends.
 *
 * Compression: the `snappy` package (napi-rs, a Rust Snappy; its prebuilt binary comes from
 * the npm registry as an optional dependency), on the calling thread (COPY below). Written as
 * one raw Snappy block, as librdkafka writes it; Kafka's broker (xerial's
 * SnappyInputStream, which reads a raw block when the stream has no xerial header), Java
 * clients and kcat read it (test/bus-snappy.test.ts reads a batch back with kcat).
 *
 * Decompression: a raw block, or xerial's framing as Java producers write it — the 8-byte
 * magic `\x82SNAPPY\0`, two int32 versions, then chunks of (int32 big-endian length, raw block).
 */
import './kafkajs-fixes.js';
import { createRequire } from 'node:module';
import { compressSync, uncompressSync } from 'snappy';
import { CompressionTypes } from 'kafkajs';
import { LogmeterError } from '../errors.js';

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };
// Through require: `CompressionCodecs` is not among the names Node can import from kafkajs' CommonJS module.
const codecs = (createRequire(import.meta.url)('kafkajs') as { CompressionCodecs: Record<number, (() => Codec) | undefined> }).CompressionCodecs;

/** Bytes given to and returned by the snappy compressor since the process started (for bench/collector.ts). */
export const snappyTotals = { batches: 0, bytesIn: 0, bytesOut: 0 };

/**
 * On the calling thread, the output copied into a Buffer of Node's (exactly its length, counted
 * by V8 as external memory) and the binding's own allocation freed at once. The binding's async
 * calls run on libuv's pool and hand over the Rust allocation the output was made in: at full
 * speed `logmeter collector` with 2 containers then grew 126–138 MiB over its idle RSS (its bound
 * allows 128), against 23 MiB this way and 30–54 with gzip (BENCHMARKS.md). Snappy takes ~1 ms
 * per 512 KiB batch, less than a round trip through the pool costs the event loop.
 */
const COPY = { copyOutputData: true } as const;

/** xerial's stream header: magic (8 bytes) and two int32 versions. */
const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
const XERIAL_HEADER_BYTES = 16;

/** A snappy batch that cannot be read (its framing or a block is broken). */
export class SnappyError extends LogmeterError {
  constructor(message: string) {
    super('snappy_invalid', message, { retriable: false });
  }
}

function isXerial(b: Buffer): boolean {
  return b.length >= XERIAL_HEADER_BYTES && b.subarray(0, XERIAL_MAGIC.length).equals(XERIAL_MAGIC);
}

/** The uncompressed bytes of a batch's records: a raw Snappy block, or xerial's framing of blocks. */
// eslint-disable-next-line @typescript-eslint/require-await -- kafkajs' codec interface: a promise, its rejection the error
export async function unsnappy(b: Buffer): Promise<Buffer> {
  try {
    if (!isXerial(b)) return uncompressSync(b, { asBuffer: true, ...COPY }) as Buffer;
    const parts: Buffer[] = [];
    let pos = XERIAL_HEADER_BYTES;
    while (pos < b.length) {
      if (pos + 4 > b.length) throw new SnappyError(`xerial snappy: a chunk length cut off at byte ${pos} of ${b.length}`);
      const len = b.readUInt32BE(pos);
      pos += 4;
      if (pos + len > b.length) throw new SnappyError(`xerial snappy: a chunk of ${len} bytes at byte ${pos} runs past the end (${b.length})`);
      parts.push(uncompressSync(b.subarray(pos, pos + len), { asBuffer: true, ...COPY }) as Buffer);
      pos += len;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  } catch (err) {
    if (err instanceof SnappyError) throw err;
    throw new SnappyError(`snappy: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** One raw Snappy block of `input`. */
// eslint-disable-next-line @typescript-eslint/require-await -- kafkajs' codec interface
export async function snappy(input: Buffer): Promise<Buffer> {
  const output = compressSync(input, COPY);
  snappyTotals.batches++;
  snappyTotals.bytesIn += input.length;
  snappyTotals.bytesOut += output.length;
  return output;
}

{
  const codec: Codec = { compress: (encoder) => snappy(encoder.buffer), decompress: unsnappy };
  codecs[CompressionTypes.Snappy] = () => codec;
}

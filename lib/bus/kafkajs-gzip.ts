/**
 * gzip of the producer's record batches at a chosen zlib level (`kafka.compressionLevel`).
 * kafkajs 2.2.4's own gzip codec always uses zlib's default level (6), which was ~16 % of
 * the collector's CPU profile (BENCHMARKS.md, "Collector per-line work").
 *
 * kafkajs looks its compressing codec up by the whole `compression` value a send passes
 * (`lookupCodec(compression)` in its record batch and message set encoders), but writes only
 * `compression & 0x07` into the batch's attributes (and so on the wire). A level therefore
 * gets a codec of its own under `GZIP | level << 3`: what reaches the broker says gzip,
 * as before, and every reader decompresses it with kafkajs' own gzip codec, found by the
 * attributes (a gzip stream at any level is read the same way).
 *
 * Process-wide as kafkajs' codec table is; one entry per level, all alike but the level, so
 * buses of one process may use different levels.
 *
 * Reading: kafkajs' own gzip codec (the one every reader finds by the attributes) inflates a
 * fetched batch with zlib's default 16 KiB output chunks: a batch of ~1 MiB of records is ~60
 * trips through the thread pool and the stream machinery, each a 16 KiB buffer, then all of
 * them copied into one. Its decompress is replaced here (on import, process-wide) by one whose
 * output chunk is the batch's inflated size, read from the gzip trailer (ISIZE): one chunk,
 * one trip, no copy; the same bytes (measured: 2.3 → 1.1 ms of CPU per MiB-sized batch of log
 * frames, and the sink's CPU per row, BENCHMARKS.md "Log sink: CPU per row"). Its compress stays kafkajs'.
 */
import './kafkajs-fixes.js';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { CompressionTypes } from 'kafkajs';

const gzip = promisify(zlib.gzip) as (data: Buffer, options: zlib.ZlibOptions) => Promise<Buffer>;
const unzip = promisify(zlib.unzip) as (data: Buffer, options: zlib.ZlibOptions) => Promise<Buffer>;

/** The bits kafkajs writes into a batch's attributes: the codec (`COMPRESSION_CODEC_MASK`). */
const CODEC_MASK = 0x07;

/** zlib's levels that compress (0 stores: `compression: none` is the way to send uncompressed). */
export const GZIP_LEVELS = { min: 1, max: 9 } as const;

/** Bytes given to and returned by this module's codecs, since the process started (for bench/collector.ts). */
export const gzipTotals = { batches: 0, bytesIn: 0, bytesOut: 0 };

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };
// Through require: `CompressionCodecs` is not among the names Node can import from kafkajs' CommonJS module.
const codecs = (createRequire(import.meta.url)('kafkajs') as { CompressionCodecs: Record<number, (() => Codec) | undefined> }).CompressionCodecs;

/** Bounds of the inflating codec's output chunk: zlib's default, and a cap whatever a trailer claims. */
export const GUNZIP_CHUNK = { min: 16 * 1024, max: 8 * 1024 * 1024 } as const;

/**
 * The output chunk to inflate `compressed` with: its inflated size plus one (so the inflate ends
 * with room left in its only chunk and no second one is allocated), from the trailer of a gzip
 * stream (ISIZE, the size modulo 2^32, little-endian in its last 4 bytes), within GUNZIP_CHUNK.
 * Only a size: a stream of several members, or zlib's format (which `unzip` also reads), costs
 * more chunks, never other bytes; a trailer that lies fails zlib's own length check, as with
 * kafkajs' codec.
 */
export function gunzipChunkSize(compressed: Buffer): number {
  if (compressed.length < 18 || compressed[0] !== 0x1f || compressed[1] !== 0x8b) return GUNZIP_CHUNK.min;
  return Math.min(GUNZIP_CHUNK.max, Math.max(GUNZIP_CHUNK.min, compressed.readUInt32LE(compressed.length - 4) + 1));
}

/** Inflates a fetched batch's records as kafkajs' codec does (`zlib.unzip`: gzip or zlib format), in one chunk. */
export function gunzipBatch(compressed: Buffer): Promise<Buffer> {
  return unzip(compressed, { chunkSize: gunzipChunkSize(compressed) });
}

// kafkajs' gzip codec with this module's decompress (see the header); its compress as it was.
{
  const builtIn = codecs[CompressionTypes.GZIP]!;
  const codec: Codec = { compress: (encoder) => builtIn().compress(encoder), decompress: gunzipBatch };
  codecs[CompressionTypes.GZIP] = () => codec;
}

/** kafkajs' compression value for gzip at `level` (1–9), its codec registered on first use. */
export function gzipCompression(level: number): CompressionTypes {
  if (!Number.isInteger(level) || level < GZIP_LEVELS.min || level > GZIP_LEVELS.max) throw new Error(`gzip level ${level}: a whole number from ${GZIP_LEVELS.min} to ${GZIP_LEVELS.max}`);
  const type = CompressionTypes.GZIP | (level << 3);
  if (codecs[type] === undefined) {
    const codec: Codec = {
      async compress(encoder) {
        const input = encoder.buffer;
        // Output buffers of half the input, not zlib's 16 KiB: a batch of log events (~4.5 : 1)
        // comes back in one round trip from the thread pool instead of eight, each of which
        // costs the event loop (zlib's processCallback was 2.5 % of the collector's CPU).
        const output = await gzip(input, { level, chunkSize: Math.max(zlib.constants.Z_DEFAULT_CHUNK, input.length >>> 1) });
        gzipTotals.batches++;
        gzipTotals.bytesIn += input.length;
        gzipTotals.bytesOut += output.length;
        return output;
      },
      // Never called for this value (readers look codecs up by the batch's attributes), given for completeness.
      decompress: gunzipBatch,
    };
    codecs[type] = () => codec;
  }
  return type;
}

/** The codec kafkajs writes on the wire for a compression value (its attributes' bits). */
export function wireCodec(compression: number): number {
  return compression & CODEC_MASK;
}

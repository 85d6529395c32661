/**
 * The logs rows as ClickHouse `RowBinary`, for the sink benchmark's raw RowBinary baseline
 * only: chDB (3.4.0) has no safe way to take a binary insert body (its raw insert passes
 * the bytes inline behind the SQL text, and bytes such as two line feeds end the data
 * early), so the product writes binary columns instead (lib/clickhouse/columnar.ts).
 * Strings: varint length + bytes; UInt32/UInt64/DateTime64(3) little-endian; Bool one byte.
 */
import { createRequire } from 'node:module';
import type { LogLine } from '../../schemas/events.js';
import { logKind } from '../../processors/log-sink/rows.js';

export const ROWBINARY_COLUMNS = ['event_id', 'tenant', 'app', 'node', 'container_id', 'container_name', 'ts', 'ts_nanos', 'seq', 'stream', 'tty', 'line', 'original_length', 'truncated', 'invalid_utf8', 'log_format', 'kind'] as const;

export class RowBinaryWriter {
  private buf = Buffer.allocUnsafe(1 << 20);
  pos = 0;
  rows = 0;

  reset(): void {
    this.pos = 0;
    this.rows = 0;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  write(e: LogLine): void {
    this.text(e.event_id).text(e.tenant).text(e.app).text(e.node).text(e.container_id).text(e.container_name);
    this.u64(e.ts).u32(e.ts_nanos).u32(e.seq).text(e.stream).u8(e.tty ? 1 : 0);
    this.bin(e.line).u64(e.original_length).u8(e.truncated ? 1 : 0).u8(e.invalid_utf8 ? 1 : 0).text(e.log_format ?? '').text(logKind(e));
    this.rows++;
  }

  private text(s: string): this {
    return this.bin(Buffer.from(s, 'utf8'));
  }

  private bin(b: Uint8Array): this {
    this.ensure(b.length + 10);
    let n = b.length;
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  private u8(n: number): this {
    this.ensure(1);
    this.buf[this.pos++] = n;
    return this;
  }

  private u32(n: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(n >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  private u64(n: number): this {
    this.ensure(8);
    this.buf.writeUInt32LE(n >>> 0, this.pos);
    this.buf.writeUInt32LE(Math.floor(n / 2 ** 32) >>> 0, this.pos + 4);
    this.pos += 8;
    return this;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
}

interface NativeChdb {
  InsertRawAsyncConnection(connection: unknown, prefix: string, data: Buffer, countLines: boolean): Promise<unknown>;
}
interface ChdbSession {
  readonly connection: unknown;
  close(): void;
}

/** chDB's native raw insert with a `FORMAT RowBinary` prefix (what its JS whitelist refuses), on a connection of its own to `path`. */
export function rowBinaryInserter(path: string): { insert(table: string, body: Buffer): Promise<void>; close(): void } {
  const req = createRequire(import.meta.url);
  const native = req(`@chdb/lib-${process.platform}-${process.arch}-gnu`) as NativeChdb;
  const { Session } = req('chdb') as { Session: new (p: string) => ChdbSession };
  const session = new Session(path);
  return {
    insert: async (table, body) => void (await native.InsertRawAsyncConnection(session.connection, `INSERT INTO ${table} (${ROWBINARY_COLUMNS.join(', ')}) FORMAT RowBinary`, body, false)),
    close: () => session.close(),
  };
}

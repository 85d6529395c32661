/**
 * Rows as ClickHouse `TabSeparated` bytes, written straight into one reused buffer: the
 * insert format of the log sink (no row objects, no JSON, no base64).
 *
 * Escaping (ClickHouse's TSV rules): backslash, tab, line feed, carriage return and NUL
 * are written as `\\`, `\t`, `\n`, `\r`, `\0`, so a raw tab or line feed is always a field
 * or row boundary. Byte strings that are not valid UTF-8 have every byte ≥ 0x80 written as
 * `\xHH`, which ClickHouse decodes back to that byte: the body is valid UTF-8 whatever the
 * content, so it passes unchanged through any transport that treats it as text (the
 * chDB connection of `@clickhouse/client` decodes insert bodies as UTF-8), and each
 * string reads back byte for byte.
 */
import { isUtf8 } from 'node:buffer';

const BACKSLASH = 0x5c;
/** The letter after the backslash for each byte that must be escaped (0 = none). */
const ESCAPE = new Uint8Array(128);
ESCAPE[0x5c] = 0x5c; // \\
ESCAPE[0x09] = 0x74; // \t
ESCAPE[0x0a] = 0x6e; // \n
ESCAPE[0x0d] = 0x72; // \r
ESCAPE[0x00] = 0x30; // \0
const HEX = Buffer.from('0123456789ABCDEF', 'latin1');

export class TsvWriter {
  private buf: Buffer;
  private pos = 0;
  /** Rows ended since the last reset. */
  rows = 0;

  constructor(initialBytes = 1 << 20) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** The bytes written so far (a view of the buffer: valid until the next write or reset). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** Capacity of the underlying buffer, bytes. */
  get capacity(): number {
    return this.buf.length;
  }

  /** Where the writer is now, to roll back to. */
  mark(): { pos: number; rows: number } {
    return { pos: this.pos, rows: this.rows };
  }

  /** Forgets what was written after `m`. */
  rollback(m: { pos: number; rows: number }): void {
    this.pos = m.pos;
    this.rows = m.rows;
  }

  reset(): void {
    this.pos = 0;
    this.rows = 0;
  }

  /** A string field (UTF-8), escaped. */
  text(s: string): this {
    const n = s.length;
    this.ensure(2 * n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.pos = p;
        return this.utf8(Buffer.from(s.slice(i), 'utf8'));
      }
      const e = ESCAPE[c]!;
      if (e !== 0) {
        buf[p++] = BACKSLASH;
        buf[p++] = e;
      } else buf[p++] = c;
    }
    this.pos = p;
    return this;
  }

  /** A byte string field: kept byte for byte (see the module comment for invalid UTF-8). */
  binary(b: Uint8Array): this {
    return isUtf8(b) ? this.utf8(b) : this.hexHigh(b);
  }

  /** A non-negative or negative integer (exact below 2^53). */
  int(n: number): this {
    return this.ascii(String(Math.trunc(n)));
  }

  bool(b: boolean): this {
    return this.ascii(b ? 'true' : 'false');
  }

  /** Milliseconds since the epoch as `seconds.mmm`, which a DateTime64(3) column reads exactly. */
  epochMs(ms: number): this {
    const t = Math.trunc(ms);
    const a = Math.abs(t);
    const frac = a % 1000;
    return this.ascii(`${t < 0 ? '-' : ''}${(a - frac) / 1000}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`);
  }

  tab(): this {
    this.ensure(1);
    this.buf[this.pos++] = 0x09;
    return this;
  }

  endRow(): void {
    this.ensure(1);
    this.buf[this.pos++] = 0x0a;
    this.rows++;
  }

  /** ASCII without anything to escape (numbers, keywords). */
  private ascii(s: string): this {
    const n = s.length;
    this.ensure(n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) buf[p++] = s.charCodeAt(i);
    this.pos = p;
    return this;
  }

  /** Valid UTF-8: bytes ≥ 0x80 as they are, the control bytes escaped. */
  private utf8(b: Uint8Array): this {
    const n = b.length;
    this.ensure(2 * n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      const c = b[i]!;
      const e = c < 0x80 ? ESCAPE[c]! : 0;
      if (e !== 0) {
        buf[p++] = BACKSLASH;
        buf[p++] = e;
      } else buf[p++] = c;
    }
    this.pos = p;
    return this;
  }

  /** Not UTF-8: every byte ≥ 0x80 as `\xHH`, the control bytes escaped. */
  private hexHigh(b: Uint8Array): this {
    const n = b.length;
    this.ensure(4 * n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      const c = b[i]!;
      if (c >= 0x80) {
        buf[p++] = BACKSLASH;
        buf[p++] = 0x78; // x
        buf[p++] = HEX[c >> 4]!;
        buf[p++] = HEX[c & 15]!;
        continue;
      }
      const e = ESCAPE[c]!;
      if (e !== 0) {
        buf[p++] = BACKSLASH;
        buf[p++] = e;
      } else buf[p++] = c;
    }
    this.pos = p;
    return this;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
}

/** How a table's rows become an insert body (see TableBatcher). */
export interface RowEncoder<R> {
  /** The insert's columns, in the order `write` writes them. */
  readonly columns: readonly [string, ...string[]];
  /** Writes one row, fields separated by tabs, then `w.endRow()`. */
  write(row: R, w: TsvWriter): void;
}

/** An encoded insert body: `TabSeparated` rows of `columns`. */
export interface EncodedRows {
  readonly columns: readonly [string, ...string[]];
  readonly body: Buffer;
  readonly rows: number;
}

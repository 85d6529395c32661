/**
 * Rows as binary columns (Arrow's C data interface layout), written straight from the
 * events: the log sink's insert format in embedded mode (chDB). No text, no escaping: a
 * byte string is its length (an offset) and its bytes, as they are; integers and times
 * are little-endian machine words.
 *
 * chDB reads such columns in place (`arrowstream('<name>')`, registered through its
 * native binding, client.ts) and the insert is `INSERT … SELECT` from them: the engine
 * converts to the table's types (String into LowCardinality(String), epoch milliseconds
 * into DateTime64(3)) without a text parser. Its raw insert of binary formats
 * (RowBinary, Native) is not usable: chDB passes the bytes inline behind the SQL text,
 * and values containing e.g. two line feeds or a line feed followed by `FORMAT …` end the
 * data early (measured, BENCHMARKS.md "Log sink: binary columns and trailing commits").
 *
 * Column types (Arrow C data interface format strings):
 *   `bytes`  — `z` (binary: int32 offsets + data), read by ClickHouse as String, byte for byte
 *   `u32`    — `I`, `u64` — `L`, `bool` — `b` (bit-packed), `ms` — `tsm:UTC` (int64 epoch ms).
 */

export type ColumnType = 'bytes' | 'u32' | 'u64' | 'bool' | 'ms';

export interface ColumnSpec {
  readonly name: string;
  readonly type: ColumnType;
}

/** One column as chDB's `ArrowRegisterColumns` takes it. */
export interface ArrowColumn {
  name: string;
  format: string;
  length: number;
  nullCount: number;
  buffers: Array<Buffer | null>;
}

const FORMAT: Record<ColumnType, string> = { bytes: 'z', u32: 'I', u64: 'L', bool: 'b', ms: 'tsm:UTC' };
const TWO32 = 2 ** 32;

/** A growable column: its buffers are reused from one batch to the next. */
class Column {
  /** Fixed-width values (u32: 1 word per row; u64/ms: 2 words, low first; bool: 1 bit). */
  words = new Uint32Array(1024);
  /** bytes: offsets[0..n] and the data. */
  offsets = new Int32Array(1025);
  data = Buffer.allocUnsafe(1 << 16);
  dataPos = 0;
  constructor(readonly spec: ColumnSpec) {}

  growWords(need: number): void {
    if (need <= this.words.length) return;
    let n = this.words.length * 2;
    while (n < need) n *= 2;
    const next = new Uint32Array(n);
    next.set(this.words);
    this.words = next;
  }

  growOffsets(need: number): void {
    if (need <= this.offsets.length) return;
    let n = this.offsets.length * 2;
    while (n < need) n *= 2;
    const next = new Int32Array(n);
    next.set(this.offsets);
    this.offsets = next;
  }

  growData(need: number): void {
    if (need <= this.data.length) return;
    let n = this.data.length * 2;
    while (n < need) n *= 2;
    // Arrow's binary offsets are int32: a column of one insert holds less than 2 GiB.
    if (need > 0x7fffffff) throw new RangeError(`column ${this.spec.name}: more than 2 GiB in one insert`);
    const next = Buffer.allocUnsafe(n);
    this.data.copy(next, 0, 0, this.dataPos);
    this.data = next;
  }
}

/**
 * Writes rows column by column. Each row sets every column once, in any order, through
 * the typed setters (by column index), then `endRow()`.
 */
export class ColumnarWriter {
  private readonly cols: Column[];
  /** Rows ended since the last reset. */
  rows = 0;

  constructor(readonly columns: readonly ColumnSpec[]) {
    this.cols = columns.map((c) => new Column(c));
  }

  reset(): void {
    this.rows = 0;
    for (const c of this.cols) {
      c.dataPos = 0;
      if (c.spec.type === 'bool') c.words.fill(0);
    }
  }

  /** A byte string, kept as it is. */
  bytes(i: number, b: Uint8Array): this {
    const c = this.cols[i]!;
    c.growData(c.dataPos + b.length);
    c.data.set(b, c.dataPos);
    c.dataPos += b.length;
    return this.endBytes(c);
  }

  /** The bytes `src[start, end)`, as they are (no view of them made: a frame's fields straight from the frame). */
  bytesOf(i: number, src: Buffer, start: number, end: number): this {
    const c = this.cols[i]!;
    const n = end - start;
    c.growData(c.dataPos + n);
    const data = c.data;
    let pos = c.dataPos;
    // A loop for a few bytes; past ~20 a native copy costs less (measured, Node 20).
    if (n < 20) for (let k = start; k < end; k++) data[pos++] = src[k]!;
    else pos += src.copy(data, pos, start, end);
    c.dataPos = pos;
    return this.endBytes(c);
  }

  /** A string, as UTF-8 (its bytes; a lone surrogate becomes U+FFFD, as Buffer.from does). */
  text(i: number, s: string): this {
    const c = this.cols[i]!;
    c.growData(c.dataPos + s.length * 3);
    c.dataPos += c.data.write(s, c.dataPos, 'utf8');
    return this.endBytes(c);
  }

  u32(i: number, n: number): this {
    const c = this.cols[i]!;
    c.growWords(this.rows + 1);
    c.words[this.rows] = n >>> 0;
    return this;
  }

  /** A non-negative integer below 2^53, as UInt64. */
  u64(i: number, n: number): this {
    return this.word64(i, n);
  }

  /** Milliseconds since the epoch (DateTime64(3)); exact below 2^53 in magnitude, negative too. */
  ms(i: number, ms: number): this {
    return this.word64(i, Math.trunc(ms));
  }

  bool(i: number, b: boolean): this {
    const c = this.cols[i]!;
    const word = this.rows >>> 5;
    if (word >= c.words.length) c.growWords(word + 1);
    if (b) c.words[word]! |= 1 << (this.rows & 31);
    return this;
  }

  endRow(): void {
    this.rows++;
  }

  /**
   * The columns as chDB takes them: views of this writer's buffers, valid until the
   * next write or reset (the insert must be done before either).
   */
  arrow(): ArrowColumn[] {
    const n = this.rows;
    return this.cols.map((c) => {
      const base = { name: c.spec.name, format: FORMAT[c.spec.type], length: n, nullCount: 0 };
      switch (c.spec.type) {
        case 'bytes':
          return { ...base, buffers: [null, Buffer.from(c.offsets.buffer, 0, (n + 1) * 4), c.data.subarray(0, c.dataPos)] };
        case 'u32':
          return { ...base, buffers: [null, Buffer.from(c.words.buffer, 0, n * 4)] };
        case 'bool':
          return { ...base, buffers: [null, Buffer.from(c.words.buffer, 0, Math.ceil(n / 8))] };
        default:
          return { ...base, buffers: [null, Buffer.from(c.words.buffer, 0, n * 8)] };
      }
    });
  }

  /** Bytes held by the data of the byte columns (the insert's size). */
  get dataBytes(): number {
    return this.cols.reduce((s, c) => s + c.dataPos + (c.spec.type === 'bytes' ? 4 * (this.rows + 1) : 0), 0);
  }

  /** A byte column's value of a row (tests, taps: what an insert holds). */
  bytesAt(i: number, row: number): Buffer {
    const c = this.cols[i]!;
    return c.data.subarray(c.offsets[row], c.offsets[row + 1]);
  }

  private endBytes(c: Column): this {
    c.growOffsets(this.rows + 2);
    // offsets[0] is always 0; row r's value ends at offsets[r + 1].
    c.offsets[this.rows + 1] = c.dataPos;
    return this;
  }

  private word64(i: number, n: number): this {
    const c = this.cols[i]!;
    c.growWords(2 * (this.rows + 1));
    c.words[2 * this.rows] = n >>> 0;
    c.words[2 * this.rows + 1] = Math.floor(n / TWO32) >>> 0;
    return this;
  }
}

/** How a table's rows become binary columns (the columnar counterpart of tsv.ts's RowEncoder). */
export interface ColumnarEncoder<R> {
  readonly columns: readonly ColumnSpec[];
  /** Writes one row: every column once, then `w.endRow()`. */
  write(row: R, w: ColumnarWriter): void;
}

/**
 * Avro codec with Confluent framing: byte 0 = 0 (magic), bytes 1-4 = schema id
 * (big-endian), then the Avro binary body. Readers resolve the writer's schema to
 * their own (avsc `createResolver`), so every earlier version stays readable.
 *
 * Encoding and decoding are synchronous; `prepare()` loads writer schemas for ids
 * not seen yet (a registry round trip) before a batch is decoded.
 */
import avro from 'avsc';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { TOPIC_NAMES, type EventMap, type TopicName } from './events.js';
import type { SchemaSource } from './registry.js';

export const MAGIC_BYTE = 0;
export const HEADER_BYTES = 5;
/** The encoder's scratch buffer grows up to this; bigger events get a buffer of their own. */
const MAX_SCRATCH_BYTES = 1024 * 1024;

/** Why a payload could not be decoded; never retried (it goes to the dead-letter topic). */
export type DecodeErrorCode = 'empty_payload' | 'too_short' | 'bad_magic_byte' | 'unknown_schema_id' | 'schema_mismatch' | 'avro_decode';

export class DecodeError extends LogmeterError {
  constructor(
    readonly reasonCode: DecodeErrorCode,
    message: string,
  ) {
    super(reasonCode, message, { retriable: false });
    this.name = 'DecodeError';
  }
}

interface ReaderState {
  type: avro.Type;
  fullName: string;
  writerId: number;
}

export class AvroCodec {
  private readonly readers = new Map<TopicName, ReaderState>();
  /** Writer schema id → its parsed type; `null` = known not to exist. */
  private readonly writers = new Map<number, avro.Type | null>();
  private scratch = Buffer.allocUnsafe(64 * 1024);
  /** `${topic}:${writerId}` → resolver (or the reader type itself when identical). */
  private readonly resolvers = new Map<string, avro.Type | avro.Resolver>();
  /** Writer ids whose lookup failed with an error that may pass (registry down). */
  private readonly transient = new Map<number, Error>();

  private constructor(private readonly source: SchemaSource) {}

  static async create(source: SchemaSource): Promise<AvroCodec> {
    const codec = new AvroCodec(source);
    for (const name of TOPIC_NAMES) {
      const { id, schema } = await source.writerSchema(name);
      const type = avro.Type.forSchema(schema);
      codec.readers.set(name, { type, fullName: type.name ?? name, writerId: id });
      codec.writers.set(id, type);
    }
    return codec;
  }

  /** The schema id this process writes `name` with. */
  writerId(name: TopicName): number {
    return this.reader(name).writerId;
  }

  readerType(name: TopicName): avro.Type {
    return this.reader(name).type;
  }

  encode<T extends TopicName>(name: T, event: EventMap[T]): Buffer {
    const { type, writerId } = this.reader(name);
    // Written behind the header in a reused scratch buffer, then copied once into a
    // buffer of the exact size (small ones come from Node's pool).
    let buf = this.scratch;
    let end: number;
    try {
      end = type.encode(event, buf, HEADER_BYTES);
      if (end < 0) {
        buf = Buffer.allocUnsafe(buf.length - end);
        end = type.encode(event, buf, HEADER_BYTES);
        if (buf.length <= MAX_SCRATCH_BYTES) this.scratch = buf;
      }
    } catch (err) {
      throw encodeError(name, type, event, err);
    }
    buf[0] = MAGIC_BYTE;
    buf.writeUInt32BE(writerId, 1);
    const out = Buffer.allocUnsafe(end);
    buf.copy(out, 0, 0, end);
    return out;
  }

  /** Fetches writer schemas for the ids in `payloads` not seen yet. Throws only on errors that may pass (registry unreachable). */
  async prepare(payloads: Iterable<Buffer | null>): Promise<void> {
    const missing = new Set<number>();
    for (const p of payloads) {
      if (p && p.length >= HEADER_BYTES && p[0] === MAGIC_BYTE) {
        const id = p.readUInt32BE(1);
        if (!this.writers.has(id)) missing.add(id);
      }
    }
    for (const id of missing) {
      try {
        const schema = await this.source.schemaById(id);
        this.writers.set(id, avro.Type.forSchema(schema));
        this.transient.delete(id);
      } catch (err) {
        if (err instanceof LogmeterError && err.code === 'unknown_schema_id') this.writers.set(id, null);
        else if (err instanceof LogmeterError && err.retriable) throw err;
        else this.writers.set(id, null);
      }
    }
  }

  /** Decodes a framed payload written for topic `name`; throws DecodeError with the reason. */
  decode<T extends TopicName>(name: T, payload: Buffer | null): EventMap[T] {
    if (!payload || payload.length === 0) throw new DecodeError('empty_payload', 'empty payload (tombstone or missing value)');
    if (payload.length < HEADER_BYTES) throw new DecodeError('too_short', `payload of ${payload.length} bytes is shorter than the 5-byte header`);
    if (payload[0] !== MAGIC_BYTE) throw new DecodeError('bad_magic_byte', `first byte is 0x${payload[0]!.toString(16).padStart(2, '0')}, expected 0x00 (Confluent framing)`);
    const id = payload.readUInt32BE(1);
    const reader = this.reader(name);
    const decoder = this.decoderFor(name, reader, id);
    try {
      return reader.type.fromBuffer(payload.subarray(HEADER_BYTES), decoder === reader.type ? undefined : (decoder)) as EventMap[T];
    } catch (err) {
      throw new DecodeError('avro_decode', `${payload.length - HEADER_BYTES}-byte body is not a ${reader.fullName} written with schema id ${id}: ${errorMessage(err)}`);
    }
  }

  private decoderFor(name: TopicName, reader: ReaderState, id: number): avro.Type | avro.Resolver {
    const key = `${name}:${id}`;
    const hit = this.resolvers.get(key);
    if (hit) return hit;
    const writer = this.writers.get(id);
    if (writer === undefined) throw new DecodeError('unknown_schema_id', `schema id ${id} not loaded (call prepare() first)`);
    if (writer === null) throw new DecodeError('unknown_schema_id', `schema id ${id} is not registered`);
    if (writer.name !== reader.fullName) throw new DecodeError('schema_mismatch', `schema id ${id} is ${writer.name ?? 'anonymous'}, topic ${name} carries ${reader.fullName}`);
    let decoder: avro.Type | avro.Resolver;
    if (writer.equals(reader.type)) decoder = reader.type;
    else {
      try {
        decoder = reader.type.createResolver(writer);
      } catch (err) {
        throw new DecodeError('schema_mismatch', `schema id ${id} cannot be read as the current ${reader.fullName}: ${errorMessage(err)}`);
      }
    }
    this.resolvers.set(key, decoder);
    return decoder;
  }

  private reader(name: TopicName): ReaderState {
    const r = this.readers.get(name);
    if (!r) throw new LogmeterError('unknown_topic', `no schema for topic ${name}`);
    return r;
  }
}

/**
 * An event that does not fit its schema (a value out of range, a missing field) will
 * not fit on a retry either: not retriable, with the fields named, so a consumer
 * dead-letters the message that produced it instead of retrying it forever.
 */
function encodeError(name: TopicName, type: avro.Type, event: unknown, err: unknown): LogmeterError {
  const bad: string[] = [];
  type.isValid(event, { errorHook: (path, value) => void bad.push(`${path.join('.') || '(event)'} = ${clipValue(value)}`) });
  return new LogmeterError('encode_failed', `cannot encode a ${name} event: ${bad.length > 0 ? `invalid ${bad.slice(0, 5).join(', ')}` : errorMessage(err)}`, { retriable: false, cause: err });
}

function clipValue(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : Buffer.isBuffer(v) ? `<${v.length} bytes>` : String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

/**
 * Checks that `newer` can read data written with every schema in `older` (backward
 * compatibility, as a registry's BACKWARD_TRANSITIVE check); returns the problems.
 */
export function compatibilityProblems(newer: avro.Schema, older: avro.Schema[]): string[] {
  const reader = avro.Type.forSchema(newer);
  const problems: string[] = [];
  older.forEach((schema, i) => {
    try {
      reader.createResolver(avro.Type.forSchema(schema));
    } catch (err) {
      problems.push(`version ${i + 1}: ${errorMessage(err)}`);
    }
  });
  return problems;
}

/** How kafkajs' errors become LogmeterErrors (retriable or not) for the bus (kafkajs.ts). */
import { LogmeterError, errorMessage } from '../errors.js';
import type { RawBatch } from './bus.js';

/**
 * A kafkajs error as a LogmeterError whose `retriable` says whether trying again can help:
 * - a message over the size limit never passes: `kafka_message_too_large`, not retriable,
 *   naming the topic and the size, so the producer's owner can act;
 * - a broker that cannot be reached, or kafkajs giving up after its own retries
 *   (KafkaJSNumberOfRetriesExceeded, which kafkajs marks non-retriable although its cause,
 *   a broker away or a leader moving, may well pass later): `kafka_unreachable`, retriable;
 * - anything else: `kafka_error` with kafkajs' own `retriable` flag (retriable when absent).
 */
export function kafkaError(err: unknown, brokers: string[], sent?: readonly RawBatch[]): LogmeterError {
  if (err instanceof LogmeterError) return err;
  const retriable = typeof err === 'object' && err !== null && 'retriable' in err ? Boolean(err.retriable) : true;
  if (sent && causes(err).some((e) => (e as { type?: unknown }).type === 'MESSAGE_TOO_LARGE')) {
    const sizes = sent.flatMap((b) => b.messages.map((m) => ({ topic: b.topic, bytes: (m.value?.length ?? 0) + (m.key?.length ?? 0) })));
    const largest = sizes.reduce((a, b) => (b.bytes > a.bytes ? b : a), { topic: '', bytes: 0 });
    return new LogmeterError('kafka_message_too_large', `Kafka (${brokers.join(',')}): ${sizes.length} message(s) refused as too large; the largest is ${largest.bytes} bytes, for ${largest.topic} (over the broker's message.max.bytes or the topic's max.message.bytes): ${errorMessage(err)}`, { retriable: false, cause: err });
  }
  // kafkajs wraps a broker away (a connection refused, a lock or metadata timeout during a
  // restart) in its non-retriable errors: the whole cause chain says what it was.
  const away = causes(err).some((e) => /Connection|Timeout|Broker|NumberOfRetriesExceeded|Metadata|Coordinator/.test(e instanceof Error ? e.name : ''));
  const code = away ? 'kafka_unreachable' : 'kafka_error';
  return new LogmeterError(code, `Kafka (${brokers.join(',')}): ${errorMessage(err)}`, { retriable: retriable || code === 'kafka_unreachable', cause: err });
}

/** Kafka's refusals of an idempotent producer's state, which only a new producer gets past. */
const PRODUCER_STATE_ERRORS = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH']);

/** The refusal of the producer's state in `err`'s cause chain (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER), if any. */
export function producerStateError(err: unknown): string | undefined {
  return causes(err)
    .map((e) => (e as { type?: unknown }).type)
    .find((t): t is string => typeof t === 'string' && PRODUCER_STATE_ERRORS.has(t));
}

/** The error and the errors it wraps (kafkajs wraps a refusal in its retry errors). */
function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err; typeof e === 'object' && e !== null && out.length < 10; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

/**
 * The group's state when `err` is kafkajs' refusal to set a group's offsets while it has
 * members ("The consumer group must have no running instances, current state: Stable").
 */
export function groupBusyState(err: unknown): string | undefined {
  for (const e of causes(err)) {
    const m = /must have no running instances(?:, current state: (\w+))?/.exec(e instanceof Error ? e.message : '');
    if (m) return m[1] ?? 'unknown';
  }
  return undefined;
}

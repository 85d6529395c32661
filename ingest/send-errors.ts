/**
 * The sender's view of Kafka's refusals: which send errors can never pass for a batch, and
 * the dead letter of a message Kafka refused for good (see sender.ts' retry policy).
 */
import { createHash } from 'node:crypto';
import { LogmeterError, errorMessage, isRetriable } from '../lib/errors.js';
import { DLQ_MAX_KEY_BYTES, DLQ_MAX_PAYLOAD_BYTES } from '../lib/bus/bus.js';
import type { DeadLetter } from '../schemas/events.js';

/**
 * Whether a send error can never pass for these messages. Not retriable (isRetriable),
 * and nothing in its cause chain is the broker or the network being away: kafkajs wraps
 * a lock or metadata timeout during a broker restart, or a producer disconnecting, in
 * non-retriable errors although the same send passes a moment later.
 */
export function isPermanentSendError(err: unknown): boolean {
  if (isRetriable(err)) return false;
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const name = e instanceof Error ? e.name : '';
    if (/Connection|Timeout|Broker|NumberOfRetriesExceeded|Metadata|Coordinator/.test(name) || /disconnect/i.test(errorMessage(e))) return false;
  }
  return true;
}

/** A permanent send error as a LogmeterError with a code (kafkajs' own errors keep their message). */
export function permanent(err: unknown): LogmeterError {
  if (err instanceof LogmeterError) return err;
  return new LogmeterError('kafka_error', errorMessage(err), { retriable: false, cause: err });
}

/**
 * The dead letter of a message Kafka refused for good: the message's key and bytes (cut
 * to the dead-letter bounds, the reason saying so), the refusal's code and reason. It was
 * never written, so it has no partition or offset (0); its id is a function of its topic
 * and bytes, so a message refused again after a restart gives the same letter.
 */
export function rejectedLetter(m: { topic: string; key: string; value: Buffer }, err: LogmeterError, node: string, now: number): DeadLetter {
  const key = Buffer.from(m.key);
  const cut = (b: Buffer, max: number, what: string) => (b.length > max ? { b: b.subarray(0, max), note: ` (${what} cut to ${max} of ${b.length} bytes)` } : { b, note: '' });
  const k = cut(key, DLQ_MAX_KEY_BYTES, 'key');
  const payload = cut(m.value, DLQ_MAX_PAYLOAD_BYTES, 'payload');
  const reason = err.message.length > 4096 ? `${err.message.slice(0, 4096)}…` : err.message;
  return {
    event_id: createHash('sha256').update(m.topic).update('\0').update(key).update('\0').update(m.value).update('\0').update(err.code).digest('hex').slice(0, 32),
    tenant: '',
    app: '',
    node,
    container_id: '',
    ts: now,
    source_topic: m.topic,
    source_partition: 0,
    source_offset: 0,
    source_timestamp: now,
    consumer_group: 'collector',
    key: k.b,
    payload: payload.b,
    error_code: err.code,
    reason: `${reason}${k.note}${payload.note}`,
  };
}

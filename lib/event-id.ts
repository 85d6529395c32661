/**
 * Event ids are derived, never random: the same inputs give the same id in every process
 * and on every replay, so a repeat is removed downstream (the tables are keyed by it).
 *
 * The id is the first 32 hex digits of SHA-256 over the parts, each followed by a NUL. It is
 * computed in one call (`crypto.hash`) over the joined string: the same bytes as hashing the
 * parts one by one, without a Hash object per event (the collector makes one id per line).
 */
import { hash } from 'node:crypto';

/** Deterministic event id: the same inputs give the same id in every process, on every replay. */
export function eventId(...parts: Array<string | number>): string {
  let joined = '';
  for (const p of parts) joined += `${p}\0`;
  return hash('sha256', joined, 'hex').slice(0, 32);
}

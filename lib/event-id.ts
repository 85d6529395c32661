/**
 * Event ids are derived, never random: the same inputs give the same id in every process
 * and on every replay, so a repeat is removed downstream (the tables are keyed by it).
 */
import { createHash } from 'node:crypto';

/** Deterministic event id: the same inputs give the same id in every process, on every replay. */
export function eventId(...parts: Array<string | number>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(String(p)).update('\0');
  return h.digest('hex').slice(0, 32);
}

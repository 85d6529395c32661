/**
 * What the collector is doing, part by part and since when (issue 13: a silent stall of the
 * Docker side must be diagnosable): collector.diagnose() gives it in full (logged at a Kafka
 * stall); `healthDetail` is the part without tenants, container names or keys, for the
 * unauthenticated `/healthz`.
 */
import type { EventsPhase } from './docker-events.js';
import type { FollowerDiagnosis, FollowerPhase } from './follower.js';
import type { InFlight, Stall } from './sender.js';

/** A sender's state, for diagnose(). */
export interface SenderDiagnosis {
  bufferedEvents: number;
  bufferedBytes: number;
  /** Bytes charged for what followers waiting for room hold of their Docker streams (at most half the bound). */
  heldBytes: number;
  /** The produce request waited for, if any (`since`: when its attempt was sent). */
  inFlight: InFlight | undefined;
  stalled: Stall | undefined;
}

/** What each part of the collector is doing and since when (epoch ms): to tell a stall from a quiet node. */
export interface CollectorDiagnosis {
  at: number;
  dockerEvents: { phase: EventsPhase; since: number; events: number };
  followers: Array<{ containerId: string; name: string; tenant: string; app: string } & FollowerDiagnosis>;
  sender: SenderDiagnosis;
  /** The lifecycle events' sender (the same as `sender` when they share one). */
  lifecycleSender: SenderDiagnosis;
}

/** What `/healthz` shows of a diagnosis: phases, counts, times and sizes, no identifiers (ISO times). */
export interface CollectorHealthDetail {
  dockerEvents: { phase: EventsPhase; since: string };
  /** Followers per phase, and since when the longest-standing one of each phase is in it. */
  followers: Partial<Record<FollowerPhase, { count: number; oldestSince: string }>>;
  sender: { bufferedEvents: number; bufferedBytes: number; inFlight: { since: string; attempt: number; messages: number; bytes: number } | null };
}

export function healthDetail(d: CollectorDiagnosis): CollectorHealthDetail {
  const iso = (ms: number) => new Date(ms).toISOString();
  const followers: CollectorHealthDetail['followers'] = {};
  for (const f of d.followers) {
    const entry = followers[f.phase];
    if (!entry) followers[f.phase] = { count: 1, oldestSince: iso(f.since) };
    else {
      entry.count++;
      if (iso(f.since) < entry.oldestSince) entry.oldestSince = iso(f.since);
    }
  }
  const f = d.sender.inFlight;
  return {
    dockerEvents: { phase: d.dockerEvents.phase, since: iso(d.dockerEvents.since) },
    followers,
    sender: { bufferedEvents: d.sender.bufferedEvents, bufferedBytes: d.sender.bufferedBytes, inFlight: f ? { since: iso(f.since), attempt: f.attempt, messages: f.messages, bytes: f.bytes } : null },
  };
}

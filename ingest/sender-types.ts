/**
 * The sender's types (ingest/sender.ts): what it is given to send, its options, and what it
 * reports (the request in flight, a stall, what close() left).
 */
import type { LogmeterError } from '../lib/errors.js';

/** Told of acknowledgements by number: one object per log stream instead of a closure per line. */
export interface AckTarget {
  produced(n: number): void;
  /** Message `n` will never be in Kafka (refused, dead-lettered if possible): accounted for, not produced. */
  rejected?(n: number): void;
}

export interface Outgoing {
  topic: string;
  key: string;
  value: Buffer;
  /** Whose event it is: tenants are served in turn (fair-queue.ts); undefined for the node's own events. */
  tenant?: string | undefined;
  onAck?: (() => void) | undefined;
  /** With `n`: `ackTarget.produced(n)` runs after the acknowledgement (after `onAck`, if both are set). */
  ackTarget?: AckTarget | undefined;
  n?: number;
}

export type PublishBatch = (batches: { topic: string; messages: Outgoing[] }[]) => Promise<void>;

export interface SenderOptions {
  batchBytes: number;
  lingerMs: number;
  /** The memory bound: bytes charged for events waiting or in flight (values and `eventOverheadBytes` each). */
  maxBufferedBytes: number;
  /** Charged per event on top of its value's length (default EVENT_OVERHEAD_BYTES); 0 counts values only. */
  eventOverheadBytes?: number;
  /** Called after each failed send that is retried, before the retry. */
  onError?: (err: unknown) => void;
  onSent?: (messages: number, bytes: number) => void;
  /** Called for each message Kafka refused for good (after it was logged), with the error that refused it. */
  onRejected?: (m: Outgoing, err: LogmeterError) => void;
  /** The dead letter of a refused message, sent in its place; undefined when it has none (e.g. a letter itself). */
  deadLetter?: (m: Outgoing, err: LogmeterError) => Outgoing | undefined;
  /** Longest wait for one send attempt before it is abandoned and the producer rebuilt (ms). Default 30000. */
  requestTimeoutMs?: number;
  /** Watchdog: events buffered and nothing acknowledged for this long is a stall (ms). Default 30000; 0 turns it off. */
  stallMs?: number;
  /** Tears down and rebuilds the producer (a hung request, a stall). */
  resetProducer?: (reason: string) => Promise<void>;
  /** Called on each stall the watchdog finds, after it was logged. */
  onStall?: (stall: Stall) => void;
  /** The partition a key goes to, when the bus knows it (for the stall report). */
  partitionOf?: (topic: string, key: string) => number | undefined;
}

/** The request the sender is waiting for. */
export interface InFlight {
  /** When the current attempt was sent (epoch ms). */
  since: number;
  attempt: number;
  messages: number;
  bytes: number;
  /** Per topic: the partitions (when known) and keys of its messages, a few of them. */
  topics: Array<{ topic: string; partitions: number[]; keys: string[]; messages: number }>;
}

/** What the watchdog saw. */
export interface Stall {
  /** Since when nothing was acknowledged although events were buffered (epoch ms). */
  since: number;
  bufferedBytes: number;
  inFlight: InFlight | undefined;
  reason: string;
}

/** What `close()` left: events never acknowledged (waiting or in flight when it gave up) and their charged bytes (`buffered`). */
export interface CloseReport {
  /** True when everything was acknowledged before the deadline. */
  acked: boolean;
  unsentEvents: number;
  unsentBytes: number;
}

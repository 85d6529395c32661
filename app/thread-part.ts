/**
 * "A part of `logmeter up` on a thread of its own": what the part's module exports, and
 * the messages between the main thread (app/thread-host.ts) and the thread
 * (app/thread-entry.ts). A part is a module whose `start(ctx)` starts it inside the
 * thread and returns what the host asks it over messages: stop, health, summary. Its
 * metrics are the registry in `ctx`; what the main thread needs from it as it happens
 * (say, the route sets it published) it sends with `ctx.emit`.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';

export interface ThreadContext<C> {
  /** The part's name (`routes`): its metrics' `thread` label, its log lines' `thread` field. */
  name: string;
  /** What the host was given for the part: structured-cloned, so plain data only. */
  config: C;
  logger: Logger;
  /** The thread's registry: the main process serves it on its `/metrics` (merged). */
  registry: Registry;
  /** 0 at the first start, n at the n-th restart after the thread died. */
  restarts: number;
  /** Sends `payload` (plain data) to the host's `onEvent` listeners on the main thread, in order. */
  emit(this: void, event: string, payload: unknown): void;
}

export interface ThreadPart {
  /** Stops the part; the thread ends once it resolved. */
  stop(): Promise<void>;
  /** Resolves when healthy; throws (a lib/http.ts `Degraded` for "degraded") when not. */
  health?(): Promise<void>;
  /** Plain data the host hands to whoever asked for the summary. */
  summary?(): unknown;
  /** Plain data the host hands to whoever asked for the detail (say, a `/healthz` detail). */
  detail?(): unknown;
}

/** The module a host names as its entry exports this. */
export type StartPart<C> = (ctx: ThreadContext<C>) => Promise<ThreadPart>;

/** What the host sends the thread once, before any call: the module and its config. */
export interface ThreadData {
  name: string;
  /** `file:` URL of the part's module (exports `start: StartPart`). */
  module: string;
  config: unknown;
  restarts: number;
  logLevel: string;
  logDestination: number | string;
}

export type ThreadOp = 'stop' | 'health' | 'summary' | 'detail' | 'metrics';

export type HostMessage = { kind: 'call'; id: number; op: ThreadOp };

export type ThreadMessage =
  | { kind: 'started' }
  | { kind: 'failed'; error: string }
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: string; degraded: boolean }
  | { kind: 'event'; event: string; payload: unknown };

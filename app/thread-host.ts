/**
 * Runs a part of the process on a thread of its own (a `worker_thread`): the part's
 * module (app/thread-part.ts) is started there by app/thread-entry.ts, and everything
 * between the two goes over messages: start (the thread's data), stop, health, summary,
 * detail, metrics, and the part's own events. A worker dies with the process (a SIGKILL leaves
 * no orphan behind), and its event loop is its own: what the part does never waits for
 * the main thread's work, nor the main thread's for it.
 *
 * - A thread that ends while it should run (an error thrown and not caught, `kill()`) is
 *   logged, counted (`logmeter_thread_restarts_total{thread}`) and started again after a
 *   backoff (`initialMs` doubling to `maxMs`; back to `initialMs` once a thread ran
 *   `resetAfterMs`). The first start is the caller's: if it fails, `startThread` rejects.
 * - `stop()` asks the part to stop and waits for the thread to end (`terminate()` after
 *   `stopTimeoutMs`); a restart waiting for its backoff is called off.
 * - `serveThread` puts the thread on the process's HTTP surface: a `/healthz` check named
 *   after it (degraded while it restarts), its state in the details, its registry merged
 *   into `/metrics`.
 */
import { Worker } from 'node:worker_threads';
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { counter, gauge } from '../lib/metrics.js';
import { Degraded, type HttpServer } from '../lib/http.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import type { HostMessage, ThreadData, ThreadMessage, ThreadOp } from './thread-part.js';

export type ThreadMetrics = MetricObjectWithValues<MetricValue<string>>[];
export type ThreadState = 'starting' | 'running' | 'restarting' | 'stopping' | 'stopped';

export interface ThreadOptions<C> {
  /** The part's name: `thread` label, log field, health check. */
  name: string;
  /** The part's module (exports `start`, see app/thread-part.ts). */
  module: URL;
  /** Handed to the part's `start` (structured-cloned: plain data only). */
  config: C;
  logger: Logger;
  /** The main thread's registry (restarts, up). */
  registry: Registry;
  /** Level of the thread's own logger. */
  logLevel: string;
  /** Where the thread's logger writes (a file descriptor or path). Default 1, stdout, like the process's. */
  logDestination?: number | string;
  /** The part's events (`ctx.emit`), in the order sent, from the first start on. */
  onEvent?: (event: string, payload: unknown) => void;
  backoff?: { initialMs?: number; maxMs?: number; resetAfterMs?: number };
  /** Longest wait for a health, summary or metrics answer. Default 2000 ms. */
  callTimeoutMs?: number;
  /** Longest wait for the part to stop before the thread is terminated. Default 60000 ms. */
  stopTimeoutMs?: number;
}

export interface ThreadHost {
  readonly name: string;
  state(): ThreadState;
  /** Restarts after the thread died, so far. */
  restarts(): number;
  /** The part's events (`ctx.emit`), in the order sent. Returns the unsubscribe function. */
  onEvent(listener: (event: string, payload: unknown) => void): () => void;
  /** Called each time the part started (`restarts` 0 at the first start). Returns the unsubscribe function. */
  onStarted(listener: (restarts: number) => void): () => void;
  /** Resolves when the thread runs and its part says it is healthy. */
  health(): Promise<void>;
  /** The part's summary (undefined while the thread does not run). */
  summary(): Promise<unknown>;
  /** The part's detail (undefined while the thread does not run or does not answer in time). */
  detail(): Promise<unknown>;
  /** The thread's metrics; the last ones known when it does not answer in time, none once stopped. */
  metrics(): Promise<ThreadMetrics>;
  /** Ends the thread at once, as a crash would (`worker.terminate()`): it is restarted like after one. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** The threads this process runs (started and not stopped), for diagnosis and tests. */
const running = new Set<ThreadHost>();

export function threads(): readonly ThreadHost[] {
  return [...running];
}

interface Call {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export async function startThread<C>(o: ThreadOptions<C>): Promise<ThreadHost> {
  const log = o.logger.child({ component: 'thread', thread: o.name });
  const initialMs = o.backoff?.initialMs ?? 500;
  const maxMs = o.backoff?.maxMs ?? 30_000;
  const resetAfterMs = o.backoff?.resetAfterMs ?? 60_000;
  const callTimeoutMs = o.callTimeoutMs ?? 2000;
  const restartsTotal = counter(o.registry, 'logmeter_thread_restarts_total', 'Threads of the process started again after they died', ['thread']);
  const up = gauge(o.registry, 'logmeter_thread_up', '1 while the thread of a part of the process runs', ['thread']);
  restartsTotal.inc({ thread: o.name }, 0);
  up.set({ thread: o.name }, 0);

  let state: ThreadState = 'starting';
  let worker: Worker | undefined;
  let exited: Promise<number> = Promise.resolve(0);
  let restarts = 0;
  let attempt = 0;
  let startedAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let lastMetrics: ThreadMetrics = [];
  let nextId = 0;
  const calls = new Map<number, Call>();
  const eventListeners = new Set<(event: string, payload: unknown) => void>(o.onEvent ? [o.onEvent] : []);
  const startedListeners = new Set<(restarts: number) => void>();

  function call(op: ThreadOp, timeoutMs?: number): Promise<unknown> {
    const w = worker;
    if (!w) return Promise.reject(new LogmeterError('thread_not_running', `thread ${o.name} is ${state}`));
    const id = ++nextId;
    return new Promise((resolve, reject) => {
      const t = timeoutMs === undefined ? undefined : setTimeout(() => {
        calls.delete(id);
        reject(new Degraded(`thread ${o.name} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      calls.set(id, {
        resolve: (v) => (clearTimeout(t), resolve(v)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      w.postMessage({ kind: 'call', id, op } satisfies HostMessage);
    });
  }

  /** Starts a thread; resolves once its part started, rejects if it failed to (the thread then ends). */
  function spawn(): Promise<void> {
    const data: ThreadData = { name: o.name, module: o.module.href, config: o.config, restarts, logLevel: o.logLevel, logDestination: o.logDestination ?? 1 };
    // No options inherited from the process's command line (`--input-type` of a `node -e` would fail the
    // worker): bin/logmeter-thread.mjs registers tsx itself.
    const w = new Worker(new URL('../bin/logmeter-thread.mjs', import.meta.url), { workerData: data, execArgv: [] });
    worker = w;
    let started!: () => void;
    let failed!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => ((started = res), (failed = rej)));
    let lastError: string | undefined;
    w.on('message', (m: ThreadMessage) => {
      switch (m.kind) {
        case 'started':
          state = state === 'stopping' ? state : 'running';
          startedAt = Date.now();
          up.set({ thread: o.name }, 1);
          started();
          for (const l of startedListeners) l(restarts);
          break;
        case 'failed':
          lastError = m.error;
          failed(new LogmeterError('thread_start_failed', `thread ${o.name} did not start: ${m.error}`));
          break;
        case 'reply': {
          const c = calls.get(m.id);
          calls.delete(m.id);
          if (m.ok) c?.resolve(m.value);
          else c?.reject(m.degraded ? new Degraded(m.error) : new Error(m.error));
          break;
        }
        case 'event':
          for (const l of eventListeners) l(m.event, m.payload);
          break;
      }
    });
    w.on('error', (err) => {
      lastError = errorMessage(err);
      log.error({ err: lastError }, `thread ${o.name}: uncaught error`);
    });
    exited = new Promise((resolve) =>
      w.once('exit', (code) => {
        if (worker === w) worker = undefined;
        up.set({ thread: o.name }, 0);
        for (const c of calls.values()) c.reject(new LogmeterError('thread_exited', `thread ${o.name} ended (exit code ${code})`));
        calls.clear();
        failed(new LogmeterError('thread_start_failed', `thread ${o.name} ended before it started (exit code ${code}${lastError ? `: ${lastError}` : ''})`));
        if (state === 'running' || (state === 'starting' && restarts > 0)) died(code, lastError);
        resolve(code);
      }),
    );
    return ready;
  }

  /** The thread ended while it should run: started again after the backoff. */
  function died(code: number, err: string | undefined): void {
    if (startedAt > 0 && Date.now() - startedAt >= resetAfterMs) attempt = 0;
    const delay = Math.min(maxMs, initialMs * 2 ** attempt);
    attempt++;
    state = 'restarting';
    log.error({ exitCode: code, err, restartInMs: delay, restarts }, `thread ${o.name} died (exit code ${code}); starting it again in ${delay} ms`);
    timer = setTimeout(() => {
      timer = undefined;
      if (state !== 'restarting') return;
      restarts++;
      restartsTotal.inc({ thread: o.name });
      state = 'starting';
      spawn().then(
        () => log.info({ restarts }, `thread ${o.name} started again`),
        (e: unknown) => log.error({ err: errorMessage(e) }, `thread ${o.name}: restart failed`),
      );
    }, delay);
  }

  try {
    await spawn();
  } catch (err) {
    state = 'stopped';
    await exited;
    throw err;
  }
  log.info({ threadId: worker?.threadId }, `thread ${o.name} started`);

  const host: ThreadHost = {
    name: o.name,
    state: () => state,
    restarts: () => restarts,
    onEvent(listener) {
      eventListeners.add(listener);
      return () => eventListeners.delete(listener);
    },
    onStarted(listener) {
      startedListeners.add(listener);
      return () => startedListeners.delete(listener);
    },
    async health() {
      if (state === 'restarting' || state === 'starting') throw new Degraded(`thread ${o.name} is ${state} (restarts: ${restarts})`);
      if (state !== 'running') throw new Error(`thread ${o.name} is ${state}`);
      await call('health', callTimeoutMs);
    },
    summary: () => (state === 'running' ? call('summary', callTimeoutMs).catch(() => undefined) : Promise.resolve(undefined)),
    detail: () => (state === 'running' ? call('detail', callTimeoutMs).catch(() => undefined) : Promise.resolve(undefined)),
    async metrics() {
      if (state === 'stopped') return [];
      if (state === 'running') {
        try {
          lastMetrics = (await call('metrics', callTimeoutMs)) as ThreadMetrics;
        } catch {
          // The last ones known: a busy or restarting thread does not hold up /metrics.
        }
      }
      return lastMetrics;
    },
    async kill() {
      const w = worker;
      if (!w) return;
      log.warn(`thread ${o.name}: terminating it`);
      await w.terminate();
    },
    async stop() {
      if (state === 'stopped' || state === 'stopping') return exited.then(() => undefined);
      const was = state;
      state = 'stopping';
      if (timer) clearTimeout(timer);
      timer = undefined;
      const w = worker;
      if (!w || was === 'restarting') {
        state = 'stopped';
        running.delete(host);
        return;
      }
      const stopTimeoutMs = o.stopTimeoutMs ?? 60_000;
      let t: NodeJS.Timeout | undefined;
      const overdue = new Promise<'overdue'>((r) => (t = setTimeout(() => r('overdue'), stopTimeoutMs)));
      try {
        const stopped = call('stop').catch((err: unknown) => log.warn({ err: errorMessage(err) }, `thread ${o.name}: its part failed to stop`));
        if ((await Promise.race([stopped.then(() => exited), overdue])) === 'overdue') {
          log.warn({ stopTimeoutMs }, `thread ${o.name} did not stop within ${stopTimeoutMs} ms: terminated`);
          await w.terminate();
        }
        await exited;
      } finally {
        clearTimeout(t);
        state = 'stopped';
        lastMetrics = [];
        running.delete(host);
      }
    },
  };
  running.add(host);
  return host;
}

/** The thread on the process's HTTP surface: a `/healthz` check and detail named after it, its metrics in `/metrics`. */
export function serveThread(http: HttpServer, host: ThreadHost): void {
  http.addHealthCheck(host.name, () => host.health());
  http.addHealthDetail(`thread:${host.name}`, () => ({ state: host.state(), restarts: host.restarts() }));
  http.addMetrics(() => host.metrics());
}

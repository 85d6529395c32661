/**
 * Inside a part's thread (see app/thread-part.ts): starts the part named in `workerData`,
 * answers the host's calls (stop, health, summary, detail, metrics), and passes the part's events
 * on. Loaded by bin/logmeter-thread.mjs, which registers tsx first (a worker does not inherit
 * the main thread's `register()`).
 *
 * The thread ends when the part is stopped (after the `stop` reply). A part that fails to
 * start ends it with a `failed` message; anything thrown later and not caught ends it
 * too (the host restarts it).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { LevelWithSilent } from 'pino';
import { createLogger } from '../lib/logger.js';
import { Gauge, createRegistry } from '../lib/metrics.js';
import { Degraded } from '../lib/http.js';
import { errorMessage } from '../lib/errors.js';
import type { HostMessage, StartPart, ThreadData, ThreadMessage, ThreadPart } from './thread-part.js';

if (!parentPort) throw new Error('app/thread-entry.ts runs in a worker thread only');
const port = parentPort;
const data = workerData as ThreadData;
const send = (m: ThreadMessage) => port.postMessage(m);
const logger = createLogger(data.logLevel as LevelWithSilent, data.logDestination).child({ thread: data.name });
// No default metrics: the process's own (CPU, memory, GC) are the main thread's; two copies would add up.
const registry = createRegistry(false);

// The thread's own event-loop delay since the last scrape: what the part's work waits for here.
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
new Gauge({
  name: 'logmeter_thread_event_loop_delay_seconds',
  help: 'Event-loop delay of a part of the process on its own thread, since the last scrape (quantile 1: the longest)',
  labelNames: ['thread', 'quantile'],
  registers: [registry],
  collect() {
    for (const [q, v] of [['0.5', loop.percentile(50)], ['0.99', loop.percentile(99)], ['1', loop.max]] as const) this.set({ thread: data.name, quantile: q }, Number.isFinite(v) ? v / 1e9 : 0);
    loop.reset();
  },
});

let part: ThreadPart | undefined;

/** Ends the thread: at once if nothing is left running in it, else after a second (what is left is abandoned). */
function end(code: number): () => void {
  return () => {
    process.exitCode = code;
    port.close();
    setTimeout(() => process.exit(code), 1000).unref();
  };
}

async function answer(id: number, fn: () => unknown): Promise<void> {
  try {
    send({ kind: 'reply', id, ok: true, value: await fn() });
  } catch (err) {
    send({ kind: 'reply', id, ok: false, error: errorMessage(err), degraded: err instanceof Degraded });
  }
}

port.on('message', (m: HostMessage) => {
  if (m.kind !== 'call') return;
  switch (m.op) {
    case 'stop':
      void answer(m.id, async () => {
        // A stop asked while the part still starts waits for the start (a failed one leaves nothing to stop).
        await starting;
        await part?.stop();
        part = undefined;
        loop.disable();
      }).then(end(0));
      break;
    case 'health':
      void answer(m.id, () => part?.health?.());
      break;
    case 'summary':
      void answer(m.id, () => part?.summary?.());
      break;
    case 'detail':
      void answer(m.id, () => part?.detail?.());
      break;
    case 'metrics':
      void answer(m.id, () => registry.getMetricsAsJSON());
      break;
  }
});

const starting = (async () => {
  try {
    const mod = (await import(data.module)) as { start?: StartPart<unknown> };
    if (typeof mod.start !== 'function') throw new Error(`${data.module} exports no start()`);
    part = await mod.start({ name: data.name, config: data.config, logger, registry, restarts: data.restarts, emit: (event, payload) => send({ kind: 'event', event, payload }) });
    send({ kind: 'started' });
  } catch (err) {
    logger.error({ err: errorMessage(err) }, `thread ${data.name}: start failed`);
    send({ kind: 'failed', error: errorMessage(err) });
    end(1)();
  }
})();

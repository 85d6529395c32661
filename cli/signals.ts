/**
 * Runs a long-lived command until SIGINT/SIGTERM, then stops it cleanly and exits 0.
 *
 * While stopping, a line each second names the steps still running (`waiting for
 * processor:log-sink, collector`), and each step logs when it is done and after how
 * long, so a slow stop says what it waits for. A second
 * signal exits at once (status 130): nothing acknowledged is lost by it, since a line
 * counts as acknowledged only once Kafka has it, and offsets and the collector's
 * checkpoints move only after that; what was in flight is read or sent again at the
 * next start (at-least-once).
 */
import type { Logger } from '../lib/logger.js';

/** Names the parts of a stop, for the once-a-second "still waiting for" line. */
export interface StopSteps {
  /** Runs `fn` as the step `name` (steps may run at the same time). */
  step: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

/** How often the still-waiting line is logged while stopping. */
const WAITING_LINE_MS = 1000;

export async function runUntilSignal(logger: Logger, start: () => Promise<void>, stop: (steps: StopSteps) => Promise<void>): Promise<void> {
  const log = logger.child({ component: 'process' });
  let stopping: Promise<void> | undefined;
  const pending = new Map<string, number>();
  let began = Date.now();
  const steps: StopSteps = {
    async step(name, fn) {
      pending.set(name, (pending.get(name) ?? 0) + 1);
      try {
        return await fn();
      } finally {
        const left = (pending.get(name) ?? 1) - 1;
        if (left > 0) pending.set(name, left);
        else pending.delete(name);
        log.info({ step: name, elapsedMs: Date.now() - began }, `stopped ${name}`);
      }
    },
  };
  const shutdown = (signal: string) => {
    if (stopping) {
      log.warn({ signal, waiting: [...pending.keys()] }, 'second signal: exiting now (what Kafka acknowledged is kept; the rest is read or sent again at the next start)');
      logger.flush();
      process.exit(130);
    }
    began = Date.now();
    const ticker = setInterval(() => {
      const waiting = [...pending.keys()];
      log.info({ waiting, elapsedMs: Date.now() - began }, `stopping: waiting for ${waiting.join(', ') || 'the last steps'}`);
    }, WAITING_LINE_MS);
    stopping = (async () => {
      log.info({ signal }, 'stopping (a second signal exits at once)');
      try {
        await stop(steps);
        log.info({ elapsedMs: Date.now() - began }, 'stopped');
      } catch (err) {
        log.error({ err }, 'error while stopping');
        process.exitCode = 1;
      } finally {
        clearInterval(ticker);
      }
      logger.flush();
    })();
    void stopping.then(() => process.exit());
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  try {
    await start();
  } catch (err) {
    await stop(steps).catch(() => undefined);
    throw err;
  }
  await new Promise<void>(() => undefined);
}

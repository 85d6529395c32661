/**
 * A small part for test/thread-host.test.ts: counts its starts in its registry, says hello
 * with its restart number, and — while `restarts < config.crashes` — throws an error nobody
 * catches `config.crashAfterMs` after its start (a crash of the thread).
 */
import { Counter } from 'prom-client';
import { Degraded } from '../../lib/http.js';
import type { StartPart } from '../../app/thread-part.js';

export const start: StartPart<{ crashes: number; crashAfterMs: number; degraded?: boolean }> = ({ config, registry, restarts, emit }) => {
  new Counter({ name: 'test_thread_part_starts_total', help: 'starts of the test part', registers: [registry] }).inc();
  emit('hello', { restarts });
  const crash = restarts < config.crashes ? setTimeout(() => {
    throw new Error(`crash ${restarts + 1}`);
  }, config.crashAfterMs) : undefined;
  return Promise.resolve({
    stop: () => {
      clearTimeout(crash);
      emit('bye', { restarts });
      return Promise.resolve();
    },
    health: () => (config.degraded ? Promise.reject(new Degraded('told to be')) : Promise.resolve()),
    summary: () => ({ restarts }),
  });
};

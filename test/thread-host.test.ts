/**
 * The generic thread host (app/thread-host.ts) with a small part (test/helpers/thread-part.ts):
 * events in order, summary, health and metrics over messages, a crash restarted with its
 * count on the main registry, a stop that ends the thread.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../lib/metrics.js';
import { createLogger } from '../lib/logger.js';
import { startThread } from '../app/thread-host.js';

const logger = createLogger('silent');
const module = new URL('./helpers/thread-part.ts', import.meta.url);

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(cond(), what);
}

test('a thread that crashes twice is started again twice; its events, summary, health and metrics come over messages; a stop ends it', async () => {
  const registry = createRegistry(false);
  const events: Array<[string, unknown]> = [];
  const host = await startThread({ name: 'part', module, config: { crashes: 2, crashAfterMs: 200 }, logger, registry, logLevel: 'silent', backoff: { initialMs: 10 }, onEvent: (e, p) => events.push([e, p]) });
  try {
    await until('started again twice', () => host.restarts() === 2 && host.state() === 'running');
    assert.deepEqual(events, [
      ['hello', { restarts: 0 }],
      ['hello', { restarts: 1 }],
      ['hello', { restarts: 2 }],
    ]);
    assert.deepEqual(await host.summary(), { restarts: 2 });
    await host.health();
    const thread = await host.metrics();
    assert.deepEqual(thread.find((m) => m.name === 'test_thread_part_starts_total')?.values.map((v) => v.value), [1], 'the third thread counted its own start');
    assert.ok(thread.some((m) => m.name === 'logmeter_thread_event_loop_delay_seconds'));
    const main = await registry.getMetricsAsJSON();
    assert.deepEqual(main.find((m) => m.name === 'logmeter_thread_restarts_total')?.values.map((v) => [v.labels, v.value]), [[{ thread: 'part' }, 2]]);
    assert.deepEqual(main.find((m) => m.name === 'logmeter_thread_up')?.values.map((v) => v.value), [1]);
  } finally {
    await host.stop();
  }
  assert.equal(host.state(), 'stopped');
  assert.deepEqual(events.at(-1), ['bye', { restarts: 2 }]);
  assert.deepEqual(await host.metrics(), []);
  assert.equal(await host.summary(), undefined);
  await assert.rejects(host.health(), /thread part is stopped/);
  const main = await registry.getMetricsAsJSON();
  assert.deepEqual(main.find((m) => m.name === 'logmeter_thread_up')?.values.map((v) => v.value), [0]);
});

test('a part that fails to start fails startThread, and is not started again', async () => {
  const registry = createRegistry(false);
  await assert.rejects(startThread({ name: 'nothing', module: new URL('./helpers/docker.ts', import.meta.url), config: {}, logger, registry, logLevel: 'silent' }), /thread nothing did not start: .*exports no start\(\)/);
  const main = await registry.getMetricsAsJSON();
  assert.deepEqual(main.find((m) => m.name === 'logmeter_thread_restarts_total')?.values.map((v) => v.value), [0]);
});

test('health: a degraded part is degraded on the main thread too', async () => {
  const host = await startThread({ name: 'sick', module, config: { crashes: 0, crashAfterMs: 0, degraded: true }, logger, registry: createRegistry(false), logLevel: 'silent' });
  try {
    await assert.rejects(host.health(), (err: Error) => err.name === 'Degraded' && err.message === 'told to be');
  } finally {
    await host.stop();
  }
});

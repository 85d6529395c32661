import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, cleanupScenario, combine, finish, sleep, standardWorkload, startPipeline, startWorkload, useServices } from './harness.js';

const services = useServices();

test('dockerd restart while the collector follows containers: it reconnects its events and log streams, resumes where it read, sees containers started before it reconnected; nothing lost or shown twice', async () => {
  const svc = services();
  const p = await startPipeline('dockerd-restart', svc);
  try {
    const first = await standardWorkload(p, 40);
    await sleep(10_000);
    let t0 = Date.now();
    // The private dockerd runs with --live-restore: the containers keep running (and block on a full log pipe) while it is down.
    await svc.dockerService.down(svc.ctx);
    p.note(`dockerd stopped (SIGTERM) in ${Date.now() - t0} ms`);
    await sleep(5000);
    t0 = Date.now();
    await svc.dockerService.up(svc.ctx);
    p.note(`dockerd started again in ${Date.now() - t0} ms`);
    // Started before the collector's events stream is back: seen through the replay of Docker's events since the last one it handled.
    const late = await startWorkload(p.sc, { containersPerTenant: 1, lines: 1000, seconds: 10 }, 3);
    p.note('one more container per tenant started right after the restart (1000 lines each)');
    const wl = combine(first, late);
    const count = (re: RegExp) => (p.collector.output().match(re) ?? []).length;
    const counts = await finish(p, wl, 'dockerd restart', () => ({ eventsStreamReconnects: count(/docker events stream failed; reconnecting/g), logRequests: count(/"msg":"following logs"/g) }));
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    assert.equal(p.collector.starts, 1, 'the collector rode the restart out without being restarted');
    assert.ok(count(/"msg":"following logs"/g) >= first.containers.length * 2 + late.containers.length, 'each container running across the restart was followed again');
  } finally {
    await cleanupScenario(p.sc, p.collector, p.processors);
  }
});

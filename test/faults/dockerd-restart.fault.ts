import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, combine, cleanupScenario, collectorChild, httpReaders, processorsChild, report, scenario, settle, sleep, stamp, startWorkload, useServices } from './harness.js';

const services = useServices();

test('dockerd restart while the collector follows containers: it reconnects its events and log streams, resumes where it read, sees containers started before it reconnected; nothing lost or shown twice', async () => {
  const svc = services();
  const sc = await scenario('dockerd-restart', svc);
  const processors = processorsChild(sc);
  const collector = collectorChild(sc);
  const events: string[] = [];
  const at = stamp(sc);
  try {
    events.push(at(`processors up in ${await processors.start()} ms`));
    events.push(at(`collector up in ${await collector.start()} ms`));
    const first = await startWorkload(sc, { containersPerTenant: 2, lines: 3000, seconds: 40 });
    events.push(at('workload started: 2 tenants × 2 containers × 3000 lines'));
    await sleep(10_000);
    let t0 = Date.now();
    // The private dockerd runs with --live-restore: the containers keep running (and block on a full log pipe) while it is down.
    await svc.dockerService.down(svc.ctx);
    events.push(at(`dockerd stopped (SIGTERM) in ${Date.now() - t0} ms`));
    await sleep(5000);
    t0 = Date.now();
    await svc.dockerService.up(svc.ctx);
    events.push(at(`dockerd started again in ${Date.now() - t0} ms`));
    // Started before the collector's events stream is back: seen through the replay of Docker's events since the last one it handled.
    const late = await startWorkload(sc, { containersPerTenant: 1, lines: 1000, seconds: 10 }, 3);
    events.push(at('one more container per tenant started right after the restart (1000 lines each)'));
    const wl = combine(first, late);
    await wl.done();
    events.push(at('workload finished'));
    const counts = await settle(sc, wl, httpReaders(sc));
    events.push(at(`counts settled after ${Math.round(counts.settleMs / 1000)} s`));
    const out = collector.output();
    const reconnects = (out.match(/docker events stream failed; reconnecting/g) ?? []).length;
    const refollows = (out.match(/"msg":"following logs"/g) ?? []).length;
    report({ fault: 'dockerd restart', counts, events, durationMs: Date.now() - sc.startedAt, extra: { eventsStreamReconnects: reconnects, logRequests: refollows } });
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    assert.equal(collector.starts, 1, 'the collector rode the restart out without being restarted');
    assert.ok(refollows >= first.containers.length * 2 + late.containers.length, 'each container running across the restart was followed again');
  } finally {
    await cleanupScenario(sc, collector, processors);
  }
});

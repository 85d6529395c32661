import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, cleanupScenario, collectorChild, httpReaders, processorsChild, report, scenario, settle, sleep, stamp, startWorkload, useServices } from './harness.js';

const services = useServices();

test('the all-in-one processors process (sink, access-log, traffic, usage, billing) SIGKILL and restart: nothing lost, nothing shown twice, usage exact', async () => {
  const sc = await scenario('processors-kill', services());
  const processors = processorsChild(sc);
  const collector = collectorChild(sc);
  const events: string[] = [];
  const at = stamp(sc);
  try {
    events.push(at(`processors up in ${await processors.start()} ms`));
    events.push(at(`collector up in ${await collector.start()} ms`));
    const wl = await startWorkload(sc, { containersPerTenant: 2, lines: 3000, seconds: 40 });
    events.push(at('workload started: 2 tenants × 2 containers × 3000 lines'));
    await sleep(12_000);
    await processors.kill('SIGKILL');
    events.push(at('processors SIGKILL'));
    await sleep(3000);
    events.push(at(`processors restarted in ${await processors.start()} ms`));
    await wl.done();
    events.push(at('workload finished'));
    const counts = await settle(sc, wl, httpReaders(sc));
    events.push(at(`counts settled after ${Math.round(counts.settleMs / 1000)} s`));
    report({ fault: 'processors process SIGKILL', counts, events, durationMs: Date.now() - sc.startedAt });
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    assert.equal(processors.starts, 2);
  } finally {
    await cleanupScenario(sc, collector, processors);
  }
});

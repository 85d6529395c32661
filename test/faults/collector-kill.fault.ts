import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, cleanupScenario, collectorChild, httpReaders, processorsChild, report, scenario, settle, sleep, stamp, startWorkload, useServices } from './harness.js';

const services = useServices();

test('collector SIGKILL and restart, three times during one run: nothing lost, nothing shown twice, usage exact', async () => {
  const sc = await scenario('collector-kill', services());
  const processors = processorsChild(sc);
  const collector = collectorChild(sc);
  const events: string[] = [];
  const at = stamp(sc);
  try {
    events.push(at(`processors up in ${await processors.start()} ms`));
    events.push(at(`collector up in ${await collector.start()} ms`));
    const wl = await startWorkload(sc, { containersPerTenant: 2, lines: 3000, seconds: 45 });
    events.push(at('workload started: 2 tenants × 2 containers × 3000 lines'));
    for (let i = 1; i <= 3; i++) {
      await sleep(8000);
      await collector.kill('SIGKILL');
      events.push(at(`collector SIGKILL #${i}`));
      await sleep(1000);
      events.push(at(`collector restarted in ${await collector.start()} ms`));
    }
    await wl.done();
    events.push(at('workload finished'));
    const counts = await settle(sc, wl, httpReaders(sc));
    events.push(at(`counts settled after ${Math.round(counts.settleMs / 1000)} s`));
    report({ fault: 'collector SIGKILL ×3', counts, events, durationMs: Date.now() - sc.startedAt });
    assert.equal(collector.starts, 4);
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    for (const t of counts.tenants) assert.deepEqual({ lost: t.lost, duplicated: t.duplicated, foreign: t.foreign }, { lost: 0, duplicated: 0, foreign: 0 });
  } finally {
    await cleanupScenario(sc, collector, processors);
  }
});

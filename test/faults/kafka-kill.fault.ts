import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, cleanupScenario, collectorChild, httpReaders, processorsChild, report, scenario, settle, sleep, stamp, startWorkload, useServices } from './harness.js';
import { killKafka } from './services.js';

const services = useServices();

test('Kafka broker SIGKILL and restart while lines flow: nothing lost, nothing shown twice, usage exact', async () => {
  const svc = services();
  const sc = await scenario('kafka-kill', svc);
  const processors = processorsChild(sc);
  const collector = collectorChild(sc);
  const events: string[] = [];
  const at = stamp(sc);
  try {
    events.push(at(`processors up in ${await processors.start()} ms`));
    events.push(at(`collector up in ${await collector.start()} ms`));
    const wl = await startWorkload(sc, { containersPerTenant: 2, lines: 3000, seconds: 40 });
    events.push(at('workload started: 2 tenants × 2 containers × 3000 lines'));
    await sleep(10_000);
    const pid = await killKafka(svc);
    events.push(at(`Kafka broker (pid ${pid}) SIGKILL`));
    await sleep(5000);
    const t0 = Date.now();
    await svc.kafkaService.up(svc.ctx);
    events.push(at(`Kafka restarted in ${Date.now() - t0} ms (log recovery after the unclean stop)`));
    await wl.done();
    events.push(at('workload finished'));
    const counts = await settle(sc, wl, httpReaders(sc));
    events.push(at(`counts settled after ${Math.round(counts.settleMs / 1000)} s`));
    const retries = (out: string) => (out.match(/failed; retrying/g) ?? []).length;
    report({ fault: 'Kafka broker SIGKILL', counts, events, durationMs: Date.now() - sc.startedAt, extra: { collectorSendRetries: retries(collector.output()), processorRetries: retries(processors.output()) } });
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    // Neither process gave up: both are still the first run.
    assert.equal(collector.starts, 1);
    assert.equal(processors.starts, 1);
  } finally {
    await cleanupScenario(sc, collector, processors);
  }
});

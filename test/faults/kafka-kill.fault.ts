import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, cleanupScenario, finish, sleep, standardWorkload, startPipeline, useServices } from './harness.js';
import { killKafka } from './services.js';

const services = useServices();

test('Kafka broker SIGKILL and restart while lines flow: nothing lost, nothing shown twice, usage exact', async () => {
  const svc = services();
  const p = await startPipeline('kafka-kill', svc);
  try {
    const wl = await standardWorkload(p, 40);
    await sleep(10_000);
    const pid = await killKafka(svc);
    p.note(`Kafka broker (pid ${pid}) SIGKILL`);
    await sleep(5000);
    const t0 = Date.now();
    await svc.kafkaService.up(svc.ctx);
    p.note(`Kafka restarted in ${Date.now() - t0} ms (log recovery after the unclean stop)`);
    const retries = (out: string) => (out.match(/failed; retrying/g) ?? []).length;
    const counts = await finish(p, wl, 'Kafka broker SIGKILL', () => ({ collectorSendRetries: retries(p.collector.output()), processorRetries: retries(p.processors.output()) }));
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    // The fault bit: the collector's sends failed while the broker was gone and were retried.
    assert.ok(retries(p.collector.output()) >= 1, 'the collector retried at least one send');
    // Neither process gave up: both are still their first run.
    assert.equal(p.collector.starts, 1);
    assert.equal(p.processors.starts, 1);
  } finally {
    await cleanupScenario(p.sc, p.collector, p.processors);
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allGood, cleanupScenario, finish, sleep, standardWorkload, startPipeline, uncommitted, useServices } from './harness.js';

const services = useServices();

test('the all-in-one processors process (sink, access-log, traffic, usage, billing) SIGKILL and restart: nothing lost, nothing shown twice, usage exact', async () => {
  const p = await startPipeline('processors-kill', services());
  try {
    const wl = await standardWorkload(p, 40);
    await sleep(12_000);
    await p.processors.kill('SIGKILL');
    // Nothing commits once the process is dead: what is uncommitted now is read again by the restart.
    const pending = await uncommitted(p.sc, 'log-sink', 'logs');
    p.note(`processors SIGKILL; ${pending} log messages not committed by the sink, to be read again`);
    await sleep(3000);
    p.note(`processors restarted in ${await p.processors.start()} ms`);
    const counts = await finish(p, wl, 'processors process SIGKILL', () => ({ sinkUncommittedAtKill: pending }));
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
    // The fault bit: the kill landed with log messages in flight through the sink.
    assert.ok(pending >= 1, `log messages uncommitted at the kill: ${pending}`);
    assert.equal(p.processors.starts, 2);
  } finally {
    await cleanupScenario(p.sc, p.collector, p.processors);
  }
});

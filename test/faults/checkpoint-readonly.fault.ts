import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { run } from '../../lib/stack/common.js';
import { allGood, cleanupScenario, finish, sleep, standardWorkload, startPipeline, useServices } from './harness.js';

const services = useServices();

const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => [f, readFileSync(path.join(dir, f), 'utf8')]));

async function metric(http: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

test('checkpoint directory read-only (disk-full-like): checkpoints do not advance, an error names the path, a metric shows it; writable again, nothing lost or shown twice after a restart in between', async () => {
  const p = await startPipeline('checkpoint-readonly', services());
  const { sc, collector, note } = p;
  const dir = path.join(sc.dir, 'data', 'collector', 'checkpoints');
  let mounted = false;
  try {
    const wl = await standardWorkload(p);
    await sleep(8000);
    // Root writes through file modes, so read-only is a read-only bind mount of the directory onto itself.
    run('mount', ['--bind', dir, dir]);
    mounted = true;
    run('mount', ['-o', 'remount,bind,ro', dir]);
    const frozen = snapshot(dir);
    note(`checkpoint directory read-only (${Object.keys(frozen).length} checkpoints on disk)`);
    await sleep(8000);
    const errors1 = await metric(sc.collectorHttp, 'logmeter_collector_checkpoint_write_errors_total');
    const failing1 = await metric(sc.collectorHttp, 'logmeter_collector_checkpoint_write_failing');
    const errorLine = collector
      .output()
      .split('\n')
      .find((l) => l.includes('"level":50') && l.includes(dir));
    const unchanged1 = JSON.stringify(snapshot(dir)) === JSON.stringify(frozen);
    note(`after 8 s read-only: write errors ${errors1}, failing gauge ${failing1}, checkpoints unchanged ${unchanged1}`);
    await collector.kill('SIGKILL');
    note('collector SIGKILL while the directory is read-only');
    note(`collector restarted (directory still read-only) in ${await collector.start()} ms`);
    await sleep(6000);
    const errors2 = await metric(sc.collectorHttp, 'logmeter_collector_checkpoint_write_errors_total');
    const unchanged2 = JSON.stringify(snapshot(dir)) === JSON.stringify(frozen);
    note(`restarted collector: write errors ${errors2}, checkpoints unchanged ${unchanged2}`);
    run('umount', [dir]);
    mounted = false;
    note('checkpoint directory writable again');
    const counts = await finish(p, wl, 'checkpoint directory read-only', () => ({ writeErrorsBeforeRestart: errors1, writeErrorsAfterRestart: errors2, errorLine: errorLine?.slice(0, 400) }));
    // Once writable, every container's checkpoint reaches the end of its (finished) stream.
    let finished = 0;
    for (let i = 0; i < 60; i++) {
      const now = snapshot(dir);
      finished = wl.containers.filter((c) => (JSON.parse(now[`${c.id}.json`] ?? '{}') as { finished?: boolean }).finished === true).length;
      if (finished === wl.containers.length) break;
      await sleep(500);
    }
    const failing3 = await metric(sc.collectorHttp, 'logmeter_collector_checkpoint_write_failing');
    process.stdout.write(`  after: failing gauge ${failing3}, checkpoints finished ${finished}/${wl.containers.length}\n`);
    assert.ok(errors1 > 0 && failing1 === 1, 'the metric shows the failing writes');
    assert.ok(errorLine, `an error-level log line names ${dir}`);
    assert.ok(unchanged1 && unchanged2, 'no checkpoint moved while the directory was read-only');
    assert.ok(errors2 > 0, 'the restarted collector reports it too');
    assert.equal(failing3, 0, 'the gauge clears once writes succeed');
    assert.equal(finished, wl.containers.length, 'every checkpoint reached the end of its stream once writable');
    assert.equal(collector.starts, 2);
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
  } finally {
    if (mounted) run('umount', [dir]);
    await cleanupScenario(sc, collector, p.processors);
  }
});

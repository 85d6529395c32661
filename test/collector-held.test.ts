/**
 * What followers hold of their Docker log streams while the Kafka buffer is full (issue 19,
 * item 2): 40 containers print at once into a 4 MiB buffer bound, so the followers spend
 * much of the run waiting for room. Each follower's held bytes (the chunk being read, its
 * unfinished lines, the log stream's and its socket's buffers; charged against the bound)
 * are sampled from diagnose() and printed; each stays within three 80 KiB reads, and every
 * line still reaches Kafka exactly once (charging must not stall a reader).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogLine } from '../schemas/events.js';
import { collectorFixture } from './helpers/collector.js';
import { runContainer } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';

const { prefix, bus, startCollector } = await collectorFixture();

const CONTAINERS = 40;
const LINES = 4000;
const BOUND = 4 * 1024 * 1024;
const KiB = 1024;

async function until(ok: () => boolean): Promise<void> {
  while (!ok()) await new Promise((r) => setTimeout(r, 20));
}

test(`${CONTAINERS} containers printing at once into a ${BOUND / KiB} KiB buffer: what each follower holds while it waits for room, and every line exactly once`, async () => {
  const collector = startCollector({ maxBufferedBytes: BOUND }, 'held');
  await collector.start();
  try {
    const cs = [];
    for (let i = 0; i < CONTAINERS; i++) {
      cs.push(
        await runContainer({
          prefix,
          tenant: `t${i % 4}`,
          app: `held${i}`,
          logDriver: 'local',
          // Idle until SIGUSR1, then 120-byte lines as fast as busybox prints them.
          script: `trap ':' USR1; sleep 86400 & wait $!; kill $! 2>/dev/null; yes "$(printf '%0119d' 7)" | head -n ${LINES}; exec sleep 3600`,
        }),
      );
    }
    const ids = new Set(cs.map((c) => c.id));
    const mine = () => collector.diagnose().followers.filter((f) => ids.has(f.containerId));
    await until(() => mine().filter((f) => f.phase === 'reading').length === CONTAINERS);
    await Promise.all(cs.map((c) => c.kill({ signal: 'SIGUSR1' })));

    let sumPeak = 0;
    let totalPeak = 0;
    let waitingPeak = 0;
    const sampler = setInterval(() => {
      const fs = mine();
      const sum = fs.reduce((a, f) => a + f.heldBytes, 0);
      sumPeak = Math.max(sumPeak, sum);
      // Buffered events (queued and in flight) and what the followers hold, at the same instant.
      totalPeak = Math.max(totalPeak, collector.sender.buffered + sum);
      waitingPeak = Math.max(waitingPeak, fs.filter((f) => f.phase === 'waiting for room').length);
    }, 5);
    const mineEv = (e: LogLine) => ids.has(e.container_id);
    const events = (await collect(bus, 'logs', (evs) => evs.filter(mineEv).length >= CONTAINERS * LINES, 600_000)).filter(mineEv);
    clearInterval(sampler);
    const fs = mine();
    const perPeak = Math.max(...fs.map((f) => f.heldPeakBytes));
    process.stderr.write(
      `held: most by one follower ${(perPeak / KiB).toFixed(1)} KiB; most by all at once ${(sumPeak / KiB).toFixed(1)} KiB; ` +
        `followers waiting for room at once: up to ${waitingPeak}; sender peak ${(collector.sender.peakBuffered / KiB).toFixed(1)} KiB; ` +
        `buffered + held at once: up to ${(totalPeak / KiB).toFixed(1)} KiB (bound ${BOUND / KiB} KiB)\n`,
    );
    assert.equal(events.length, CONTAINERS * LINES);
    assert.equal(new Set(events.map((e) => e.event_id)).size, CONTAINERS * LINES, 'ids unique');
    for (const c of cs) assert.equal(events.filter((e) => e.container_id === c.id).length, LINES);
    assert.ok(waitingPeak > 1, 'followers waited for room');
    // Per follower: the chunk being read, the log stream's and its socket's buffers, each at most
    // one 64 KiB socket read over a 16 KiB high-water mark.
    assert.ok(perPeak <= 3 * 80 * KiB, `one follower held ${perPeak} bytes`);
  } finally {
    await collector.stop();
  }
});

/**
 * `logmeter up` runs the collector on a thread of its own (app/collector-lane.ts): when
 * that thread dies, the host starts it again (logged, counted in
 * `logmeter_thread_restarts_total{thread="collector"}`), and the new one goes on from the
 * checkpoints — every line of a container printing through the death arrives, once per
 * event id (a line sent again carries the same id).
 *
 * `up` is the real command (cli/main.ts) in a process that kills the collector's thread on
 * SIGUSR2 (test/helpers/up-kill-collector.ts; `ThreadHost.kill()`: `worker.terminate()`, as a crash).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LogLine } from '../schemas/events.js';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT, eventually, freePort, namespace } from './helpers/env.js';
import { removeTestContainers, runContainer } from './helpers/docker.js';
import { busPool, byEventId } from './helpers/kafka.js';

const LINES = 4000;

const buses = busPool();
after(() => buses.closeAll());

/** `logmeter up`, SIGUSR2 killing its collector's thread (test/helpers/up-kill-collector.ts). */
function startUp(env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/helpers/up-kill-collector.ts'), 'up'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, exited: new Promise<number | null>((resolve) => child.on('close', resolve)) };
}

test('up: the collector thread killed is started again; a container\'s numbered lines all arrive, once per event id', async () => {
  const port = await freePort();
  const ns = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_LB_BIND: `127.0.0.1:${await freePort()}` });
  const prefix = `${ns.id}.`;
  const up = startUp({ ...ns.env, LOGMETER_LABEL_PREFIX: prefix });
  const waitFor = (re: RegExp, timeoutMs: number) =>
    eventually(`${re}`, () => {
      if (up.child.exitCode !== null) throw new Error(`up exited (${up.child.exitCode}):\n${up.output()}`);
      return Promise.resolve(re.test(up.output()) ? true : undefined);
    }, timeoutMs).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${up.output().slice(-6000)}`);
    });
  const metric = async (line: RegExp) => line.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1];
  const bus = await buses.open(ns);
  const got: LogLine[] = [];
  let sub: { stop(): Promise<void> } | undefined;
  try {
    await waitFor(/"msg":"logmeter up"/, 180_000);
    assert.equal(await metric(/^logmeter_thread_restarts_total\{thread="collector"\} (\d+)$/m), '0');
    sub = await bus.subscribe({ group: `reader-logs-${ns.id}`, topics: ['logs'], fromBeginning: true, handle: async (b) => void got.push(...b.map((m) => m.event)) });

    // About 8 s of printing (a pause of 0.1 s every 50 lines): the thread dies in the middle.
    const c = await runContainer({ prefix, tenant: 'acme', app: 'steady', script: `i=1; while [ $i -le ${LINES} ]; do echo "n $i"; i=$((i+1)); [ $((i % 50)) -eq 0 ] && sleep 0.1; done; true` });
    const mine = () => got.filter((e) => e.container_id === c.id);
    await eventually('500 lines in Kafka before the kill', () => Promise.resolve(mine().length >= 500 ? true : undefined), 120_000);
    up.child.kill('SIGUSR2');
    await waitFor(/"msg":"thread collector died \(exit code 1\); starting it again in \d+ ms"/, 30_000);
    await waitFor(/"msg":"thread collector started again"/, 120_000);
    assert.equal(await metric(/^logmeter_thread_restarts_total\{thread="collector"\} (\d+)$/m), '1');

    await c.wait();
    await eventually(`all ${LINES} lines by event id`, () => Promise.resolve(byEventId(mine()).length >= LINES ? true : undefined), 180_000);
    // Copies of a line the new thread sent again, if any, come with it; nothing else may.
    await new Promise((r) => setTimeout(r, 2000));
    const all = mine();
    const once = byEventId(all);
    assert.equal(once.length, LINES, `distinct event ids (${all.length} events on the topic)`);
    assert.deepEqual(
      once.map((e) => Number(e.line.toString('utf8').slice(2))).sort((a, b) => a - b),
      Array.from({ length: LINES }, (_, i) => i + 1),
    );
    assert.ok(all.length >= LINES);
    process.stderr.write(`${all.length - LINES} line(s) sent again after the restart, with their event ids\n`);

    const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { checks: Record<string, string>; details: Record<string, unknown> };
    assert.equal(health.checks.collector, 'ok');
    assert.deepEqual(health.details['thread:collector'], { state: 'running', restarts: 1 });
    // The events stream is open: reading, or handling an event at that moment (Docker's events of other containers on the machine).
    const events = (health.details.collector as { dockerEvents: { phase: string } }).dockerEvents;
    assert.ok(['reading', 'handling'].includes(events.phase), JSON.stringify(events));

    up.child.kill('SIGTERM');
    assert.equal(await up.exited, 0, up.output());
    assert.match(up.output(), /"step":"collector","elapsedMs":\d+,"msg":"stopped collector"/);
  } finally {
    await sub?.stop();
    if (up.child.exitCode === null) up.child.kill('SIGKILL');
    await removeTestContainers(prefix);
    ns.cleanup();
  }
});

/**
 * `logmeter up` runs the routes lane (route processor, HAProxy, applier) on a thread of
 * its own (app/thread-host.ts, issue 15). Here `up` itself runs in a child process, as
 * the CLI runs it; the child's SIGUSR2 ends the routes thread at once (`kill()`, what a
 * crash does), so the test can kill the thread from outside.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, freePort, namespace } from './helpers/env.js';
import { script } from './helpers/api.js';
import { docker, removeTestContainers, runContainer } from './helpers/docker.js';
import { getWithHost } from './helpers/http.js';
import { loadBalancerName } from '../processors/routes/haproxy.js';

/** `logmeter up` as bin/logmeter.mjs runs it, plus: SIGUSR2 kills the routes thread. */
const UP = `
  import { Command } from 'commander';
  import { upCommand } from './cli/up.ts';
  import { loadConfig } from './app/config.ts';
  import { threads } from './app/thread-host.ts';
  process.on('SIGUSR2', () => void threads().find((t) => t.name === 'routes')?.kill());
  const program = new Command().exitOverride();
  upCommand(program, () => loadConfig({ env: process.env }));
  await program.parseAsync(['node', 'logmeter', 'up']);
`;

const count = (out: string, msg: RegExp) => out.split('\n').filter((l) => msg.test(l)).length;

test('up: the routes thread killed is started again once, routes go live again; a stop removes HAProxy and exits 0', async () => {
  const [http, lb] = [await freePort(), await freePort()];
  const ns = namespace({ LOGMETER_HTTP: `127.0.0.1:${http}`, LOGMETER_LB_BIND: `127.0.0.1:${lb}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS: '6' });
  const prefix = `${ns.id}.`;
  ns.env.LOGMETER_LABEL_PREFIX = prefix;
  const up = script(UP, ns.env);
  const web = (name: string) =>
    runContainer({ prefix, tenant: 'acme', app: name, labels: { [`${prefix}lb-host`]: `${name}.${ns.id}.test`, [`${prefix}lb-port`]: '80' }, publish: 80, script: 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www' });
  /** Eventually served through HAProxy by the container (its short id is its hostname). */
  const served = (name: string, id: string) =>
    eventually(`${name} served through HAProxy`, async () => {
      const r = await getWithHost({ port: lb, host: `${name}.${ns.id}.test`, timeoutMs: 1000 });
      return r.status === 200 && r.body === id.slice(0, 12) ? r : undefined;
    }, 120_000);
  const metric = async () => /^logmeter_thread_restarts_total\{thread="routes"\} (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${http}/metrics`)).text())?.[1];
  try {
    await eventually(
      'up started',
      async () => {
        if (up.child.exitCode !== null) throw new Error(`up exited (${up.child.exitCode}):\n${up.output()}`);
        return up.output().includes('"msg":"logmeter up"') || undefined;
      },
      180_000,
    );
    assert.equal(await metric(), '0');
    const a = await web('a');
    await served('a', a.id);

    up.child.kill('SIGUSR2');
    await eventually('thread started again', () => Promise.resolve(up.output().includes('thread routes started again') || undefined), 180_000);
    assert.equal(count(up.output(), /"msg":"thread routes died \(exit code 1\); starting it again in 500 ms"/), 1, up.output());
    assert.equal(count(up.output(), /"msg":"thread routes started again"/), 1);
    assert.equal(await metric(), '1');
    const health = (await (await fetch(`http://127.0.0.1:${http}/healthz`)).json()) as { checks: Record<string, string>; details: Record<string, unknown> };
    assert.equal(health.checks.routes, 'ok');
    assert.deepEqual(health.details['thread:routes'], { state: 'running', restarts: 1 });

    // The route of before the crash is back, and a container started after it is routed.
    await served('a', a.id);
    const b = await web('b');
    await served('b', b.id);

    up.child.kill('SIGTERM');
    assert.equal(await up.exited, 0, up.output());
    assert.match(up.output(), /"step":"processor:routes".*"msg":"stopped processor:routes"/);
    assert.match(up.output(), /"msg":"stopped"/);
    // Still one restart: the stop ended the thread, it did not die.
    assert.equal(count(up.output(), /"msg":"thread routes died/), 1);
    await assert.rejects(docker.getContainer(loadBalancerName(ns.dataDir)).inspect(), (err: { statusCode?: number }) => err.statusCode === 404, 'HAProxy removed');
  } finally {
    if (up.child.exitCode === null) up.child.kill('SIGKILL');
    await removeTestContainers(prefix);
    await docker.getContainer(loadBalancerName(ns.dataDir)).remove({ force: true }).catch(() => undefined);
    ns.cleanup();
  }
});

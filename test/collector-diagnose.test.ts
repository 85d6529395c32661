/**
 * A silent stall of the Docker side is diagnosable (issue 13):
 * - collector.diagnose() says what the Docker events stream and each follower are doing
 *   and since when (real dockerd: a follower goes from reading to ended with its container);
 * - a Docker call that never settles is aborted at its deadline, logged and retried (a fake
 *   Docker on a unix socket that takes the events request and never answers it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRegistry } from '../lib/metrics.js';
import { dockerClient } from '../lib/docker.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector } from '../ingest/collector.js';
import { withDeadline } from '../ingest/docker-calls.js';
import { collectorFixture } from './helpers/collector.js';
import { docker, runContainer } from './helpers/docker.js';
import { capturingLogger } from './helpers/logs.js';

const { ns, prefix, codec, bus, startCollector } = await collectorFixture();

/** Polls `ok` (50 ms apart) until it holds: what it waits for has no callback. */
async function until(ok: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await ok())) await new Promise((r) => setTimeout(r, 50));
}

test('diagnose(): the events stream is read, and a follower goes from reading to ended with its container, each phase with its start', async () => {
  const collector = startCollector({}, 'diagnose');
  await collector.start();
  try {
    const c = await runContainer({ prefix, tenant: 'acme', app: 'phases', script: 'echo ready; exec sleep 3600' });
    const mine = () => collector.diagnose().followers.find((f) => f.containerId === c.id);
    await until(() => mine()?.phase === 'reading' && mine()!.lines === 1);
    const reading = collector.diagnose();
    const f = reading.followers.find((x) => x.containerId === c.id)!;
    assert.equal(f.tenant, 'acme');
    assert.equal(f.app, 'phases');
    assert.ok(f.since <= reading.at);
    assert.equal(f.retainedBytes, 0, 'no unfinished line held');
    // The events stream is open (reading, or handling the container's start this moment), and saw its create and start.
    assert.ok(['reading', 'handling'].includes(reading.dockerEvents.phase), reading.dockerEvents.phase);
    assert.ok(reading.dockerEvents.events >= 2);

    await c.stop({ t: 0 });
    await until(() => mine()?.phase === 'ended');
    const ended = mine()!;
    assert.ok(ended.since >= f.since, 'the new phase started after the old one');
    assert.equal(ended.lines, 1);
    // Its one line acknowledged by Kafka: then nothing is buffered or waited for.
    await until(() => mine()!.ackedLines === 1);
    const done = collector.diagnose();
    assert.equal(done.sender.inFlight, undefined);
    assert.equal(done.sender.bufferedEvents, 0);
  } finally {
    await collector.stop();
  }
});

/** A Docker Engine API on a unix socket: lists no containers, takes `/events` requests and never answers them. */
async function silentDocker(): Promise<{ socket: string; eventsRequests: () => number; eventsClosed: () => number; close(): Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'logmeter-silent-docker-'));
  const socket = path.join(dir, 'docker.sock');
  let requests = 0;
  let closed = 0;
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/events')) {
      requests++;
      // Never answered: only the collector's deadline ends it (by closing the connection).
      req.socket.on('close', () => closed++);
      return;
    }
    if (req.url?.startsWith('/containers/json')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"not here"}');
  });
  await new Promise<void>((r) => server.listen(socket, r));
  return {
    socket,
    eventsRequests: () => requests,
    eventsClosed: () => closed,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('a Docker call that never settles is aborted at its deadline, logged, counted and retried; diagnose() shows the stream attaching or backing off; stop() does not wait for Docker', async () => {
  const fake = await silentDocker();
  const { logger, lines } = capturingLogger();
  const registry = createRegistry(false);
  const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, dockerTimeoutSeconds: 0.3 });
  const collector = createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, 'silent-docker'), docker: dockerClient(`unix://${fake.socket}`), bus, codec, logger, registry });
  const eventErrors = async () => (await registry.getSingleMetric('logmeter_collector_docker_errors_total')!.get()).values.filter((v) => v.labels.call === 'events').reduce((s, v) => s + v.value, 0);
  await collector.start();
  try {
    // Asked again after each deadline: a second request means the first was given up.
    await until(() => fake.eventsRequests() >= 3);
    const failures = lines().filter((l) => l.msg === 'docker events stream failed; reconnecting');
    assert.ok(failures.length >= 2);
    assert.equal(failures[0]!.err, 'Docker did not answer the events request within 300 ms');
    assert.ok((await eventErrors()) >= 2);
    // Each abandoned request's connection was closed by the collector, not left open.
    await until(() => fake.eventsClosed() >= 2);
    const d = collector.diagnose();
    assert.ok(['attaching', 'backing off'].includes(d.dockerEvents.phase), d.dockerEvents.phase);
    assert.equal(d.dockerEvents.events, 0);
    assert.deepEqual(d.followers, []);
  } finally {
    assert.deepEqual(await collector.stop(), { unsentEvents: 0, unsentBytes: 0 });
    assert.equal(collector.diagnose().dockerEvents.phase, 'ended');
    await fake.close();
  }
});

test('stop() does not wait for Docker: an events request never answered (and far from its deadline) is given up at once', async () => {
  const fake = await silentDocker();
  const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, dockerTimeoutSeconds: 3600 });
  const collector = createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, 'silent-docker-stop'), docker: dockerClient(`unix://${fake.socket}`), bus, codec, logger: ns.logger, registry: createRegistry(false) });
  await collector.start();
  try {
    await until(() => fake.eventsRequests() === 1 && collector.diagnose().dockerEvents.phase === 'attaching');
    // Without the stop cancelling it, this would wait for the hour-long deadline.
    assert.deepEqual(await collector.stop(), { unsentEvents: 0, unsentBytes: 0 });
    assert.equal(collector.diagnose().dockerEvents.phase, 'ended');
    await until(() => fake.eventsClosed() === 1);
    assert.equal(fake.eventsRequests(), 1, 'not asked again');
  } finally {
    await collector.stop();
    await fake.close();
  }
});

test('withDeadline: the real Docker answers an inspect within the deadline; a call past its deadline is a retriable docker_timeout', async () => {
  const c = await runContainer({ prefix, tenant: 'acme', app: 'deadline', script: 'true', start: false });
  const info = await withDeadline('an inspect', 20_000, (abortSignal) => docker.getContainer(c.id).inspect({ abortSignal }));
  assert.equal(info.Id, c.id);
  // A deadline that passes aborts the call with a retriable docker_timeout.
  await assert.rejects(
    withDeadline('a call that never settles', 50, () => new Promise<never>(() => undefined)),
    (err: Error & { code?: string; retriable?: boolean }) => err.message === 'Docker did not answer a call that never settles within 50 ms' && err.code === 'docker_timeout' && err.retriable === true,
  );
});

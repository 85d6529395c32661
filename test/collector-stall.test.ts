/**
 * Issue 13: a collector never stops in silence.
 * - The watchdog: a producer whose broker accepts connections but never answers (a plain
 *   TCP server that reads and never replies) is a stall: logged with the topic, partition
 *   and in-flight request, counted, `/healthz` degraded; the producer is rebuilt until a
 *   real broker answers again, and then every line arrives once.
 * - A log stream Docker ends while the container still prints is followed again from the
 *   read point, never taken as the container's end.
 * - stop() with the buffer full and a broker that never answers: the reader waiting for
 *   room is woken, the sender gives up instead of retrying, and stop() says what it left.
 */
import { collectorFixture } from './helpers/collector.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { LogLine } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { createHttpServer } from '../lib/http.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector } from '../ingest/collector.js';
import { healthDetail } from '../ingest/diagnosis.js';
import { logSourceFor, type LogSource } from '../ingest/docker-logs.js';
import { docker, runContainer } from './helpers/docker.js';
import { byEventId, collect } from './helpers/kafka.js';
import { capturingLogger } from './helpers/logs.js';

const { ns, prefix, codec, bus } = await collectorFixture();

/**
 * A broker address that accepts connections and reads, but never answers, until
 * `forward()`: from then on new connections are passed to the real broker.
 */
async function silentBroker(real: string): Promise<{ address: string; forward(): void; close(): Promise<void>; connections: () => number }> {
  const [rhost, rport] = real.split(':') as [string, string];
  let forwarding = false;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    if (!forwarding) {
      sock.on('data', () => undefined);
      return;
    }
    const up = net.connect(Number(rport), rhost);
    up.on('error', () => sock.destroy());
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    forward: () => void (forwarding = true),
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const byContainer = (id: string) => (e: { container_id: string }) => e.container_id === id;
const text = (e: LogLine) => e.line.toString('utf8');

test('watchdog: a broker that never answers is a stall (logged with topic, partition and request, counted, /healthz degraded); lines arrive once a broker answers', async () => {
  const silent = await silentBroker(ns.config.kafka.brokers[0]!);
  const { logger, lines } = capturingLogger();
  const stuckBus = busFor({ ...ns.config, kafka: { ...ns.config.kafka, brokers: [silent.address] } }, codec, logger);
  const registry = createRegistry(false);
  const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, stallSeconds: 0.5 });
  const collector = createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, 'stall'), docker, bus: stuckBus, codec, logger, registry });
  const http = createHttpServer({ listen: '127.0.0.1:0', registry, logger });
  http.addHealthCheck('collector', () => collector.health());
  const stalls = async () => (await registry.getSingleMetric('logmeter_collector_stalls_total')!.get()).values.reduce((s, v) => s + v.value, 0);
  const health = async () => {
    const res = await http.app.inject({ method: 'GET', url: '/healthz' });
    return { code: res.statusCode, body: res.json<{ status: string; checks: Record<string, string> }>() };
  };
  await collector.start();
  try {
    const c = await runContainer({ prefix, tenant: 'acme', app: 'stall', script: 'i=1; while [ $i -le 500 ]; do echo "stall $i"; i=$((i+1)); done' });
    // Stalled: the watchdog said so, counted it, and /healthz reports it.
    // Two stalls, each with a producer built anew (a new connection to the silent broker).
    while ((await stalls()) < 2 || silent.connections() < 2) await new Promise((r) => setTimeout(r, 50));
    const h = await health();
    assert.equal(h.code, 503);
    assert.equal(h.body.status, 'degraded');
    assert.match(h.body.checks.collector!, /^degraded: Kafka stall since .*nothing acknowledged by Kafka/);
    const reports = lines().filter((l) => l.level === 50 && l.msg.startsWith('Kafka stall:'));
    assert.ok(reports.length >= 2);
    // Topic, partition and the request in flight, by name.
    assert.match(reports[0]!.msg, new RegExp(`in flight: attempt \\d+ of \\d+ messages / \\d+ bytes, waiting \\d+ ms: ${prefix.replace('.', '\\.')}(logs|lifecycle) partition \\d+`));
    assert.ok(lines().some((l) => l.msg === 'tearing down the Kafka producer; a new one connects at the next send'), 'the producer was rebuilt');

    // A broker answers again: every line arrives, once, and the stall is over.
    silent.forward();
    const events = (await collect(bus, 'logs', (evs) => new Set(evs.filter(byContainer(c.id)).map((e) => e.event_id)).size >= 500, 120_000)).filter(byContainer(c.id));
    // Every line, in order, by event id: with a 0.5 s watchdog a slow acknowledgement on a busy
    // machine is taken for a stall too, and the rebuilt producer sends its batch again (byEventId).
    assert.deepEqual(byEventId(events).map(text), Array.from({ length: 500 }, (_, i) => `stall ${i + 1}`));
    // Both senders: log lines and lifecycle events (a producer of their own, issue 15).
    while (collector.sender.stalled || collector.lifecycleSender.stalled) await new Promise((r) => setTimeout(r, 50));
    // Every stall counted was logged, one line each.
    assert.equal(lines().filter((l) => l.level === 50 && l.msg.startsWith('Kafka stall:')).length, await stalls());
    assert.ok(lines().some((l) => l.msg === 'Kafka acknowledges again; the stall is over'));
    const healed = await health();
    assert.equal(healed.code, 200);
    assert.equal(healed.body.status, 'ok');
  } finally {
    await collector.stop();
    await http.close();
    await stuckBus.close();
    await silent.close();
  }
});

/** The collector's own log source on the real Docker, but the first log stream of each container ends (cleanly) after `cutAfter` bytes. */
function cuttingLogs(cutAfter: number): { logs: LogSource; cuts: () => number; calls: () => number } {
  let cuts = 0;
  let calls = 0;
  const cutDone = new Set<string>();
  const real = logSourceFor(docker);
  const logs: LogSource = async (id, req) => {
    const stream = await real(id, req);
    calls++;
    if (cutDone.has(id)) return stream;
    cutDone.add(id);
    const out = new PassThrough();
    let n = 0;
    stream.on('data', (chunk: Buffer) => {
      if (out.writableEnded) return;
      out.write(chunk);
      n += chunk.length;
      if (n >= cutAfter) {
        cuts++;
        stream.destroy();
        out.end();
      }
    });
    stream.on('end', () => void (out.writableEnded || out.end()));
    stream.on('error', (err: Error) => out.destroy(err));
    out.on('close', () => stream.destroy());
    return out;
  };
  return { logs, cuts: () => cuts, calls: () => calls };
}

test('a log stream Docker ends while the container still prints is followed again from the read point: every line once, in order', async () => {
  const cutting = cuttingLogs(8 * 1024);
  const { logger, lines } = capturingLogger();
  const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600 });
  const collector = createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, 'cut'), docker, logs: cutting.logs, bus, codec, logger, registry: createRegistry(false) });
  await collector.start();
  try {
    // About 60 KiB over 2 s: the cut at 8 KiB comes while the container still prints.
    const c = await runContainer({ prefix, tenant: 'acme', app: 'cut', script: 'i=1; while [ $i -le 1500 ]; do echo "cut $i"; [ $((i % 75)) -eq 0 ] && sleep 0.1; i=$((i+1)); done' });
    const events = (await collect(bus, 'logs', (evs) => evs.filter(byContainer(c.id)).length >= 1500, 120_000)).filter(byContainer(c.id));
    assert.equal(cutting.cuts(), 1);
    assert.ok(cutting.calls() >= 2, 'followed again after the cut');
    assert.deepEqual(events.map(text), Array.from({ length: 1500 }, (_, i) => `cut ${i + 1}`));
    assert.equal(lines().filter((l) => l.msg === 'log stream ended while the container is still running; following again from the last read point').length, 1);
    await c.wait();
    // Only the real end finishes the container.
    while (!lines().some((l) => l.msg === 'log stream ended')) await new Promise((r) => setTimeout(r, 50));
  } finally {
    await collector.stop();
  }
});

/** Polls `ok` (50 ms apart) until it holds: the event it waits for has no callback. */
async function until(ok: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await ok())) await new Promise((r) => setTimeout(r, 50));
}

test('stop() with the buffer full and a broker that never answers: the waiting reader is woken, nothing is retried, and stop() resolves saying what was left unsent', async () => {
  const silent = await silentBroker(ns.config.kafka.brokers[0]!);
  const { logger, lines } = capturingLogger();
  const stuckBus = busFor({ ...ns.config, kafka: { ...ns.config.kafka, brokers: [silent.address] } }, codec, logger);
  const registry = createRegistry(false);
  const unlimited = { linesPerSecond: 1e9, bytesPerSecond: 1e12, node: { linesPerSecond: 1e9, bytesPerSecond: 1e12 } };
  // The smallest buffer (64 KiB) fills after a few hundred lines; the watchdog stays out of the way.
  const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, maxBufferedBytes: 64 * 1024, batchBytes: 16 * 1024, stallSeconds: 3600, stopFlushSeconds: 1, rateLimit: unlimited });
  const collector = createCollector({ cfg, node: 'test-node', stateDir: path.join(ns.dataDir, 'full'), docker, bus: stuckBus, codec, logger, registry });
  const linesRead = async () => (await registry.getSingleMetric('logmeter_collector_lines_read_total')!.get()).values.reduce((s, v) => s + v.value, 0);
  await collector.start();
  try {
    // Far more than the buffer holds, then alive and quiet: no lifecycle event after its start.
    const c = await runContainer({ prefix, tenant: 'acme', app: 'full', script: 'i=1; while [ $i -le 20000 ]; do echo "full $i ................................................................"; i=$((i+1)); done; sleep 3600' });
    const mine = () => collector.diagnose().followers.find((f) => f.containerId === c.id);
    await until(() => mine()?.phase === 'waiting for room');
    const d = collector.diagnose();
    assert.ok(collector.sender.full, 'the buffer is full');
    assert.equal(d.sender.bufferedEvents, collector.sender.bufferedEvents);
    // Nothing can be acknowledged: every line read is still buffered, none lost, none sent.
    const read = await linesRead();
    assert.ok(read > 0 && read < 20000, `${read} lines read before the reader waited`);
    assert.equal(collector.sender.bufferedEvents, read);
    const lifecycleBuffered = collector.lifecycleSender.bufferedEvents;
    // /healthz shows it without naming tenants or containers: a reader waiting for room, the request Kafka does not answer.
    const http = createHttpServer({ listen: '127.0.0.1:0', registry, logger });
    http.addHealthDetail('collector', () => healthDetail(collector.diagnose()));
    const res = await http.app.inject({ method: 'GET', url: '/healthz' });
    await http.close();
    const detail = res.json<{ details: { collector: ReturnType<typeof healthDetail> } }>().details.collector;
    assert.equal(detail.followers['waiting for room']?.count, 1);
    assert.equal(detail.sender.bufferedEvents, read);
    assert.ok(detail.sender.inFlight && detail.sender.inFlight.messages > 0, 'a request in flight');
    assert.ok(!res.body.includes(c.id) && !res.body.includes('acme'), 'no container or tenant named');

    const report = await collector.stop();
    assert.deepEqual(report, {
      unsentEvents: read + lifecycleBuffered,
      unsentBytes: report.unsentBytes,
    });
    assert.ok(report.unsentBytes >= 64 * 1024);
    assert.equal(mine()?.phase, 'ended');
    // Said once, with the count.
    const said = lines().filter((l) => l.msg.startsWith('collector stopped with '));
    assert.equal(said.length, 1);
    assert.equal(said[0]!.msg, `collector stopped with ${report.unsentEvents} events not acknowledged by Kafka; their lines are read again at the next start`);
    assert.equal(said[0]!.unsentEvents, report.unsentEvents);
    // The senders are done: no request in flight, nothing buffered was taken as sent.
    assert.equal(collector.sender.current, undefined);
    assert.equal(collector.lifecycleSender.current, undefined);
    assert.equal(collector.sender.bufferedEvents, read);
  } finally {
    await collector.stop();
    // The silent broker first: its connections closed, the bus's connect attempts fail at once.
    await silent.close();
    await stuckBus.close();
  }
});

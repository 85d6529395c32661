import { test } from 'node:test';
import { collectorFixture } from './helpers/collector.js';
import assert from 'node:assert/strict';
import type { LogLine } from '../schemas/events.js';
import { Sender, isPermanentSendError, rejectedLetter, type AckTarget } from '../ingest/sender.js';
import { afterLifecycle, eventStep, eventsSince, startupStep } from '../ingest/attach.js';
import { LogmeterError } from '../lib/errors.js';
import { randomBytes } from 'node:crypto';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { docker, removeTestContainers, runContainer } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';

const { ns, prefix, codec, bus, startCollector } = await collectorFixture();


const text = (e: LogLine) => e.line.toString('utf8');
const byContainer = (id: string) => (e: { container_id: string }) => e.container_id === id;

test('20,000 numbered lines alternating stdout/stderr arrive exactly once, on the right stream, in order per stream', async () => {
  const collector = startCollector();
  await collector.start();
  try {
    const c = await runContainer({
      prefix,
      tenant: 'acme',
      app: 'shop',
      script: 'i=1; while [ $i -le 20000 ]; do if [ $((i % 2)) -eq 1 ]; then echo "line $i"; else echo "line $i" >&2; fi; i=$((i+1)); done',
    });
    const events = (await collect(bus, "logs", (evs) => evs.filter(byContainer(c.id)).length >= 20_000, 300_000)).filter(byContainer(c.id));
    assert.equal(events.length, 20_000);
    assert.equal(new Set(events.map((e) => e.event_id)).size, 20_000, 'ids unique');
    const out = events.filter((e) => e.stream === 'stdout').map(text);
    const err = events.filter((e) => e.stream === 'stderr').map(text);
    assert.deepEqual(out, Array.from({ length: 10_000 }, (_, i) => `line ${2 * i + 1}`));
    assert.deepEqual(err, Array.from({ length: 10_000 }, (_, i) => `line ${2 * i + 2}`));
    assert.ok(events.every((e) => e.tenant === 'acme' && e.app === 'shop' && e.node === 'test-node' && !e.truncated && !e.invalid_utf8 && !e.tty));
  } finally {
    await collector.stop();
  }
});

test('long, huge, invalid UTF-8, NUL and TTY lines', async () => {
  const collector = startCollector({ maxLineBytes: 256 * 1024 });
  await collector.start();
  try {
    const c = await runContainer({
      prefix,
      tenant: 'acme',
      app: 'lines',
      logDriver: 'local',
      script: [
        'head -c 102400 /dev/zero | tr "\\000" a; echo',
        'head -c 5242880 /dev/zero | tr "\\000" b; echo',
        "printf 'bad \\377\\376 utf8\\n'",
        "printf 'nul \\000 byte\\n' >&2",
        'echo done',
      ].join('; '),
    });
    const tty = await runContainer({ prefix, tenant: 'acme', app: 'tty', tty: true, script: 'echo tty-line-1; echo tty-line-2 >&2; printf "tty-no-newline"' });
    // json-file (Docker's default driver) replaces invalid bytes with U+FFFD before we read them: still flagged.
    const jf = await runContainer({ prefix, tenant: 'acme', app: 'json-file', logDriver: 'json-file', script: "printf 'bad \\377 utf8\\n'" });
    const events = await collect(bus, 'logs', (evs) => evs.filter(byContainer(c.id)).length >= 5 && evs.filter(byContainer(tty.id)).length >= 3 && evs.some(byContainer(jf.id)), 120_000);
    const replaced = events.find(byContainer(jf.id))!;
    assert.equal(text(replaced), 'bad \ufffd utf8');
    assert.equal(replaced.invalid_utf8, true);
    const mine = events.filter(byContainer(c.id));
    assert.equal(mine.length, 5);
    const starting = (s: string) => mine.find((e) => e.line.subarray(0, s.length).toString('latin1') === s);
    const [long, huge, bad, nul, done] = [starting('aaaa'), starting('bbbb'), starting('bad'), starting('nul'), starting('done')];
    assert.equal(long!.line.length, 102_400);
    assert.ok(long!.line.equals(Buffer.alloc(102_400, 'a')));
    assert.equal(long!.truncated, false);
    assert.equal(long!.original_length, 102_400);
    assert.equal(huge!.line.length, 256 * 1024);
    assert.ok(huge!.line.equals(Buffer.alloc(256 * 1024, 'b')));
    assert.equal(huge!.truncated, true);
    assert.equal(huge!.original_length, 5 * 1024 * 1024);
    assert.deepEqual(bad!.line, Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0x20, 0x75, 0x74, 0x66, 0x38]));
    assert.equal(bad!.invalid_utf8, true);
    assert.deepEqual(nul!.line, Buffer.from('nul \0 byte'));
    assert.equal(nul!.stream, 'stderr');
    assert.equal(nul!.invalid_utf8, true);
    assert.equal(text(done!), 'done');
    assert.equal(done!.invalid_utf8, false);

    const ttyLines = events.filter(byContainer(tty.id)).map((e) => [text(e), e.tty, e.stream]);
    assert.deepEqual(ttyLines, [
      ['tty-line-1', true, 'stdout'],
      ['tty-line-2', true, 'stdout'],
      ['tty-no-newline', true, 'stdout'],
    ]);
  } finally {
    await collector.stop();
  }
});

test('a container that exits as soon as it has printed has all its lines; lifecycle start, die and destroy carry ports and networks', async () => {
  const network = `${ns.id}-net`;
  const net = await docker.createNetwork({ Name: network, Labels: { [`${prefix}tenant`]: 'test' } });
  const collector = startCollector();
  await collector.start();
  try {
    const quick = await runContainer({ prefix, tenant: 'acme', app: 'quick', script: 'echo one; echo two >&2; echo three; exit 3', network, publish: 80 });
    await quick.wait();
    // How soon it exits depends on the machine's load (tens of ms when quiet, 500 ms seen under
    // load 70): a timing check here would test the machine, not the collector.
    assert.ok(Date.parse((await quick.inspect()).State.FinishedAt) > 0, 'the container has exited');
    const lines = (await collect(bus, 'logs', (evs) => evs.filter(byContainer(quick.id)).length >= 3)).filter(byContainer(quick.id));
    assert.deepEqual(lines.map((e) => [e.stream, text(e)]).sort(), [['stderr', 'two'], ['stdout', 'one'], ['stdout', 'three']]);

    // A container that lives long enough for its start to be inspected while running shows its published port.
    const web = await runContainer({ prefix, tenant: 'acme', app: 'web', script: 'sleep 1; exit 3', network, publish: 80 });
    await web.wait();
    await web.remove();
    await quick.remove();
    const life = (await collect(bus, 'lifecycle', (evs) => evs.some((e) => e.container_id === web.id && e.action === 'destroy'))).filter(byContainer(web.id));
    const quickLife = (await collect(bus, 'lifecycle', (evs) => evs.some((e) => e.container_id === quick.id && e.action === 'destroy'))).filter(byContainer(quick.id));
    assert.deepEqual(quickLife.map((e) => e.action).filter((a) => ['start', 'die', 'destroy'].includes(a)), ['start', 'die', 'destroy']);
    assert.equal(quickLife.find((e) => e.action === 'die')!.exit_code, 3);
    const actions = life.map((e) => e.action);
    for (const a of ['create', 'start', 'die', 'destroy']) assert.ok(actions.includes(a), `${a} in ${actions.join(',')}`);
    const die = life.find((e) => e.action === 'die')!;
    assert.equal(die.exit_code, 3);
    const start = life.find((e) => e.action === 'start')!;
    assert.equal(start.tenant, 'acme');
    assert.equal(start.app, 'web');
    assert.deepEqual(start.networks.map((n) => n.name), [network]);
    assert.equal(start.networks[0]!.network_id, net.id);
    assert.equal(start.ports.length, 1);
    assert.equal(start.ports[0]!.container_port, 80);
    assert.equal(start.ports[0]!.host_ip, '127.0.0.1');
    assert.ok(start.ports[0]!.host_port > 0);
    assert.equal(start.image, 'logmeter/base:1');
    const destroy = life.find((e) => e.action === 'destroy')!;
    assert.deepEqual(destroy.networks.map((n) => n.name), [network], 'destroy still describes the container');
  } finally {
    await collector.stop();
    await net.remove().catch(() => undefined);
  }
});

test('a container without a tenant label is not collected', async () => {
  const collector = startCollector();
  await collector.start();
  try {
    const anon = await docker.createContainer({ Image: 'logmeter/base:1', Cmd: ['sh', '-c', 'echo anonymous'], Labels: { [`${prefix}app`]: 'no-tenant' }, HostConfig: { Init: true } });
    await anon.start();
    await anon.wait();
    const marker = await runContainer({ prefix, tenant: 'acme', app: 'marker', script: 'echo marker' });
    const events = await collect(bus, 'logs', (evs) => evs.some(byContainer(marker.id)));
    assert.equal(events.filter(byContainer(anon.id)).length, 0);
    assert.ok(!collector.followed().some((f) => f.id === anon.id));
    await anon.remove({ force: true });
  } finally {
    await collector.stop();
  }
});

test('stopped and restarted normally: no gaps, no duplicates', async () => {
  const state = 'restart-state';
  let collector = startCollector({}, state);
  await collector.start();
  const c = await runContainer({ prefix, tenant: 'acme', app: 'steady', script: 'i=1; while [ $i -le 3000 ]; do echo "n $i"; i=$((i+1)); [ $((i % 100)) -eq 0 ] && sleep 0.05; done' });
  await collect(bus, 'logs', (evs) => evs.filter(byContainer(c.id)).length >= 500);
  await collector.stop();
  collector = startCollector({}, state);
  await collector.start();
  try {
    const events = (await collect(bus, 'logs', (evs) => evs.filter(byContainer(c.id)).some((e) => text(e) === 'n 3000'), 120_000)).filter(byContainer(c.id));
    await c.wait();
    await new Promise((r) => setTimeout(r, 500));
    const all = (await collect(bus, 'logs', (evs) => evs.filter(byContainer(c.id)).length >= events.length)).filter(byContainer(c.id));
    assert.deepEqual(all.map(text), Array.from({ length: 3000 }, (_, i) => `n ${i + 1}`));
  } finally {
    await collector.stop();
  }
});

test('stats samples reach Kafka every interval, interfaces classed by their Docker network', async () => {
  const ext = `${ns.id}-ext`;
  const int = `${ns.id}-int`;
  const nets = [await docker.createNetwork({ Name: ext }), await docker.createNetwork({ Name: int })];
  const collector = startCollector({ statsIntervalSeconds: 0.5, externalNetworks: [ext], internalNetworks: [int] });
  await collector.start();
  try {
    const c = await runContainer({ prefix, tenant: 'acme', app: 'stats', script: 'sleep 30', network: ext, start: false });
    await docker.getNetwork(int).connect({ Container: c.id });
    await c.start();
    const samples = (await collect(bus, 'stats', (evs) => evs.filter(byContainer(c.id)).length >= 2)).filter(byContainer(c.id));
    const s = samples[0]!;
    assert.equal(s.tenant, 'acme');
    assert.equal(s.app, 'stats');
    const classes: Record<string, string> = Object.fromEntries(s.interfaces.map((i): [string, string] => [i.network ?? "", i.traffic_class]));
    assert.deepEqual(classes, { [ext]: 'external', [int]: 'internal' });
    assert.ok(s.memory_bytes > 0);
    assert.notEqual(samples[0]!.event_id, samples[1]!.event_id);
  } finally {
    await collector.stop();
    await removeTestContainers(prefix);
    for (const n of nets) await n.remove().catch(() => undefined);
  }
});

test('attach rules: which Docker events matter, when to inspect, attach and detach; which listed containers are followed at start-up', () => {
  const known = (id: string) => id === 'k';
  assert.deepEqual(eventStep({ Type: 'network', Action: 'connect', Actor: { ID: 'net', Attributes: { container: 'c1' } } }, known), { kind: 'refresh', containerId: 'c1' });
  assert.deepEqual(eventStep({ Type: 'network', Action: 'create', Actor: { ID: 'net' } }, known), { kind: 'skip' });
  assert.deepEqual(eventStep({ Type: 'container', Action: 'exec_start: sh -c x', Actor: { ID: 'k' } }, known), { kind: 'skip' });
  assert.deepEqual(eventStep({ Type: 'container', Action: 'health_status: healthy', Actor: { ID: 'k' } }, known), { kind: 'lifecycle', containerId: 'k', action: 'health_status', inspect: true });
  assert.deepEqual(eventStep({ Type: 'container', Action: 'die', Actor: { ID: 'k' } }, known), { kind: 'lifecycle', containerId: 'k', action: 'die', inspect: false });
  assert.deepEqual(eventStep({ Type: 'container', Action: 'die', id: 'u' }, known), { kind: 'lifecycle', containerId: 'u', action: 'die', inspect: true });
  assert.deepEqual(eventStep({ Type: 'container', Action: 'destroy', Actor: { ID: 'u' } }, known), { kind: 'lifecycle', containerId: 'u', action: 'destroy', inspect: false });
  assert.equal(afterLifecycle('start', true), 'attach');
  assert.equal(afterLifecycle('restart', false), 'none');
  assert.equal(afterLifecycle('destroy', true), 'detach');
  assert.equal(afterLifecycle('die', true), 'none');
  const alive = Date.parse('2026-12-01T10:00:00Z');
  const stopped = (at: number) => ({ running: false, finishedAt: new Date(at).toISOString() });
  assert.equal(startupStep({ running: true, finishedAt: '' }, undefined, 0), 'follow');
  assert.equal(startupStep(stopped(alive - 3600_000), { finished: false }, alive), 'follow', 'an unfinished checkpoint is read to its end');
  assert.equal(startupStep(stopped(alive - 30_000), undefined, alive), 'follow', 'stopped while the collector was down');
  assert.equal(startupStep(stopped(alive - 120_000), undefined, alive), 'skip');
  assert.equal(startupStep(stopped(alive), undefined, 0), 'skip', 'a first start reads no stopped container');
  assert.equal(startupStep(stopped(alive), { finished: true }, alive), 'ready');
  assert.equal(eventsSince(1_700_000_000_500_000_000, 0), '1700000000.500000000');
  assert.equal(eventsSince(0, 1_700_000_000_999), '1700000000');
});

test('a message Kafka refuses for good (over max.message.bytes) is logged, counted and dead-lettered; the messages around it and the queue go on', async () => {
  const topic = bus.topic('logs');
  const line = (n: number, bytes: Buffer): LogLine => ({ ...SAMPLE_EVENTS.logs, event_id: `sender-${ns.id}-${n}`, container_id: `sender-${ns.id}`, seq: n, line: bytes, original_length: bytes.length });
  const acked: number[] = [];
  const rejected: number[] = [];
  const target: AckTarget = { produced: (n) => acked.push(n), rejected: (n) => rejected.push(n) };
  const codes: string[] = [];
  const sender = new Sender((batches) => bus.publishRawBatch(batches), {
    batchBytes: 8 * 1024 * 1024,
    lingerMs: 50,
    maxBufferedBytes: 64 * 1024 * 1024,
    onRejected: (_m, err) => codes.push(err.code),
    deadLetter: (m, err) => ({ topic: bus.topic('dlq'), key: m.key, value: codec.encode('dlq', rejectedLetter(m, err, 'test-node', Date.now())) }),
  }, ns.logger);
  // Random bytes do not compress: 2 MiB stays over the broker's 1 MiB limit after gzip.
  const values = [line(1, Buffer.from('before')), line(2, randomBytes(2 * 1024 * 1024)), line(3, Buffer.from('after'))];
  for (const [i, v] of values.entries()) sender.enqueue({ topic, key: v.container_id, value: codec.encode('logs', v), ackTarget: target, n: i + 1 });
  await sender.flush();
  assert.deepEqual(acked, [1, 3]);
  assert.deepEqual(rejected, [2], 'accounted for, so the reader\'s checkpoint moves past it');
  assert.deepEqual(codes, ['kafka_message_too_large']);
  assert.equal(sender.buffered, 0);
  const logs = (await collect(bus, 'logs', (evs) => evs.filter(byContainer(`sender-${ns.id}`)).length >= 2)).filter(byContainer(`sender-${ns.id}`));
  assert.deepEqual(logs.map(text), ['before', 'after']);
  const letters = (await collect(bus, 'dlq', (evs) => evs.some((d) => d.source_topic === topic))).filter((d) => d.source_topic === topic);
  assert.equal(letters.length, 1);
  assert.equal(letters[0]!.error_code, 'kafka_message_too_large');
  assert.equal(letters[0]!.consumer_group, 'collector');
  assert.equal(letters[0]!.key?.toString(), `sender-${ns.id}`);
  assert.equal(letters[0]!.payload?.length, 512 * 1024);
  assert.match(letters[0]!.reason, /refused as too large.*\(payload cut to 524288 of \d+ bytes\)$/s);
  // Still open for more.
  sender.enqueue({ topic, key: `sender-${ns.id}`, value: codec.encode('logs', line(4, Buffer.from('later'))), ackTarget: target, n: 4 });
  await sender.close();
  assert.deepEqual(acked, [1, 3, 4]);
});

test('send errors: broker trouble is retried, a refusal that can never pass is not', () => {
  assert.equal(isPermanentSendError(new LogmeterError('kafka_message_too_large', 'too large', { retriable: false })), true);
  assert.equal(isPermanentSendError(new LogmeterError('kafka_unreachable', 'down', { retriable: true })), false);
  const timeout = Object.assign(new Error('Timeout while acquiring lock (1 waiting locks)'), { name: 'KafkaJSLockTimeout', retriable: false });
  assert.equal(isPermanentSendError(new LogmeterError('kafka_error', 'x', { retriable: false, cause: timeout })), false, 'a lock timeout during a broker restart passes');
  const disconnecting = Object.assign(new Error("The producer is disconnecting; therefore, it can't safely accept messages anymore"), { name: 'KafkaJSNonRetriableError', retriable: false });
  assert.equal(isPermanentSendError(disconnecting), false);
  assert.equal(isPermanentSendError(new TypeError('bad value')), true);
});

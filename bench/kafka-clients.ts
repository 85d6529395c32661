/**
 * Kafka clients compared on the bus's own workload, in one run on the same broker:
 * kafkajs (through `KafkajsBus`, the production path with its fixes and remembered
 * partitions) against `@platformatic/kafka` (pure TypeScript) with the same guarantees.
 * `@confluentinc/kafka-javascript` is not measured: it cannot be installed from the npm
 * registry alone (docs/decisions/2026-12-04-kafka-client.md has the error).
 *
 *   node --import tsx bench/kafka-clients.ts [--rounds 3] [--lines 200000] [--batch-bytes 524288] [--probes 200]
 *        [--profile-dir DIR (a V8 CPU profile of each client run; read it with bench/profile-top.ts)]
 *   node --import tsx bench/kafka-clients.ts --restart
 *
 * Method: the messages are the collector's: Avro-encoded log events of 120 B lines from
 * 2 containers (keyed by container id), encoded before the clock starts. Each client runs
 * in a node process of its own (its CPU time and heap are not mixed with another's), in
 * rotating order per round, one after the other:
 *   - produce: an idempotent producer (acks = all in-sync replicas, one request in
 *     flight, gzip), connected and warmed by one batch first; then batches of
 *     `--batch-bytes` (the collector's batch size) sent one after the other, each awaited
 *     before the next, as the collector's Sender does. CPU µs per line is
 *     `process.cpuUsage()` around that loop divided by the lines; lines/s is wall time;
 *     p99 batch is the 99th percentile of one batch's send-to-acknowledgement time.
 *     Then `--probes` single-message sends one after the other: p50/p99 of an idle send
 *     (acks = all), the latency floor.
 *   - consume: a new consumer group reads the same topic from the beginning, decodes
 *     every payload (`codec.decode`), commits its offsets manually, until `--lines`
 *     records are counted. kafkajs: `KafkajsBus.subscribe` (decode, handler, commit per
 *     fetched batch, as every processor does); @platformatic/kafka: its group stream
 *     with autocommit off, decoded per record in its 'data' event, the last offset of each partition
 *     committed every 10,000 records and at the end. Rates and CPU are counted from the
 *     first hand-over on, over the records handed over after it (kafkajs hands over a
 *     whole fetched batch, already decoded, so that batch is left out of both), i.e.
 *     without the group join; and also the rate with the join.
 * `--restart` (not part of `npm run bench`: it starts a broker of its own, ~2 min) runs
 * a private Kafka on free ports (the jars of `logmeter stack up`, never the shared
 * broker) and, per client, a producer sending numbered batches of 500 messages one after
 * the other (a failed send is retried after 500 ms, as the collector's Sender does)
 * while the broker is SIGKILLed, started again, stopped cleanly (SIGTERM) and started
 * again, 8 s down each time. It reports the send errors the client surfaced, the longest
 * single send, the time from the broker answering again to the first acknowledged send,
 * and the messages in the topic against those acknowledged (more: duplicates; fewer: loss).
 * Ratios are to kafkajs of the same run (lower CPU µs is better: a ratio of 50 % is half
 * the CPU). Topics are left in Kafka under the benchmark's own prefix (`bkclients…`).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Consumer, Producer, compatibilityPartitioner, type Message } from '@platformatic/kafka';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { KafkajsBus } from '../lib/bus/kafkajs.js';
import { busConfig, type RawMessage } from '../lib/bus/bus.js';
import { errorMessage } from '../lib/errors.js';
import { kafkaService, kafkaVersion } from '../lib/stack/kafka.js';
import { pidAlive, readPid, stateDir, tcpOpen, type StackContext } from '../lib/stack/common.js';
import { benchNamespace, flags, fmt, header, median, out, percentileSorted, ratio, sleep, table } from './lib/common.js';
import { makeLogEvents } from './lib/events.js';

const CLIENTS = ['kafkajs', 'platformatic'] as const;
type Client = (typeof CLIENTS)[number];
const LABEL: Record<Client, string> = { kafkajs: 'kafkajs 2.2.4 (KafkajsBus)', platformatic: '@platformatic/kafka 1.35.0' };

interface ProduceResult {
  lines: number;
  cpuUsPerLine: number;
  linesPerSec: number;
  batchP99Ms: number;
  probeP50Ms: number;
  probeP99Ms: number;
}
interface ConsumeResult {
  records: number;
  recordsPerSec: number;
  recordsPerSecWithJoin: number;
  cpuUsPerRecord: number;
}

const f = flags(['rounds', 'lines', 'batch-bytes', 'probes', 'child', 'client', 'prefix', 'group', 'profile-dir', 'brokers', 'topic'], ['restart']);
if (f.bool('help')) {
  out('node --import tsx bench/kafka-clients.ts [--rounds 3] [--lines 200000] [--batch-bytes 524288] [--probes 200] [--profile-dir DIR] | --restart');
  process.exit(0);
}
const lines = f.num('lines', 200_000);
const batchBytes = f.num('batch-bytes', 512 * 1024);
const probes = f.num('probes', 200);
const child = f.str('child', '');

if (child === 'restart') {
  await restartChild(f.str('client', '') as Client, f.str('brokers', ''), f.str('topic', ''));
  process.exit(0);
}
if (child === 'produce' || child === 'consume') {
  const client = f.str('client', '') as Client;
  if (!CLIENTS.includes(client)) throw new Error(`--client: one of ${CLIENTS.join(', ')}`);
  const result = child === 'produce' ? await produce(client, f.str('prefix', '')) : await consume(client, f.str('prefix', ''), f.str('group', ''));
  out(JSON.stringify(result));
  process.exit(0);
}

if (f.bool('restart')) await restarts();
else await main();

async function main(): Promise<void> {
  const rounds = f.num('rounds', 3);
  const ns = benchNamespace('kclients');
  header('Kafka clients: producer and consumer on the bus workload', { rounds, lines, batchBytes, probes, lineBytes: 120, containers: 2, partitions: ns.config.kafka.partitions });
  const codec = await AvroCodec.create(new ManifestSource());
  const bus = new KafkajsBus(busConfig(ns.config), codec, ns.logger);
  await bus.ensureTopics(['logs', 'dlq']);
  await bus.close();

  const produced: Record<Client, ProduceResult[]> = { kafkajs: [], platformatic: [] };
  const consumed: Record<Client, ConsumeResult[]> = { kafkajs: [], platformatic: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? CLIENTS : [...CLIENTS].reverse();
    for (const c of order) {
      process.stderr.write(`round ${r + 1}: ${c} produce\n`);
      produced[c].push((await runChild(['--child', 'produce', '--client', c, '--prefix', ns.topicPrefix])) as ProduceResult);
    }
    for (const c of order) {
      process.stderr.write(`round ${r + 1}: ${c} consume\n`);
      consumed[c].push((await runChild(['--child', 'consume', '--client', c, '--prefix', ns.topicPrefix, '--group', `consume-${c}-${r}`])) as ConsumeResult);
    }
  }

  const med = <T>(rs: T[], k: keyof T) => median(rs.map((x) => x[k] as number));
  const base = (k: keyof ProduceResult) => med(produced.kafkajs, k);
  out(`## produce: ${fmt(lines)} lines of 120 B per run, idempotent, acks=all, gzip, batches of ${fmt(batchBytes)} B (median of ${rounds})`);
  table(
    ['client', 'CPU µs / line', 'lines / CPU s', 'lines/s (wall)', 'p99 batch ms', 'idle send p50 / p99 ms', 'CPU / kafkajs', 'lines/s / kafkajs'],
    CLIENTS.map((c) => [
      LABEL[c],
      fmt(med(produced[c], 'cpuUsPerLine'), 2),
      fmt(1e6 / med(produced[c], 'cpuUsPerLine')),
      fmt(med(produced[c], 'linesPerSec')),
      fmt(med(produced[c], 'batchP99Ms'), 1),
      `${fmt(med(produced[c], 'probeP50Ms'), 1)} / ${fmt(med(produced[c], 'probeP99Ms'), 1)}`,
      ratio(med(produced[c], 'cpuUsPerLine'), base('cpuUsPerLine')),
      ratio(med(produced[c], 'linesPerSec'), base('linesPerSec')),
    ]),
  );
  const cbase = (k: keyof ConsumeResult) => med(consumed.kafkajs, k);
  out(`## consume: ${fmt(lines)} records from the beginning, decoded, offsets committed manually (median of ${rounds})`);
  table(
    ['client', 'records/s', 'records/s with join', 'CPU µs / record', 'records/s / kafkajs', 'CPU / kafkajs'],
    CLIENTS.map((c) => [
      LABEL[c],
      fmt(med(consumed[c], 'recordsPerSec')),
      fmt(med(consumed[c], 'recordsPerSecWithJoin')),
      fmt(med(consumed[c], 'cpuUsPerRecord'), 2),
      ratio(med(consumed[c], 'recordsPerSec'), cbase('recordsPerSec')),
      ratio(med(consumed[c], 'cpuUsPerRecord'), cbase('cpuUsPerRecord')),
    ]),
  );
  out('rounds (produce CPU µs/line, lines/s; consume records/s):');
  for (const c of CLIENTS) out(`  ${c}: ${produced[c].map((p) => `${fmt(p.cpuUsPerLine, 2)} µs ${fmt(p.linesPerSec)}/s`).join(' · ')} ; ${consumed[c].map((x) => `${fmt(x.recordsPerSec)}/s`).join(' · ')}`);
}

function runChild(args: string[]): Promise<unknown> {
  const self = fileURLToPath(import.meta.url);
  const profileDir = f.str('profile-dir', '');
  const argv = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}/${args[1]}-${args[3]}-${Date.now()}`] : []), '--import', 'tsx', self, '--lines', String(lines), '--batch-bytes', String(batchBytes), '--probes', String(probes), ...args];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOGMETER_LOG_LEVEL: 'warn' } });
    let stdout = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.on('exit', (code) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0) reject(new Error(`child ${args.join(' ')} exited ${code}: ${stdout}`));
      else resolve(JSON.parse(last));
    });
  });
}

/** The collector's messages: Avro log events of 120 B lines from 2 containers, in batches of `batchBytes`. */
function workload(codec: AvroCodec): RawMessage[][] {
  const events = makeLogEvents(lines, { accessShare: 0, containers: 2 });
  const batches: RawMessage[][] = [[]];
  let bytes = 0;
  for (const e of events) {
    const value = codec.encode('logs', e);
    if (bytes + value.length > batchBytes && batches[batches.length - 1]!.length > 0) {
      batches.push([]);
      bytes = 0;
    }
    batches[batches.length - 1]!.push({ key: e.container_id, value });
    bytes += value.length;
  }
  return batches;
}

interface Sender {
  send(messages: readonly RawMessage[]): Promise<void>;
  close(): Promise<void>;
}

function sender(client: Client, topic: string, codec: AvroCodec, prefix: string): Sender {
  const ns = benchNamespace('kclients', { LOGMETER_TOPIC_PREFIX: prefix });
  if (client === 'kafkajs') {
    const bus = new KafkajsBus(busConfig(ns.config), codec, ns.logger);
    return { send: (messages) => bus.publishRawBatch([{ topic, messages }]), close: () => bus.close() };
  }
  // An adapter would keep each container's key bytes, and their murmur2, as KafkajsBus
  // keeps each key's partition (the producer takes the hash modulo the partition count).
  const keys = new Map<string, Buffer>();
  const hashes = new WeakMap<Buffer, number>();
  const keyOf = (k: RawMessage['key']) => {
    if (k === null || Buffer.isBuffer(k)) return k ?? undefined;
    let b = keys.get(k);
    if (!b) keys.set(k, (b = Buffer.from(k)));
    return b;
  };
  const producer = new Producer({
    clientId: ns.config.kafka.clientId,
    bootstrapBrokers: ns.config.kafka.brokers,
    idempotent: true,
    compression: ns.config.kafka.compression,
    // murmur2 & 0x7fffffff: the partitions of kafkajs and the Java client for the same key.
    partitioner: (m, key) => {
      if (!key) return compatibilityPartitioner(m, key);
      let h = hashes.get(key);
      if (h === undefined) hashes.set(key, (h = compatibilityPartitioner(m, key)));
      return h;
    },
    autocreateTopics: false,
  });
  return {
    send: async (messages) => {
      await producer.send({ messages: messages.map((m) => ({ topic, key: keyOf(m.key), value: m.value ?? undefined })) });
    },
    close: () => producer.close(),
  };
}

async function produce(client: Client, prefix: string): Promise<ProduceResult> {
  const codec = await AvroCodec.create(new ManifestSource());
  const topic = `${prefix}logs`;
  const batches = workload(codec);
  const s = sender(client, topic, codec, prefix);
  await s.send(batches[0]!.slice(0, 100));
  const lat: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const b of batches) {
    const s0 = performance.now();
    await s.send(b);
    lat.push(performance.now() - s0);
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const probe: number[] = [];
  const one = batches[0]!.slice(0, 1);
  for (let i = 0; i < probes; i++) {
    const s0 = performance.now();
    await s.send(one);
    probe.push(performance.now() - s0);
  }
  await s.close();
  lat.sort((a, b) => a - b);
  probe.sort((a, b) => a - b);
  return {
    lines,
    cpuUsPerLine: (cpu.user + cpu.system) / lines,
    linesPerSec: lines / wall,
    batchP99Ms: percentileSorted(lat, 99),
    probeP50Ms: percentileSorted(probe, 50),
    probeP99Ms: percentileSorted(probe, 99),
  };
}

async function consume(client: Client, prefix: string, group: string): Promise<ConsumeResult> {
  const codec = await AvroCodec.create(new ManifestSource());
  const ns = benchNamespace('kclients', { LOGMETER_TOPIC_PREFIX: prefix });
  const topic = `${prefix}logs`;
  let count = 0;
  let first = 0;
  /** Records already handed over when the clock started (kafkajs hands a whole fetched batch at once). */
  let before = 0;
  let cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const startClock = (n: number) => {
    before = n;
    first = performance.now();
    cpu0 = process.cpuUsage();
  };
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  let stop: () => Promise<void>;
  if (client === 'kafkajs') {
    const bus = new KafkajsBus(busConfig(ns.config), codec, ns.logger);
    const sub = await bus.subscribe({
      group,
      topics: ['logs'],
      fromBeginning: true,
      handle: (msgs) => {
        if (count === 0) startClock(msgs.length);
        count += msgs.length;
        if (count >= lines) done();
        return Promise.resolve();
      },
    });
    stop = async () => {
      await sub.stop();
      await bus.close();
    };
  } else {
    const consumer = new Consumer({ clientId: ns.config.kafka.clientId, bootstrapBrokers: ns.config.kafka.brokers, groupId: `${prefix}${group}` });
    const stream = await consumer.consume({ topics: [topic], mode: 'committed', fallbackMode: 'earliest', autocommit: false, sessionTimeout: 30_000, heartbeatInterval: 3000 });
    const last = new Map<number, Message>();
    const commit = async () => {
      const ms = [...last.values()];
      last.clear();
      for (const m of ms) await m.commit();
    };
    // Prepared once before: the stream hands records over one by one, synchronously.
    await codec.prepare([codec.encode('logs', makeLogEvents(1)[0]!)]);
    let ended = false;
    stream.on('data', (m: Message) => {
      if (ended) return;
      if (count === 0) startClock(1);
      codec.decode('logs', m.value);
      last.set(m.partition, m);
      if (++count % 10_000 === 0 || count >= lines) {
        // The stream waits while the offsets are committed, as a handler's commit would make it.
        stream.pause();
        void commit().then(() => stream.resume(), (err: unknown) => stream.destroy(err as Error));
      }
      if (count >= lines) {
        ended = true;
        done();
      }
    });
    stop = async () => {
      await stream.close();
      await consumer.close();
    };
  }
  await finished;
  const end = performance.now();
  const cpu = process.cpuUsage(cpu0);
  await stop();
  return {
    records: count,
    recordsPerSec: (count - before) / ((end - first) / 1000),
    recordsPerSecWithJoin: count / ((end - t0) / 1000),
    cpuUsPerRecord: (cpu.user + cpu.system) / (count - before),
  };
}

interface RestartReport {
  acked: number;
  errors: number;
  firstErrors: string[];
  maxSendMs: number;
  /** Epoch ms of each acknowledged send. */
  acks: number[];
}

/** A steady numbered producer until the parent says stop (IPC), then its report. */
async function restartChild(client: Client, brokers: string, topic: string): Promise<void> {
  const codec = await AvroCodec.create(new ManifestSource());
  const prefix = topic.slice(0, topic.lastIndexOf('.') + 1);
  process.env.KAFKA_BROKERS = brokers;
  const s = sender(client, topic, codec, prefix);
  let stop = false;
  process.on('message', () => (stop = true));
  const r: RestartReport = { acked: 0, errors: 0, firstErrors: [], maxSendMs: 0, acks: [] };
  for (let n = 0; !stop; ) {
    const batch = Array.from({ length: 500 }, (_, i) => ({ key: `k${(n + i) % 4}`, value: Buffer.from(String(n + i).padStart(120, '0')) }));
    const t0 = Date.now();
    try {
      await s.send(batch);
      r.acks.push(Date.now());
      process.send?.('ack');
      r.acked += batch.length;
      n += batch.length;
    } catch (err) {
      r.errors++;
      const msg = errorMessage(err).slice(0, 200);
      if (r.firstErrors.length < 3 && !r.firstErrors.includes(msg)) r.firstErrors.push(msg);
      await sleep(500);
    }
    r.maxSendMs = Math.max(r.maxSendMs, Date.now() - t0);
    await sleep(20);
  }
  await s.close().catch(() => undefined);
  process.send?.(r);
}

async function restarts(): Promise<void> {
  const ns = benchNamespace('kclients');
  const port = await freePortPair();
  const broker = `127.0.0.1:${port}`;
  const ctx: StackContext = { stateDir: path.join(ns.dataDir, 'stack'), logger: ns.logger, install: false };
  const libs = `libs-${kafkaVersion()}`;
  mkdirSync(path.join(ctx.stateDir, 'kafka'), { recursive: true });
  const shared = path.join(process.env.LOGMETER_SHARED_STATE_DIR ?? stateDir(), 'kafka', libs);
  if (!existsSync(shared)) throw new Error(`no Kafka jars at ${shared} (run logmeter stack up once, or set LOGMETER_SHARED_STATE_DIR)`);
  symlinkSync(shared, path.join(ctx.stateDir, 'kafka', libs));
  const kafka = kafkaService(broker);
  const pid = () => readPid(path.join(ctx.stateDir, 'kafka', 'kafka.pid'));
  header('Kafka clients across broker restarts (a private broker)', { broker, down: '8 s', batch: 500 });
  await kafka.up(ctx);
  const rows: string[][] = [];
  try {
    for (const client of CLIENTS) {
      const config = { ...busConfig(ns.config), brokers: [broker], topicPrefix: `${ns.topicPrefix}${client}.` };
      const codec = await AvroCodec.create(new ManifestSource());
      const admin = new KafkajsBus(config, codec, ns.logger);
      await admin.ensureTopics(['logs']);
      const topic = admin.topic('logs');
      const self = fileURLToPath(import.meta.url);
      const p = spawn(process.execPath, ['--import', 'tsx', self, '--child', 'restart', '--client', client, '--brokers', broker, '--topic', topic], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      let lastAck = 0;
      const report = new Promise<RestartReport>((resolve) =>
        p.on('message', (m) => {
          if (m === 'ack') lastAck = Date.now();
          else resolve(m as RestartReport);
        }),
      );
      const ups: number[] = [];
      await sleep(4000);
      for (const how of ['SIGKILL', 'SIGTERM'] as const) {
        process.stderr.write(`${client}: broker ${how}\n`);
        const old = pid();
        if (how === 'SIGKILL' && old) {
          process.kill(old, 'SIGKILL');
          while (pidAlive(old)) await sleep(50);
        } else await kafka.down(ctx);
        await sleep(8000);
        await kafka.up(ctx);
        const up = Date.now();
        ups.push(up);
        // Up to 60 s for the client to deliver again, then 3 s of steady sending.
        while (lastAck < up && Date.now() - up < 60_000) await sleep(100);
        await sleep(3000);
      }
      p.send('stop');
      const r = await report;
      const inTopic = (await admin.endOffsets(topic)).reduce((a, o) => a + Number(BigInt(o.high) - BigInt(o.low)), 0);
      await admin.close();
      const recovery = ups.map((u) => {
        const first = r.acks.find((a) => a >= u);
        return first === undefined ? 'not within 60 s' : `${fmt((first - u) / 1000, 1)} s`;
      });
      rows.push([LABEL[client], recovery[0]!, recovery[1]!, fmt(r.errors), fmt(r.maxSendMs / 1000, 1), fmt(r.acked), fmt(inTopic), r.firstErrors.join(' | ') || '–']);
    }
  } finally {
    await kafka.down(ctx);
  }
  table(['client', 'back after SIGKILL', 'back after clean stop', 'send errors', 'longest send s', 'acked', 'in topic', 'errors surfaced'], rows);
}

async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const a = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(a));
      });
    });
    if (port < 65000 && !(await tcpOpen('127.0.0.1', port + 1, 300))) return port;
  }
  throw new Error('no free port pair');
}

/**
 * Issue 19, item 2: what a follower waiting for room in the Kafka buffer holds of its Docker
 * log stream, outside the buffer's bound. It stops reading at the source: nothing parsed or
 * read ahead beyond the stream's own buffer, and the socket takes nothing more from the
 * kernel once the HTTP parser paused it. Before, a waiting follower held the whole chunk it
 * had read (all the stream had buffered, parsed into messages), the stream's buffer filled
 * again behind it, and its socket one more read: up to ~150 KiB each, ~30 MiB with 200
 * containers. Bytes, not timing: a fake Docker, a sender that is full after a set number of
 * events, the real Follower.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { AddressInfo, Socket } from 'node:net';
import { Follower, type FollowerDeps } from '../ingest/follower.js';
import { HELD_CHUNK_OVERHEAD_BYTES, heldChunks, type LogStream } from '../ingest/stream-read.js';
import { directLogSource } from '../ingest/docker-logs.js';
import { CheckpointStore } from '../ingest/checkpoint.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { TenantLimiter } from '../ingest/ratelimit.js';
import { collectorMetrics } from '../ingest/telemetry.js';
import { EVENT_OVERHEAD_BYTES, Sender, type Outgoing } from '../ingest/sender.js';
import type { DropReporter } from '../ingest/drops.js';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { ContainerFacts } from '../lib/container.js';
import { createRegistry } from '../lib/metrics.js';
import { capturingLogger } from './helpers/logs.js';

const LINE = 120;
/** 8-byte header, a 30-character timestamp, a space, the line and its newline. */
const FRAME = 8 + 30 + 1 + LINE + 1;

/** Docker's frame for line `i` (stdout, its own timestamp). */
function frame(i: number): Buffer {
  const ts = `2026-12-05T06:00:00.${String(i).padStart(9, '0')}Z`;
  const payload = Buffer.from(`${ts} ${`line ${i} `.padEnd(LINE, '.')}\n`);
  const h = Buffer.alloc(8);
  h[0] = 1;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

const codec = await AvroCodec.create(new ManifestSource());

/** The sender as the follower sees it: full once `limit` events are buffered (none is ever sent); room() lifts the limit. */
class FullSender {
  readonly lines: string[] = [];
  /** What the follower charged of its held bytes (hold()). */
  held = 0;
  private waiters: Array<() => void> = [];
  constructor(private limit: number) {}
  enqueue(o: Outgoing): void {
    this.lines.push(codec.decode('logs', o.value).line.toString('utf8'));
  }
  fullFor(): boolean {
    return this.lines.length >= this.limit;
  }
  capacity(): Promise<void> {
    return this.fullFor() ? new Promise((r) => this.waiters.push(r)) : Promise.resolve();
  }
  hold(bytes: number): void {
    this.held += bytes;
  }
  room(): void {
    this.limit = Infinity;
    for (const w of this.waiters.splice(0)) w();
  }
}

function follower(logs: () => Promise<LogStream>, sender: FullSender | Sender, dir: string): Follower {
  const facts: ContainerFacts = { id: 'c'.repeat(64), name: 'held', image: 'busybox', labels: {}, tty: false, running: true, pid: 1, networks: [], ports: [], limits: {} as ContainerFacts['limits'], startedAt: '', finishedAt: '' };
  const fakeDocker = { getContainer: () => ({ logs, inspect: () => Promise.resolve({ State: { Running: true } }) }) } as unknown as Docker;
  const unlimited = { linesPerSecond: 1e9, bytesPerSecond: 1e12, node: { linesPerSecond: 1e9, bytesPerSecond: 1e12 } };
  const cfg = collectorConfigSchema.parse({ labelPrefix: 'held.', rateLimit: unlimited });
  const deps: FollowerDeps = {
    docker: fakeDocker,
    logs,
    store: new CheckpointStore(dir),
    sender: sender as unknown as Sender,
    limiter: new TenantLimiter(cfg.rateLimit),
    drops: {} as DropReporter,
    // What the sender got is decoded and checked line by line.
    codec,
    logsTopic: 'logs',
    node: 'test-node',
    cfg,
    metrics: collectorMetrics(createRegistry(false)),
    log: capturingLogger().logger,
    overlapMs: 2000,
    candidateEveryMs: 100,
  };
  return new Follower(facts, { tenant: 'acme', app: 'held', logFormat: null, lbHost: null, lbPort: null, size: null }, deps);
}

async function until(ok: () => boolean, what = 'condition'): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 60 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Lets reads that were asked for land (I/O callbacks run between these turns). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 100));
}

/** What a waiting follower holding `held` bytes of whole frames, one chunk each, is charged: the bytes and each chunk's overhead. */
const chargeFor = (held: number) => held + (held / FRAME) * HELD_CHUNK_OVERHEAD_BYTES;

const expected = (n: number) => Array.from({ length: n }, (_, i) => frame(i).subarray(8 + 31, FRAME - 1).toString('utf8'));

test('a follower waiting for room holds only the stream buffer (its high-water mark and one source read), counted byte for byte, and every line comes once room is back', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'held-'));
  // A source like the HTTP parser: each read pushes 40 frames, one Buffer each (Docker's HTTP chunks).
  const PER_READ = 40;
  const TOTAL = 2000;
  let pulled = 0;
  let next = 0;
  const source = new Readable({
    read() {
      for (let i = 0; i < PER_READ && next < TOTAL; i++) {
        const f = frame(next++);
        pulled += f.length;
        this.push(f);
      }
    },
  });
  const sender = new FullSender(1);
  const f = follower(() => Promise.resolve(source as unknown as LogStream), sender, dir);
  const running = f.start();
  try {
    await until(() => f.diagnose().phase === 'waiting for room');
    await settle();
    assert.equal(sender.lines.length, 1, 'one line handed on, then the wait');
    // Taken from the source and not handed on: at most the high-water mark and one source read
    // (before: also the chunk read, all the stream had buffered, parsed into messages: 25,440 bytes here).
    const held = pulled - FRAME;
    assert.ok(held < source.readableHighWaterMark + PER_READ * FRAME, `held ${held} bytes`);
    // All of it waits in the stream's buffer (no chunk, no parsed messages), and heldBytes counts it byte for byte.
    assert.equal(source.readableLength, held);
    assert.equal(f.diagnose().heldBytes, held);
    assert.equal(sender.held, chargeFor(held), 'charged to the bound while it waits: its bytes and its chunks');

    sender.room();
    await until(() => sender.lines.length === TOTAL);
    assert.deepEqual(sender.lines, expected(TOTAL));
    assert.equal(f.diagnose().phase, 'reading');
    assert.equal(f.diagnose().heldBytes, 0);
    assert.equal(sender.held, 0, 'released once it reads again');
  } finally {
    await f.stop();
    await running;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('over HTTP (as from dockerd): a waiting follower\'s socket takes nothing more from the kernel; it reads on once room is back, every line once', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'held-'));
  const TOTAL = 20_000;
  // Like dockerd: one HTTP chunk per frame, far more than the kernel's socket buffers hold; kept open.
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.docker.raw-stream' });
    for (let i = 0; i < TOTAL; i++) res.write(frame(i));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // The collector's own reader of Docker's logs endpoint (ingest/docker-logs.ts), as it reads dockerd.
  const source = directLogSource({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  let response: (LogStream & { socket: Socket; readableLength: number; readableHighWaterMark: number }) | undefined;
  const logs = async () => (response = (await source('c'.repeat(64), { follow: true, since: '0', abortSignal: new AbortController().signal })) as typeof response & LogStream);
  const sender = new FullSender(1);
  const f = follower(logs, sender, dir);
  const running = f.start();
  try {
    await until(() => f.diagnose().phase === 'waiting for room');
    const socket = response!.socket;
    // The reader paused the socket once the waiting stream held its high-water mark.
    await until(() => socket.isPaused());
    await settle();
    assert.equal(sender.lines.length, 1, 'one line handed on, then the wait');
    assert.equal(socket.readableLength, 0, 'the socket took no read past the pause');
    const held = f.diagnose().heldBytes;
    // Each socket read's body is one chunk: the reader stopped inside the first (its rest, under one
    // read of 64 KiB, is held as bytes, not parsed), and the stream's buffer holds what came after it.
    const inReader = held - response!.readableLength;
    assert.ok(inReader > 0 && inReader < 64 * 1024, `held in the reader: ${inReader} bytes`);
    // The response's high-water mark and the rest of one socket read (64 KiB at most).
    assert.ok(response!.readableLength < response!.readableHighWaterMark + 64 * 1024, `held in the stream: ${response!.readableLength} bytes`);

    sender.room();
    await until(() => sender.lines.length === TOTAL);
    assert.deepEqual(sender.lines, expected(TOTAL));
    assert.equal(f.diagnose().heldBytes, 0);
  } finally {
    await f.stop();
    await running;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A dockerd-like server: one HTTP chunk per frame, `total` frames, the response kept open. */
type DirectStream = LogStream & { socket: Socket; readableLength: number; readableHighWaterMark: number };

async function logServer(total: number): Promise<{ logs: () => Promise<LogStream>; response: () => DirectStream; close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.docker.raw-stream' });
    for (let i = 0; i < total; i++) res.write(frame(i));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const source = directLogSource({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  let response: DirectStream | undefined;
  return {
    logs: async () => (response = (await source('c'.repeat(64), { follow: true, since: '0', abortSignal: new AbortController().signal })) as DirectStream),
    response: () => response!,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The real Sender in front of a Kafka that answers only when `open()` was called (before that, every request waits). */
function gatedSender(maxBufferedBytes: number, batchBytes: number): { sender: Sender; open: () => void } {
  let opened = false;
  const waiting: Array<() => void> = [];
  const sender = new Sender(() => (opened ? Promise.resolve() : new Promise<void>((r) => waiting.push(r))), { batchBytes, lingerMs: 5, maxBufferedBytes, stallMs: 0, requestTimeoutMs: 3_600_000 }, capturingLogger().logger);
  return {
    sender,
    open: () => {
      opened = true;
      for (const r of waiting.splice(0)) r();
    },
  };
}

test('the real sender: while a follower waits for room its held bytes and chunks are charged to the bound, exactly, only once the buffer is full; released to 0 once it reads again', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'held-'));
  const TOTAL = 20_000;
  const BOUND = 1024 * 1024;
  const docker = await logServer(TOTAL);
  const { sender, open } = gatedSender(BOUND, 16 * 1024);
  const f = follower(docker.logs, sender, dir);
  const running = f.start();
  try {
    await until(() => f.diagnose().phase === 'waiting for room');
    // Nothing was charged before the wait: it came when the buffered events alone filled the bound, a batch in flight.
    assert.ok(sender.buffered >= BOUND, `buffered ${sender.buffered}`);
    assert.ok(sender.current && sender.current.messages > 0, 'a batch in flight');
    const socket = docker.response().socket;
    await until(() => socket.isPaused());
    await settle();
    const held = f.diagnose().heldBytes;
    // One chunk per socket read (its body, the HTTP chunks undone), not one per frame.
    const chunks = heldChunks(docker.response());
    // The response's buffer (over its 16 KiB high-water mark: the reader pushed the rest of its read), under the cap.
    assert.ok(held >= docker.response().readableHighWaterMark && held + chunks * HELD_CHUNK_OVERHEAD_BYTES < BOUND / 2, `held ${held} bytes in ${chunks} chunks`);
    assert.equal(socket.readableLength, 0, 'the socket took no read past the pause (its read-ahead stopped too)');
    assert.ok(chunks >= 1 && chunks <= Math.ceil(docker.response().readableLength / FRAME), `${chunks} chunks for ${docker.response().readableLength} bytes in the stream`);
    assert.equal(sender.held, held + chunks * HELD_CHUNK_OVERHEAD_BYTES, 'charged: exactly what the waiting follower holds, at its cost (bytes and chunks)');
    assert.equal(sender.full, true);

    open();
    await until(() => f.diagnose().ackedLines === TOTAL, 'every line acknowledged');
    assert.equal(f.diagnose().phase, 'reading');
    assert.equal(sender.held, 0, 'released once it reads again');
    assert.equal(sender.buffered, 0);
  } finally {
    await f.stop();
    await running;
    await sender.close(1000);
    await docker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the real sender: held bytes are charged up to half the bound, and a follower stopped while it waits releases its charge', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'held-'));
  // A bound smaller than the response's high-water mark: what a paused response holds is over half of it.
  const BOUND = 16 * 1024;
  const docker = await logServer(5_000);
  const { sender } = gatedSender(BOUND, 4 * 1024);
  const f = follower(docker.logs, sender, dir);
  const running = f.start();
  try {
    await until(() => f.diagnose().phase === 'waiting for room');
    assert.ok(sender.buffered >= BOUND, `buffered ${sender.buffered}`);
    const socket = docker.response().socket;
    await until(() => socket.isPaused());
    await settle();
    assert.ok(f.diagnose().heldBytes > BOUND / 2, `held ${f.diagnose().heldBytes}`);
    assert.equal(sender.held, BOUND / 2, 'capped at half the bound');

    await f.stop();
    await running;
    assert.equal(f.diagnose().phase, 'ended');
    assert.equal(sender.held, 0, 'released on stop');
  } finally {
    await f.stop();
    await running;
    await sender.close(100);
    await docker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the sender\'s accounting of held bytes: they count towards the bound (up to half of it) and their release lets waiting readers go on', async () => {
  const BOUND = 10_000;
  const { sender } = gatedSender(BOUND, 1_000_000);
  const overhead = EVENT_OVERHEAD_BYTES;
  // 8 events of 744 + 256 bytes: 8,000 of the 10,000 charged.
  for (let i = 0; i < 8; i++) sender.enqueue({ topic: 't', key: 'k', tenant: 'acme', value: Buffer.alloc(1000 - overhead) });
  assert.equal(sender.buffered, 8000);
  assert.equal(sender.full, false);
  sender.hold(1500);
  assert.equal(sender.held, 1500);
  assert.equal(sender.full, false);
  sender.hold(500);
  assert.equal(sender.held, 2000);
  assert.equal(sender.full, true);
  assert.equal(sender.fullFor('acme'), true, 'a tenant alone waits exactly when the buffer is full');
  let resumed = false;
  void sender.capacity('acme').then(() => (resumed = true));
  await settle();
  assert.equal(resumed, false);
  // A reader releases what it held: the waiting one goes on, without an acknowledgement.
  sender.hold(-2000);
  assert.equal(sender.held, 0);
  await settle();
  assert.equal(resumed, true);
  // Held bytes alone never fill the bound: at most half of it counts.
  sender.hold(50_000);
  assert.equal(sender.held, BOUND / 2);
  sender.hold(-50_000);
  assert.equal(sender.held, 0);
  await sender.close(10);
});

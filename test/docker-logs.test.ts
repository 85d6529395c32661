/**
 * The collector's reader of Docker's logs endpoint (ingest/docker-logs.ts): the chunked
 * coding undone in place for any cut of the bytes into reads, answers other than 200 as
 * dockerode gives them, aborts, a connection closed inside the body; and on the real Docker,
 * the same bytes as dockerode's request for the same container.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ChunkedDecoder, directLogSource, dockerodeLogSource, endpointOf, logSourceFor, type LogSource } from '../ingest/docker-logs.js';
import { dockerClient } from '../lib/docker.js';
import { prng } from '../bench/lib/lines.js';
import { docker, runContainer } from './helpers/docker.js';

/** `body` in chunks of the given sizes, with upper- or lower-case hex, extensions and trailers as asked. */
function encode(body: Buffer, sizes: number[], opts: { upper?: boolean; ext?: boolean; trailer?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  for (const n of sizes) {
    const hex = n.toString(16);
    parts.push(Buffer.from(`${opts.upper ? hex.toUpperCase() : hex}${opts.ext ? ';name=value' : ''}\r\n`, 'latin1'), body.subarray(off, off + n), Buffer.from('\r\n'));
    off += n;
  }
  parts.push(Buffer.from(`0\r\n${opts.trailer ? 'X-Trailer: 1\r\nY: 2\r\n' : ''}\r\n`, 'latin1'));
  return Buffer.concat(parts);
}

/** Decodes `wire` cut into reads at `cuts`, each read a copy of its own (decode() writes into it). */
function decodeInReads(wire: Buffer, cuts: number[]): { body: Buffer; done: boolean } {
  const d = new ChunkedDecoder();
  const out: Buffer[] = [];
  let from = 0;
  for (const to of [...cuts, wire.length]) {
    const read = Buffer.from(wire.subarray(from, to));
    const n = d.decode(read);
    out.push(Buffer.from(read.subarray(0, n)));
    from = to;
  }
  return { body: Buffer.concat(out), done: d.done };
}

test('chunked coding undone in place: 2,000 random bodies, chunk sizes and cuts into reads (inside sizes, CRLFs, extensions and trailers) give the body byte for byte', () => {
  // Seeded, so a failure can be replayed.
  const r = prng(13);
  for (let k = 0; k < 2000; k++) {
    const len = Math.floor(r() * 3000);
    const body = randomBytes(len);
    const sizes: number[] = [];
    for (let left = len; left > 0; ) {
      const n = Math.min(left, 1 + Math.floor(r() * (r() < 0.5 ? 40 : 700)));
      sizes.push(n);
      left -= n;
    }
    const wire = encode(body, sizes, { upper: r() < 0.3, ext: r() < 0.2, trailer: r() < 0.2 });
    const cuts = [...new Set(Array.from({ length: Math.floor(r() * 12) }, () => Math.floor(r() * wire.length)))].sort((a, b) => a - b);
    const { body: got, done } = decodeInReads(wire, cuts);
    assert.ok(got.equals(body), `case ${k}: ${len} bytes in ${sizes.length} chunks, cuts ${cuts.join(',')}`);
    assert.equal(done, true, `case ${k}: the last chunk read`);
  }
  // One byte per read: every state carried across reads.
  const body = Buffer.from('frame one\nframe two\n');
  const wire = encode(body, [3, 7, 10], { ext: true, trailer: true });
  assert.ok(decodeInReads(wire, Array.from({ length: wire.length - 1 }, (_, i) => i + 1)).body.equals(body));
});

test('chunked coding: bytes after the last chunk are not body; a body cut short is not done; malformed codings are refused with the reason', () => {
  const wire = Buffer.concat([encode(Buffer.from('abc'), [3]), Buffer.from('GARBAGE')]);
  const d = new ChunkedDecoder();
  const read = Buffer.from(wire);
  assert.equal(read.subarray(0, d.decode(read)).toString(), 'abc');
  assert.equal(d.done, true);

  const short = new ChunkedDecoder();
  const part = Buffer.from('5\r\nab');
  assert.equal(short.decode(part), 2);
  assert.equal(short.done, false);

  const bad: Array<[string, RegExp]> = [
    ['zz\r\nab\r\n', /a chunk size expected, got byte 122/],
    ['3\nabc\r\n', /byte 10 in a chunk size/],
    ['3\r\nabcd\r\n', /a chunk longer than its size/],
    ['3\r\nabc\rX', /CR without LF after a chunk/],
    ['3\rXabc', /CR without LF after a chunk size/],
    ['123456789\r\n', /more than 8 hex digits/],
    ['0\r\n\rX', /CR without LF at its end/],
  ];
  for (const [input, reason] of bad) assert.throws(() => new ChunkedDecoder().decode(Buffer.from(input, 'latin1')), reason, JSON.stringify(input));
});

/** A server speaking raw bytes: `answer` writes what it likes on each connection, after the request head arrived. */
async function rawServer(answer: (socket: net.Socket, request: string) => void): Promise<{ port: number; requests: string[]; close: () => Promise<void> }> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let head = '';
    socket.on('data', (d) => {
      if (head.includes('\r\n\r\n')) return;
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        requests.push(head);
        answer(socket, head);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const never = () => new AbortController().signal;

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c as Buffer));
  return Buffer.concat(parts);
}

test('the request Docker gets, and bodies chunked, sized and ended by the connection, each read in full', async () => {
  const body = Buffer.from('\u0001\u0000\u0000\u0000\u0000\u0000\u0000\u00052026-x hello\n', 'latin1');
  const answers = [
    `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${encode(body, [4, body.length - 4]).toString('latin1')}`,
    `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body.toString('latin1')}`,
    `HTTP/1.0 200 OK\r\n\r\n${body.toString('latin1')}`,
  ];
  let n = 0;
  const server = await rawServer((socket) => {
    const a = answers[n++]!;
    // Sent in pieces: the head and the body cut anywhere.
    socket.write(a.slice(0, 20), 'latin1');
    setTimeout(() => socket.write(a.slice(20, 60), 'latin1'), 5);
    setTimeout(() => (n === 3 ? socket.end(a.slice(60), 'latin1') : socket.write(a.slice(60), 'latin1')), 10);
  });
  try {
    const source = directLogSource({ host: '127.0.0.1', port: server.port }, 'v1.41');
    for (let i = 0; i < answers.length; i++) {
      const got = await readAll(await source('c0ffee', { follow: i === 0, since: '1733400000.123000000', abortSignal: never() }));
      assert.ok(got.equals(body), `answer ${i}: ${JSON.stringify(got.toString('latin1'))}`);
    }
    assert.equal(server.requests[0]!.split('\r\n')[0], 'GET /v1.41/containers/c0ffee/logs?follow=1&stdout=1&stderr=1&timestamps=1&since=1733400000.123000000 HTTP/1.1');
    assert.equal(server.requests[1]!.split('\r\n')[0], 'GET /v1.41/containers/c0ffee/logs?follow=0&stdout=1&stderr=1&timestamps=1&since=1733400000.123000000 HTTP/1.1');
    assert.match(server.requests[0]!, /\r\nConnection: close\r\n/);
  } finally {
    await server.close();
  }
});

test('answers other than 200 reject as dockerode does (statusCode, Docker\'s message); a connection closed before the answer or inside the body is an error, not an end', async () => {
  const answers: Array<(s: net.Socket) => void> = [
    (s) => s.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 48\r\n\r\n{"message":"No such container: c0ffee <b>x</b>"}\n'),
    (s) => {
      const message = Buffer.from('{"message":"can not get logs from container which is dead or marked for removal"}');
      s.end(`HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n${encode(message, [10, message.length - 10]).toString('latin1')}`);
    },
    (s) => s.end('HTTP/1.1 500 Internal Server Error\r\n\r\nnot json'),
    (s) => s.destroy(),
    (s) => s.end('SSH-2.0-OpenSSH\r\n\r\n'),
    (s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nonly part of a chunk');
      setTimeout(() => s.destroy(), 20);
    },
    (s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.');
      setTimeout(() => s.destroy(), 20);
    },
  ];
  let n = 0;
  const server = await rawServer((s) => answers[n++]!(s));
  const source = directLogSource({ host: '127.0.0.1', port: server.port });
  const open = () => source('c0ffee', { follow: true, since: '0', abortSignal: never() });
  try {
    await assert.rejects(open(), (err: Error & { statusCode?: number; json?: unknown }) => {
      assert.equal(err.statusCode, 404);
      assert.equal(err.message, '(HTTP code 404) No such container: c0ffee <b>x</b>');
      assert.deepEqual(err.json, { message: 'No such container: c0ffee <b>x</b>' });
      return true;
    });
    await assert.rejects(open(), { statusCode: 409, message: '(HTTP code 409) can not get logs from container which is dead or marked for removal' });
    await assert.rejects(open(), { statusCode: 500, message: '(HTTP code 500) not json' });
    await assert.rejects(open(), { message: 'Docker closed the connection before answering the logs request' });
    await assert.rejects(open(), { message: 'Docker\'s answer to the logs request is not HTTP: "SSH-2.0-OpenSSH"' });
    const cut = await open();
    await assert.rejects(readAll(cut), { message: 'Docker closed the log stream inside its chunked body' });
    const sized = await open();
    await assert.rejects(readAll(sized), { message: 'Docker closed the log stream 90 bytes before its end' });
  } finally {
    await server.close();
  }
});

test('an abort while Docker has not answered rejects at once and closes the connection; destroying a stream closes it too', async () => {
  let closed = 0;
  const server = await rawServer((s) => {
    s.on('close', () => closed++);
    if (server.requests.length === 2) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  });
  const source = directLogSource({ host: '127.0.0.1', port: server.port });
  try {
    const ac = new AbortController();
    const p = source('c0ffee', { follow: true, since: '0', abortSignal: ac.signal });
    while (server.requests.length < 1) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(source('c0ffee', { follow: true, since: '0', abortSignal: aborted.signal }), { name: 'AbortError' });

    const stream = await source('c0ffee', { follow: true, since: '0', abortSignal: never() });
    const first = await new Promise<Buffer>((r) => stream.once('data', r));
    assert.equal(first.toString(), 'hello');
    stream.destroy();
    while (closed < 2) await new Promise((r) => setTimeout(r, 5));
    assert.equal(closed, 2, 'both connections closed');
  } finally {
    await server.close();
  }
});

test('which reader: the direct one for a unix socket or plain HTTP, dockerode\'s request for TLS, credentials or a path prefix', () => {
  assert.deepEqual(endpointOf(dockerClient('/var/run/docker.sock')), { endpoint: { socketPath: '/var/run/docker.sock' }, version: undefined });
  assert.deepEqual(endpointOf(dockerClient('tcp://10.0.0.5:2375')), { endpoint: { host: '10.0.0.5', port: 2375 }, version: undefined });
  assert.equal(endpointOf(dockerClient('https://10.0.0.5:2376')), undefined);
  const withPrefix = dockerClient('/var/run/docker.sock');
  (withPrefix.modem as unknown as { pathPrefix: string }).pathPrefix = '/proxy';
  assert.equal(endpointOf(withPrefix), undefined);
  const withAuth = dockerClient('tcp://10.0.0.5:2375');
  (withAuth.modem as unknown as { username: string }).username = 'u';
  assert.equal(endpointOf(withAuth), undefined);
});

test('on the real Docker: the direct reader gives the same bytes as dockerode\'s request, following a running container and reading an exited one; a missing container is 404 as with dockerode', async () => {
  const lines = 3000;
  const c = await runContainer({ prefix: 'dlogs.', script: `i=0; while [ $i -lt ${lines} ]; do echo "line $i <script>"; echo "err $i" >&2; i=$((i+1)); done; sleep 3` });
  try {
    const direct = logSourceFor(docker);
    const viaDockerode: LogSource = dockerodeLogSource(docker);
    assert.notEqual(endpointOf(docker), undefined, 'the test Docker is reached over its unix socket');
    await until(async () => (await readAll(await direct(c.id, { follow: false, since: '0', abortSignal: never() }))).toString('latin1').includes(`err ${lines - 1}\n`));
    // While it runs (follow: the stream is ended by the container's exit) and once it has exited.
    for (const follow of [true, false]) {
      const [a, b] = await Promise.all([readAll(await direct(c.id, { follow, since: '0', abortSignal: never() })), readAll(await viaDockerode(c.id, { follow, since: '0', abortSignal: never() }))]);
      assert.ok(a.length > lines * 2 * 40, `${a.length} bytes`);
      assert.ok(a.equals(b), `follow=${follow}: ${a.length} bytes direct, ${b.length} through dockerode`);
    }
    await assert.rejects(direct('0'.repeat(64), { follow: true, since: '0', abortSignal: never() }), (err: Error & { statusCode?: number }) => {
      assert.equal(err.statusCode, 404);
      assert.match(err.message, /^\(HTTP code 404\) No such container: 0{64}/);
      return true;
    });
  } finally {
    await docker.getContainer(c.id).remove({ force: true });
  }
});

async function until(ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error('not within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}


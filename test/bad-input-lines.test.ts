/**
 * Log lines no one should print, through the real collector (Docker's logs API → Kafka)
 * and the real log sink (Kafka → embedded ClickHouse): every byte kept or counted, the
 * lines around them intact. (test/collector.test.ts has 100 KiB and 5 MiB lines, invalid
 * UTF-8, NUL and TTY lines; test/bad-input-empty-lines.test.ts has a million empty lines.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { eventually } from './helpers/env.js';
import { runContainer } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';
import { note, pipeline, type Pipeline } from './helpers/bad-input.js';

let p: Pipeline;
before(async () => {
  p = await pipeline({ sink: true });
});
after(() => p.close());

const byContainer = (id: string) => (e: { container_id: string }) => e.container_id === id;
/** `printf` argument printing exactly these bytes (every byte as an octal escape: no quoting, no `%`). */
const printfBytes = (b: Buffer) => `printf '${[...b].map((x) => `\\${x.toString(8).padStart(3, '0')}`).join('')}'`;

interface Row {
  hex: string;
  original_length: number;
  truncated: boolean;
  invalid_utf8: boolean;
  stream: string;
}

test('binary bytes, ANSI escapes and carriage returns: kept byte for byte through Kafka into ClickHouse, flagged only when not clean text', async () => {
  const collector = p.collector('collector-bytes');
  await collector.start();
  // Every byte value but the newline, in order (NUL and 0xff included).
  const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((i) => i !== 0x0a));
  const ansi = Buffer.from('\x1b[1;31mERROR\x1b[0m plain \x1b[2K\x1b[1A');
  const osc = Buffer.from('\x1b]0;title\x07 bell');
  // printed → expected line (the content Docker hands over, minus the line ending).
  const cases: Array<{ name: string; printed: Buffer; line: Buffer; invalid: boolean }> = [
    { name: 'binary', printed: Buffer.concat([binary, Buffer.from('\n')]), line: binary, invalid: true },
    { name: 'ansi colours (CSI)', printed: Buffer.concat([ansi, Buffer.from('\n')]), line: ansi, invalid: false },
    { name: 'OSC title with BEL', printed: Buffer.concat([osc, Buffer.from('\n')]), line: osc, invalid: true },
    { name: 'CR inside a line is content', printed: Buffer.from('cr a\rb\rc\n'), line: Buffer.from('cr a\rb\rc'), invalid: false },
    { name: 'progress bar', printed: Buffer.from('cr progress 10%\rprogress 100%\n'), line: Buffer.from('cr progress 10%\rprogress 100%'), invalid: false },
    { name: 'CRLF ending', printed: Buffer.from('cr crlf\r\n'), line: Buffer.from('cr crlf'), invalid: false },
    { name: 'CR CR LF: one CR is the ending', printed: Buffer.from('cr two\r\r\n'), line: Buffer.from('cr two\r'), invalid: false },
    { name: 'CR LF alone: an empty line', printed: Buffer.from('\r\n'), line: Buffer.alloc(0), invalid: false },
    { name: 'last line ending in CR, no LF', printed: Buffer.from('cr tail\r'), line: Buffer.from('cr tail'), invalid: false },
  ];
  const c = await runContainer({ prefix: p.prefix, tenant: 'acme', app: 'bytes', logDriver: 'local', script: `${cases.map((k) => printfBytes(k.printed)).join('; ')}` });
  const tty = await runContainer({ prefix: p.prefix, tenant: 'acme', app: 'bytes-tty', tty: true, script: "printf 'tty lf\\n'; printf 'tty crlf\\r\\n'; printf 'tty cr\\rmid\\n'" });
  try {
    const events = await collect(p.bus, 'logs', (evs) => evs.filter(byContainer(c.id)).length >= cases.length && evs.filter(byContainer(tty.id)).length >= 3, 120_000);
    const mine = events.filter(byContainer(c.id));
    assert.equal(mine.length, cases.length, 'one event per line, no more');
    for (const [i, k] of cases.entries()) {
      const e = mine[i]!;
      assert.deepEqual(e.line, k.line, k.name);
      assert.equal(e.invalid_utf8, k.invalid, `${k.name}: invalid_utf8`);
      assert.equal(e.truncated, false);
      assert.equal(e.original_length, k.line.length, `${k.name}: original_length`);
    }
    // TTY output passes through the terminal's newline translation (\n → \r\n): the rule is the same.
    assert.deepEqual(events.filter(byContainer(tty.id)).map((e) => e.line.toString('latin1')), ['tty lf', 'tty crlf\r', 'tty cr\rmid']);

    const rows = await eventually('rows in ClickHouse', async () => {
      const r = await p.q<Row>(`SELECT hex(line) AS hex, original_length, truncated, invalid_utf8, stream FROM ${p.ch.table('logs')} FINAL WHERE container_id = {id:String} ORDER BY ts, ts_nanos, seq`, { id: c.id });
      return r.length >= cases.length ? r : undefined;
    }, 60_000);
    assert.deepEqual(
      rows.map((r) => [r.hex, Number(r.original_length), r.truncated, r.invalid_utf8]),
      cases.map((k) => [k.line.toString('hex').toUpperCase(), k.line.length, false, k.invalid]),
    );
    note(`bytes: ${cases.length} lines (${cases.reduce((n, k) => n + k.line.length, 0)} bytes) kept exactly in Kafka and ClickHouse; ${cases.filter((k) => k.invalid).length} flagged invalid_utf8`);
  } finally {
    await collector.stop();
  }
});

test('10 MiB without a newline: cut at the line limit with its length recorded, memory bounded, the lines after it intact', async () => {
  const maxLineBytes = 256 * 1024;
  const collector = p.collector('collector-huge', { maxLineBytes });
  const size = 10 * 1024 * 1024;
  // The whole test process, for the report only (not asserted): the sink and the readers
  // share it, and right after one gc() V8 may not have swept the ArrayBuffers it found
  // dead yet, so a single sample could count the 10 MiB of Docker chunks already let go
  // of (seen in CI: "buffers grew 10728001 bytes"). Two collections in a row finish the sweep.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const settled = () => {
    gc();
    gc();
    return process.memoryUsage();
  };
  const base = settled();
  let peak = { rss: base.rss, heapUsed: base.heapUsed, arrayBuffers: base.arrayBuffers };
  const sampler = setInterval(() => {
    const m = settled();
    peak = { rss: Math.max(peak.rss, m.rss), heapUsed: Math.max(peak.heapUsed, m.heapUsed), arrayBuffers: Math.max(peak.arrayBuffers, m.arrayBuffers) };
  }, 100);
  await collector.start();
  const c = await runContainer({
    prefix: p.prefix,
    tenant: 'acme',
    app: 'huge',
    logDriver: 'local',
    script: `echo before; head -c ${size} /dev/zero | tr '\\000' x; printf '\\n'; i=1; while [ $i -le 1000 ]; do echo "after $i"; i=$((i+1)); done`,
  });
  try {
    await c.wait();
    const events = (await collect(p.bus, 'logs', (evs) => evs.filter(byContainer(c.id)).length >= 1002, 180_000)).filter(byContainer(c.id));
    clearInterval(sampler);
    // The lines can be on Kafka before the follower is done: after the container's exit it
    // reads the rest of its logs in a second request from its last read point, which may be
    // before the long line (replayed, not sent again). Its state is read once that stream ended.
    const follower = await eventually('the follower done with the container', async () => {
      const f = collector.diagnose().followers.find((x) => x.containerId === c.id);
      return f && f.phase === 'ended' ? f : undefined;
    }, 60_000);
    const mb = (n: number) => `${(n / 1048576).toFixed(2)} MiB`;
    note(`10 MiB line: the collector held at most ${mb(follower.retainedPeakBytes)} for it (unfinished line, frame rest, chunk being read); collector sender peak ${mb(collector.sender.peakBuffered)}; peak growth of the whole test process (collector, sink, readers) after GC: rss ${mb(peak.rss - base.rss)}, heap ${mb(peak.heapUsed - base.heapUsed)}, buffers ${mb(peak.arrayBuffers - base.arrayBuffers)}`);
    assert.equal(events.length, 1002, 'before, the cut line, 1000 after: nothing split, nothing lost');
    assert.equal(events[0]!.line.toString(), 'before');
    const huge = events[1]!;
    assert.equal(huge.truncated, true);
    assert.equal(huge.original_length, size);
    assert.ok(huge.line.equals(Buffer.alloc(maxLineBytes, 'x')), 'the first 256 KiB kept exactly');
    assert.deepEqual(events.slice(2).map((e) => e.line.toString()), Array.from({ length: 1000 }, (_, i) => `after ${i + 1}`));
    assert.ok(events.slice(2).every((e) => !e.truncated && e.original_length === e.line.length));
    // Memory: what the collector holds for one line is the cut, never the whole line. Its
    // follower counts the bytes it holds (the kept pieces of unfinished lines, the rest of a
    // frame, the chunk being read) after every chunk: the peak is the cut (256 KiB) and one
    // chunk of Docker's stream (at most 64 KiB) beside it, whatever the machine's load. A
    // collector keeping the whole line would count 10 MiB here. The Kafka buffer held at most
    // one batch beside it (its bound is 64 MiB).
    assert.ok(follower.retainedPeakBytes >= maxLineBytes, `held ${follower.retainedPeakBytes} bytes: at least the cut`);
    assert.ok(follower.retainedPeakBytes < 2 * maxLineBytes, `held ${follower.retainedPeakBytes} bytes for a ${size}-byte line cut at ${maxLineBytes}`);
    assert.equal(follower.retainedBytes, 0, 'nothing held once the stream ended');
    assert.ok(collector.sender.peakBuffered < size, `sender peak ${collector.sender.peakBuffered} bytes`);

    const [row] = await eventually('rows in ClickHouse', async () => {
      const r = await p.q<{ n: string; cut: string; longest: string; original: string; after: string }>(
        `SELECT count() AS n, countIf(truncated) AS cut, max(length(line)) AS longest, max(original_length) AS original, countIf(startsWith(line, 'after ')) AS after FROM ${p.ch.table('logs')} FINAL WHERE container_id = {id:String}`,
        { id: c.id },
      );
      return Number(r[0]?.n) >= 1002 ? r : undefined;
    }, 60_000);
    assert.deepEqual([row!.n, row!.cut, row!.longest, row!.original, row!.after].map(Number), [1002, 1, maxLineBytes, size, 1000]);
  } finally {
    clearInterval(sampler);
    await collector.stop();
  }
});

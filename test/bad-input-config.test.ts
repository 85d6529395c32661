/**
 * Bad configuration and services that do not answer, through real `logmeter` processes:
 * a clear message naming what is wrong (and where), exit 2 for a bad config, and for a
 * service that does not answer retries with backoff, one log line per attempt naming
 * the service and its address, then exit 1 with a message — no stack trace, no hang.
 * (test/config.test.ts has loadConfig's own cases: every bad variable at once, unknown
 * file keys, unparseable and missing files.)
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cli, cliBackground, namespace, type CliResult } from './helpers/env.js';
import { note } from './helpers/bad-input.js';

const ns = namespace();
const tmp = mkdtempSync(path.join(tmpdir(), 'logmeter-badcfg-'));
after(() => ns.cleanup());

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const STACK = /\n\s+at .*:\d+:\d+\)?/;

function noStack(r: { stdout: string; stderr: string }): void {
  assert.doesNotMatch(r.stdout + r.stderr, STACK, 'no stack trace');
  assert.doesNotMatch(r.stdout + r.stderr, /"stack":/, 'no stack trace in the JSON logs');
}

async function timed(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult & { ms: number }> {
  const t0 = Date.now();
  const r = await cli(args, env, 120_000);
  const ms = Date.now() - t0;
  note(`logmeter ${args.join(' ')}: exit ${r.code} after ${ms} ms`);
  return { ...r, ms };
}

/** The startup retry lines of one service. */
function retries(out: string, service: string): Array<{ address: string; attempt: number; msg: string }> {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"component":"startup"'))
    .map((l) => JSON.parse(l) as { service: string; address: string; attempt: number; msg: string })
    .filter((l) => l.service === service);
}

test('a missing config file: exit 2 naming the file, no stack trace', async () => {
  const missing = path.join(tmp, 'nope.yaml');
  const r = await timed(['--config', missing, 'collector'], ns.env);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`- ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));
  noStack(r);
  const viaEnv = await timed(['collector'], { ...ns.env, LOGMETER_CONFIG: missing });
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, /nope\.yaml: ENOENT/);
});

test('wrong types in variables and in the file: every one named with the value it had (secrets not shown); exit 2', async () => {
  const file = path.join(tmp, 'types.yaml');
  writeFileSync(file, 'kafka:\n  partitions: 2.5\ncollector:\n  maxLineBytes: big\n  rateLimit:\n    tenants:\n      acme:\n        linesPerSec: 5\nstartup:\n  timeoutSeconds: -1\n');
  const r = await timed(['--config', file, 'collector'], {
    ...ns.env,
    LOGMETER_MAX_BUFFERED_BYTES: '0x100000',
    LOGMETER_STATS_INTERVAL: '10s',
    LOGMETER_SCALER_DRAIN_MS: '1e3',
    LOGMETER_STARTUP_TIMEOUT: 'soon',
    LOGMETER_ADMIN_TOKEN: 'short-secret',
  });
  assert.equal(r.code, 2);
  const problems = r.stderr.split('\n').filter((l) => l.startsWith('  - '));
  note(problems.join('\n'));
  assert.deepEqual(problems.sort(), [
    `  - ${file}: collector.maxLineBytes: Invalid input: expected number, received string`,
    `  - ${file}: collector.rateLimit.tenants.acme: Unrecognized key: "linesPerSec"`,
    `  - ${file}: kafka.partitions: Invalid input: expected int, received number`,
    '  - LOGMETER_ADMIN_TOKEN: at least 16 characters',
    '  - LOGMETER_MAX_BUFFERED_BYTES: Invalid input: expected number, received string (got "0x100000")',
    '  - LOGMETER_SCALER_DRAIN_MS: Invalid input: expected number, received string (got "1e3")',
    '  - LOGMETER_STARTUP_TIMEOUT: Invalid input: expected number, received string (got "soon")',
    '  - LOGMETER_STATS_INTERVAL: Invalid input: expected number, received string (got "10s")',
  ].sort());
  assert.doesNotMatch(r.stderr, /short-secret/);
  noStack(r);
});

test('an unknown LOGMETER_ variable is named at start, with the setting it probably meant', async () => {
  const port = await closedPort();
  const r = await timed(['collector'], { ...ns.env, KAFKA_BROKERS: `127.0.0.1:${port}`, LOGMETER_STARTUP_TIMEOUT: '1', LOGMETER_MAX_LINE_BYTE: '4096', LOGMETER_NOT_A_THING: 'x' });
  const warned = r.stdout
    .split('\n')
    .filter((l) => l.includes('is not a logmeter setting'))
    .map((l) => JSON.parse(l) as { variable: string; msg: string })
    .filter((l) => l.variable === 'LOGMETER_MAX_LINE_BYTE' || l.variable === 'LOGMETER_NOT_A_THING')
    .map((l) => l.msg);
  assert.deepEqual(warned, [
    'environment variable LOGMETER_MAX_LINE_BYTE is not a logmeter setting; ignored (did you mean LOGMETER_MAX_LINE_BYTES?)',
    'environment variable LOGMETER_NOT_A_THING is not a logmeter setting; ignored',
  ]);
});

const unreachable: Array<{ what: string; service: string; command: string[]; env: (port: number) => Record<string, string>; address: (port: number) => string; setting: string }> = [
  { what: 'Kafka', service: 'Kafka', command: ['collector'], env: (p) => ({ KAFKA_BROKERS: `127.0.0.1:${p}` }), address: (p) => `127.0.0.1:${p}`, setting: 'KAFKA_BROKERS' },
  { what: 'Redis', service: 'Redis', command: ['processor', 'billing'], env: (p) => ({ REDIS_URL: `redis://127.0.0.1:${p}` }), address: (p) => `127.0.0.1:${p}`, setting: 'REDIS_URL' },
  { what: 'a ClickHouse server', service: 'ClickHouse', command: ['processor', 'log-sink'], env: (p) => ({ CLICKHOUSE_URL: `http://127.0.0.1:${p}` }), address: (p) => `http://127.0.0.1:${p}`, setting: 'CLICKHOUSE_URL' },
  { what: 'Docker (TCP)', service: 'Docker', command: ['collector'], env: (p) => ({ DOCKER_HOST: `tcp://127.0.0.1:${p}` }), address: (p) => `tcp://127.0.0.1:${p}`, setting: 'DOCKER_HOST' },
  { what: 'Docker (socket)', service: 'Docker', command: ['processor', 'routes'], env: (p) => ({ DOCKER_HOST: `unix://${tmp}/docker-${p}.sock` }), address: (p) => `unix://${tmp}/docker-${p}.sock`, setting: 'DOCKER_HOST' },
  { what: 'a schema registry', service: 'the schema registry', command: ['processor', 'access-log'], env: (p) => ({ SCHEMA_REGISTRY_URL: `http://127.0.0.1:${p}` }), address: (p) => `http://127.0.0.1:${p}`, setting: 'SCHEMA_REGISTRY_URL' },
];

for (const u of unreachable) {
  test(`${u.what} not answering at start: retries with backoff naming it and its address, then exit 1 with a clear message`, async () => {
    const port = await closedPort();
    const r = await timed(u.command, { ...ns.env, ...u.env(port), LOGMETER_STARTUP_TIMEOUT: '3', LOGMETER_LOG_LEVEL: 'info' });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const message = r.stderr.trim();
    note(message);
    assert.match(message, new RegExp(`^logmeter: ${u.service} at ${u.address(port).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(${u.setting}\\) did not answer within 3 s \\(\\d+ attempts; last error: .+\\)\\. Check that it runs`));
    const lines = retries(r.stdout, u.service);
    assert.ok(lines.length >= 2, `${lines.length} retry lines`);
    assert.ok(lines.every((l, i) => l.address === u.address(port) && l.attempt === i + 1 && l.msg.includes(`${u.service} at ${u.address(port)} is not answering`)));
    // Exits about when it said it would give up, not at once and not never.
    assert.ok(r.ms >= 3000, `${r.ms} ms`);
    noStack(r);
  });
}

/** Forwards a port to Kafka once opened: the broker "comes up" while the collector waits. */
function forward(port: number, to: { host: string; port: number }): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    const upstream = connect(to);
    sockets.add(c).add(upstream);
    c.pipe(upstream).pipe(c);
    const close = () => {
      c.destroy();
      upstream.destroy();
    };
    c.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  return new Promise((r) => server.listen(port, '127.0.0.1', () => r(server)));
}

test('Kafka that comes up during the wait: the collector goes on and starts; SIGTERM stops it cleanly', async () => {
  const port = await closedPort();
  const [host, kport] = (ns.config.kafka.brokers[0] ?? '127.0.0.1:9092').split(':');
  const p = cliBackground(['collector'], { ...ns.env, KAFKA_BROKERS: `127.0.0.1:${port}`, LOGMETER_STARTUP_TIMEOUT: '120', LOGMETER_LOG_LEVEL: 'info' });
  let proxy: Server | undefined;
  try {
    await p.waitFor(/"attempt":3,/, 60_000);
    proxy = await forward(port, { host: host!, port: Number(kport) });
    await p.waitFor(/Kafka at 127\.0\.0\.1:\d+ answers \(attempt \d+\)/, 60_000);
    await p.waitFor(/"msg":"collector up"/, 120_000);
    p.child.kill('SIGTERM');
    assert.equal(await p.exited, 0);
    noStack({ stdout: p.output(), stderr: '' });
    note(`retry lines before Kafka answered: ${retries(p.output(), 'Kafka').length}`);
  } finally {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    proxy?.close();
  }
});

test('a line limit larger than Kafka takes is refused at start, with the largest value that fits', async () => {
  const r = await timed(['collector'], { ...ns.env, LOGMETER_MAX_LINE_BYTES: String(4 * 1024 * 1024) });
  assert.equal(r.code, 1);
  note(r.stderr.trim());
  assert.equal(
    r.stderr.trim(),
    `logmeter: collector.maxLineBytes (LOGMETER_MAX_LINE_BYTES) is 4194304, but topic ${ns.id}.logs takes messages of at most 1048588 bytes (max.message.bytes): a line that long could never be sent. Set it to at most 1046540, or raise the topic's max.message.bytes.`,
  );
  noStack(r);
});

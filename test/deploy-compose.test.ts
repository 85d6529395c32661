/**
 * docker-compose.yml, validated by Compose itself (`docker compose config`, or Debian's
 * `docker-compose` where the plugin is missing; `logmeter stack up` installs it) and
 * checked against what the code needs: the wiring test/deploy-image.test.ts runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { ROOT } from './helpers/env.js';

function compose(file: string): { status: number | null; stdout: string; stderr: string } {
  const plugin = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' }).status === 0;
  const [cmd, ...args] = plugin ? ['docker', 'compose'] : ['docker-compose'];
  const res = spawnSync(cmd, [...args, '-f', file, 'config'], { encoding: 'utf8', cwd: path.dirname(file) });
  if (res.error) throw res.error;
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

interface BindMount {
  type: string;
  source: string;
  target: string;
}
interface Service {
  image?: string;
  build?: { context: string };
  pid?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: Array<BindMount | string>;
}

const composeFile = path.join(ROOT, 'docker-compose.yml');

test('docker-compose.yml validates, and its logmeter service is wired as the image test runs it', () => {
  const res = compose(composeFile);
  assert.equal(res.status, 0, res.stderr);
  const services = (parse(res.stdout) as { services: Record<string, Service> }).services;
  assert.deepEqual(Object.keys(services).sort(), ['clickhouse', 'kafka', 'logmeter', 'redis']);
  const lm = services.logmeter!;
  assert.equal(path.resolve(lm.build!.context), path.resolve(ROOT));
  assert.deepEqual(lm.command, ['up']);
  assert.equal(lm.pid, 'host');
  const binds = (lm.volumes ?? []).filter((v): v is BindMount => typeof v === 'object' && v.type === 'bind');
  assert.deepEqual(
    binds.map((b) => [b.source, b.target]),
    [
      ['/var/run/docker.sock', '/var/run/docker.sock'],
      ['/var/lib/logmeter', '/var/lib/logmeter'],
    ],
  );
  assert.equal(lm.environment?.DOCKER_HOST, 'unix:///var/run/docker.sock');
  // The data directory is bind-mounted at the path logmeter uses, which is the image's default too.
  assert.equal(lm.environment?.LOGMETER_DATA_DIR, '/var/lib/logmeter');
  assert.match(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'), /ENV LOGMETER_DATA_DIR=\/var\/lib\/logmeter\b/);
  for (const s of ['kafka', 'clickhouse', 'redis']) assert.ok(services[s]!.image, `${s} is a public image`);
});

test('the validator refuses a broken compose file (so the check above can fail)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'logmeter-compose-'));
  try {
    const file = path.join(dir, 'docker-compose.yml');
    writeFileSync(file, readFileSync(composeFile, 'utf8').replace('    pid: host\n', '    pid: host\n    pidd: host\n'));
    const res = compose(file);
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /pidd/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

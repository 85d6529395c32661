/**
 * The Dockerfile the way operators run it: built FROM a Debian base made here with
 * debootstrap (no registry; lib/stack/node-image.ts, cached by a content hash), then
 * `logmeter collector` and `logmeter up` in containers against the host's Kafka, Redis
 * and dockerd, as docker-compose.yml runs them: host network (the test's services
 * listen on 127.0.0.1), `pid: host`, the Docker socket mounted, and the data directory
 * bind-mounted at the same path (the load balancer `up` starts through the host's
 * dockerd bind-mounts `<dataDir>/haproxy` by that path).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LogLine } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { stateDir } from '../lib/stack/common.js';
import { buildAppImage } from '../lib/stack/node-image.js';
import { namespace, eventually, type TestNamespace } from './helpers/env.js';
import { docker, removeTestContainers, runContainer } from './helpers/docker.js';
import { collect } from './helpers/kafka.js';
import { getWithHost } from './helpers/http.js';
import { freePort } from './helpers/routes.js';

const SOCKET = '/var/run/docker.sock';
let image = '';
const started: Docker.Container[] = [];

before(async () => {
  const ns = namespace();
  try {
    const r = await buildAppImage(docker, { stateDir: stateDir(), logger: ns.logger, install: true });
    image = r.ref;
    // Reported, not asserted: the first build time goes into the README.
    ns.logger.warn(`image ${r.ref} FROM ${r.base}: ${r.built ? `built in ${r.seconds.toFixed(0)} s` : 'cached'}`);
  } finally {
    ns.cleanup();
  }
});

after(async () => {
  for (const c of started) await c.remove({ force: true }).catch(() => undefined);
});

/** `logmeter <cmd>` from the image, wired like the compose service. */
async function runLogmeter(ns: TestNamespace, cmd: string[], env: Record<string, string>): Promise<Docker.Container> {
  const c = await docker.createContainer({
    Image: image,
    Cmd: cmd,
    Env: Object.entries({
      KAFKA_BROKERS: ns.config.kafka.brokers.join(','),
      REDIS_URL: ns.config.redis.url,
      DOCKER_HOST: `unix://${SOCKET}`,
      LOGMETER_TOPIC_PREFIX: ns.config.kafka.topicPrefix,
      LOGMETER_DATA_DIR: ns.dataDir,
      CLICKHOUSE_DATABASE: ns.id,
      LOGMETER_HTTP: '127.0.0.1:0',
      LOGMETER_LOG_LEVEL: 'info',
      ...env,
    }).map(([k, v]) => `${k}=${v}`),
    HostConfig: { NetworkMode: 'host', PidMode: 'host', Init: true, Binds: [`${SOCKET}:${SOCKET}`, `${ns.dataDir}:${ns.dataDir}`] },
  });
  started.push(c);
  await c.start();
  return c;
}

async function output(c: Docker.Container): Promise<string> {
  const buf = await c.logs({ stdout: true, stderr: true, tail: 40 });
  return buf.toString('utf8');
}

/** Waits for a log line of the container; the container's output is in the error if it never comes. */
async function waitForLog(c: Docker.Container, re: RegExp, timeoutMs = 90_000): Promise<void> {
  await eventually(`${re}`, async () => (re.test(await output(c)) ? true : undefined), timeoutMs).catch(async (err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await output(c)}`);
  });
}

describe('logmeter collector in a container', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  let bus: ReturnType<typeof busFor>;

  before(async () => {
    bus = busFor(ns.config, await AvroCodec.create(new ManifestSource()), ns.logger);
    await bus.ensureTopics();
  });
  after(async () => {
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  });

  test("a labelled container's numbered lines arrive exactly once, and its interfaces are read through pid: host", async () => {
    const collector = await runLogmeter(ns, ['collector'], { LOGMETER_LABEL_PREFIX: prefix, LOGMETER_STATS_INTERVAL: '1' });
    await waitForLog(collector, /"msg":"collector up"/);
    const c = await runContainer({ prefix, tenant: 'acme', app: 'lines', script: 'i=1; while [ $i -le 500 ]; do echo "n $i"; i=$((i+1)); done; exec sleep 3600' });
    const mine = (e: { container_id: string }) => e.container_id === c.id;
    const text = (e: LogLine) => e.line.toString('utf8');
    const lines = (await collect(bus, 'logs', (evs) => evs.filter(mine).some((e) => text(e) === 'n 500'), 90_000)).filter(mine);
    assert.deepEqual(
      lines.map(text),
      Array.from({ length: 500 }, (_, i) => `n ${i + 1}`),
    );
    assert.ok(lines.every((e) => e.tenant === 'acme' && e.app === 'lines'));
    // The MAC → Docker network mapping reads /proc/<pid>/root/sys/class/net: only with the host's pid namespace.
    const stats = (await collect(bus, 'stats', (evs) => evs.some(mine), 60_000)).filter(mine);
    assert.deepEqual(
      stats[0]!.interfaces.map((i) => i.network),
      ['bridge'],
    );
    await collector.stop({ t: 20 });
    assert.equal((await collector.inspect()).State.ExitCode, 0, await output(collector));
  });
});

describe('logmeter up in a container', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  // Its own tag, so `up` builds the HAProxy image inside the container from the image's
  // /usr/sbin/haproxy and busybox (processors/routes/haproxy.ts) instead of reusing the host's.
  const lbImage = `logmeter/haproxy:${ns.id}`;

  after(async () => {
    await removeTestContainers(prefix);
    await docker
      .getImage(lbImage)
      .remove({ force: true })
      .catch(() => undefined);
    ns.cleanup();
  });

  test('a route goes live through the HAProxy it starts', async () => {
    const lbPort = await freePort();
    const configFile = path.join(ns.dataDir, 'logmeter.json');
    writeFileSync(configFile, JSON.stringify({ routes: { lb: { image: lbImage, backendSlots: 8 } } }));
    const up = await runLogmeter(ns, ['up'], { LOGMETER_LABEL_PREFIX: prefix, LOGMETER_LB_BIND: `127.0.0.1:${lbPort}`, LOGMETER_CONFIG: configFile });
    await waitForLog(up, /"msg":"logmeter up"/, 150_000);
    const host = `web.${ns.id}.test`;
    const app = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', 'hostname > /www/index.html && exec httpd -f -p 80 -h /www'],
      Labels: { 'logmeter.test': 'true', [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'web', [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    });
    await app.start();
    const answer = await eventually(
      'the route through HAProxy',
      async () => {
        const r = await getWithHost({ port: lbPort, host, timeoutMs: 2000 }).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      },
      90_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await output(up)}`);
    });
    assert.equal(answer.body.trim(), app.id.slice(0, 12));
    const lb = await docker.listContainers({ filters: JSON.stringify({ label: [`${prefix}app=lb`] }) });
    assert.deepEqual(
      lb.map((c) => c.Image),
      [lbImage],
    );
    await up.stop({ t: 30 });
    assert.equal((await up.inspect()).State.ExitCode, 0, await output(up));
  });
});

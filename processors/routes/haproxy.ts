/**
 * The load balancer: Debian's HAProxy 2.6 in a container built with `docker import`
 * from /usr/sbin/haproxy and its libraries, on the host network (it reaches the ports
 * containers publish on 127.0.0.1 and listens on `lb.bind`), logging its HTTP log to
 * stdout so the collector picks it up like any tenant container (tenant `platform`,
 * app `lb`, log format `haproxy`): the queue figures in the autoscale signals come
 * from the real load balancer.
 *
 * The config (haproxy-config.ts) routes by Host header through a map to a pool of
 * backend slots that the applier fills at run time, so no route ever needs a reload. The
 * map file on disk stays empty: after a restart HAProxy starts with no routes and the
 * applier, which notices the restart, puts them all back.
 */
import { copyFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from '../../lib/logger.js';
import type { Docker } from '../../lib/docker.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import { run } from '../../lib/command.js';
import { hasImage, importRootfs, installBusybox, sharedLibraries } from '../../lib/docker-image.js';
import { haproxyConfig } from './haproxy-config.js';
import { HaproxyRuntimeApi } from './runtime-api.js';

export const HAPROXY_IMAGE = 'logmeter/haproxy:1';
const HAPROXY_BIN = '/usr/sbin/haproxy';
const BUSYBOX = '/bin/busybox';

/**
 * Builds `ref` with `docker import`: /usr/sbin/haproxy with every library `ldd` names
 * (at the same absolute paths), plus busybox (a shell for debugging). No registry is
 * reachable here, so this is the only way to get an HAProxy image.
 */
export async function buildHaproxyImage(docker: Docker, ref: string = HAPROXY_IMAGE): Promise<void> {
  for (const f of [HAPROXY_BIN, BUSYBOX]) if (!existsSync(f)) throw new LogmeterError('missing_packages', `${f} not found (Debian packages haproxy and busybox-static; \`logmeter stack up\` installs them)`);
  const root = mkdtempSync(path.join(tmpdir(), 'logmeter-haproxy-'));
  try {
    for (const d of ['bin', 'usr/sbin', 'etc/haproxy', 'run/haproxy', 'var/lib/haproxy', 'root', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(path.join(root, d), { recursive: true });
    chmodSync(path.join(root, 'tmp'), 0o1777);
    installBusybox(root, BUSYBOX);
    symlinkSync('bin', path.join(root, 'sbin'));
    symlinkSync('../bin', path.join(root, 'usr', 'bin'));
    copyFileSync(HAPROXY_BIN, path.join(root, 'usr', 'sbin', 'haproxy'));
    chmodSync(path.join(root, 'usr', 'sbin', 'haproxy'), 0o755);
    for (const lib of sharedLibraries(HAPROXY_BIN)) {
      mkdirSync(path.join(root, path.dirname(lib)), { recursive: true });
      copyFileSync(lib, path.join(root, lib)); // copyFileSync follows symlinks, like cp -L
    }
    writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nhaproxy:x:100:101::/var/lib/haproxy:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nhaproxy:x:101:\nnogroup:x:65534:\n');
    writeFileSync(path.join(root, 'etc', 'nsswitch.conf'), 'hosts: files dns\n');
    // Only used when the image runs without arguments; logmeter always passes its own config.
    writeFileSync(
      path.join(root, 'etc', 'haproxy', 'haproxy.cfg'),
      'global\n  log stdout format raw local0\ndefaults\n  log global\n  mode http\n  option httplog\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:8080\n  http-request return status 200 content-type text/plain string "haproxy ok\\n"\n',
    );
    const version = /version (\S+)/.exec(run(HAPROXY_BIN, ['-v']))?.[1] ?? 'unknown';
    await importRootfs(docker, root, ref, ['ENV PATH=/usr/sbin:/bin:/sbin:/usr/bin', 'ENTRYPOINT ["/usr/sbin/haproxy"]', 'CMD ["-db", "-f", "/etc/haproxy/haproxy.cfg"]', `LABEL logmeter.haproxy-version=${version}`]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export interface LoadBalancerOptions {
  docker: Docker;
  /** HAProxy's files go to `<dataDir>/haproxy` (config, map, admin socket), bind-mounted at the same path. */
  dataDir: string;
  /** `host:port` of the HTTP frontend (`LOGMETER_LB_BIND`, default 127.0.0.1:8080). */
  bind: string;
  /** Label prefix the collector reads (the container is tenant `platform`, app `lb`, log format `haproxy`). */
  labelPrefix: string;
  logger: Logger;
  /** Image to run. Default `logmeter/haproxy:1`, built with `buildHaproxyImage` when missing. */
  image?: string;
  /** Backends handed to app hosts at run time (the most hosts routed at once). Default 128. */
  backendSlots?: number;
  /** HAProxy `timeout connect`. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** HAProxy `timeout client` / `timeout server`. Default 30000 ms. */
  idleTimeoutMs?: number;
  /** HAProxy `retries` (a retry is redispatched to another server). Default 2. */
  retries?: number;
  /** Longest wait for the admin socket to answer after start. Default 15000 ms. */
  startTimeoutMs?: number;
}

export interface LoadBalancer {
  adminSocket: string;
  mapFile: string;
  configFile: string;
  bind: string;
  containerId: string;
  /** Restarts the HAProxy container (it comes back with no routes; the applier restores them). */
  restart(): Promise<void>;
  /** Stops and removes the container. */
  close(): Promise<void>;
}

/** Writes the config and starts HAProxy in its container; resolves when the admin socket answers. */
export async function startLoadBalancer(o: LoadBalancerOptions): Promise<LoadBalancer> {
  const log = o.logger.child({ component: 'load-balancer' });
  const dir = path.resolve(o.dataDir, 'haproxy');
  mkdirSync(dir, { recursive: true });
  const adminSocket = path.join(dir, 'admin.sock');
  const mapFile = path.join(dir, 'hosts.map');
  const configFile = path.join(dir, 'haproxy.cfg');
  writeFileSync(mapFile, '# host → backend slot; filled at run time by the route applier (add map), empty at every start\n');
  writeFileSync(
    configFile,
    haproxyConfig({
      bind: o.bind,
      adminSocket,
      mapFile,
      backendSlots: o.backendSlots ?? 128,
      connectTimeoutMs: o.connectTimeoutMs ?? 2000,
      idleTimeoutMs: o.idleTimeoutMs ?? 30_000,
      retries: o.retries ?? 2,
    }),
  );
  const image = o.image ?? HAPROXY_IMAGE;
  if (!(await hasImage(o.docker, image))) {
    log.info({ image }, 'building the HAProxy image from the Debian binary');
    await buildHaproxyImage(o.docker, image);
  }
  // One container per data directory: a leftover from a crashed run is replaced.
  const name = loadBalancerName(o.dataDir);
  await o.docker
    .getContainer(name)
    .remove({ force: true })
    .catch(() => undefined);
  rmSync(adminSocket, { force: true });
  const container = await o.docker.createContainer({
    name,
    Image: image,
    Cmd: ['-db', '-f', configFile],
    Labels: { [`${o.labelPrefix}tenant`]: 'platform', [`${o.labelPrefix}app`]: 'lb', [`${o.labelPrefix}log-format`]: 'haproxy' },
    // SIGUSR1 is HAProxy's soft stop (in-flight requests finish, bounded by hard-stop-after).
    StopSignal: 'SIGUSR1',
    HostConfig: {
      NetworkMode: 'host',
      Init: true,
      Binds: [`${dir}:${dir}`],
      RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 },
    },
  });
  const api = new HaproxyRuntimeApi(adminSocket, { timeoutMs: 1000 });
  const ready = async () => {
    const end = Date.now() + (o.startTimeoutMs ?? 15_000);
    for (;;) {
      try {
        await api.identity();
        return;
      } catch (err) {
        const state = await container.inspect().then((i) => i.State, () => undefined);
        if (state && !state.Running && !state.Restarting) throw new LogmeterError('haproxy_start_failed', `HAProxy exited (${state.ExitCode}): ${await containerLogs(container)}`);
        if (Date.now() > end) throw new LogmeterError('haproxy_start_failed', `HAProxy's admin socket did not answer: ${errorMessage(err)}; logs: ${await containerLogs(container)}`, { retriable: true });
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  try {
    await container.start();
    await ready();
  } catch (err) {
    await container.remove({ force: true }).catch(() => undefined);
    throw err;
  } finally {
    api.close();
  }
  log.info({ container: name, bind: o.bind, adminSocket, slots: o.backendSlots ?? 128 }, 'HAProxy started');
  return {
    adminSocket,
    mapFile,
    configFile,
    bind: o.bind,
    containerId: container.id,
    async restart() {
      log.info({ container: name }, 'restarting HAProxy');
      rmSync(adminSocket, { force: true });
      await container.restart({ t: 2 });
      try {
        await ready();
      } finally {
        api.close();
      }
    },
    async close() {
      await container.stop({ t: 5 }).catch(() => undefined);
      await container.remove({ force: true }).catch(() => undefined);
      log.info({ container: name }, 'HAProxy stopped');
    },
  };
}

async function containerLogs(c: Docker.Container): Promise<string> {
  try {
    const buf = await c.logs({ stdout: true, stderr: true, tail: 20 });
    // Multiplexed frames: 8-byte headers between the payloads.
    const out: string[] = [];
    for (let i = 0; i + 8 <= buf.length; ) {
      const len = buf.readUInt32BE(i + 4);
      out.push(buf.subarray(i + 8, i + 8 + len).toString('utf8'));
      i += 8 + len;
    }
    return out.join('').trim().slice(-2000);
  } catch (err) {
    return `(logs unavailable: ${errorMessage(err)})`;
  }
}

/** The container of the load balancer whose files are under `<dataDir>/haproxy` (one per data directory). */
export function loadBalancerName(dataDir: string): string {
  return `logmeter-lb-${createHash('sha256').update(path.resolve(dataDir, 'haproxy')).digest('hex').slice(0, 10)}`;
}

/** Removes that container if it is there (a load balancer whose owner ended without closing it); true if one was. */
export async function removeLoadBalancer(docker: Docker, dataDir: string): Promise<boolean> {
  try {
    await docker.getContainer(loadBalancerName(dataDir)).remove({ force: true });
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

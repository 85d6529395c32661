/**
 * The fault suite's private services: its own Kafka, Redis and dockerd, started and
 * stopped through lib/stack under their own state directory, on ports and a socket no
 * one else uses. The faults kill and restart these; the shared ones are never touched.
 *
 * The private dockerd has its own bridge (`lmfaults0`, created here): dockerd started
 * with `--bridge=none` deletes the host's `docker0`, which belongs to the shared daemon.
 * It does not touch iptables, and keeps containers running across its own restart
 * (`--live-restore`), as a production node would.
 */
import { existsSync, readFileSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { dockerClient, type Docker } from '../../lib/docker.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { kafkaService, kafkaVersion } from '../../lib/stack/kafka.js';
import { redisService } from '../../lib/stack/redis.js';
import { dockerService } from '../../lib/stack/docker.js';
import { pidAlive, readPid, run, sleep, stateDir, tcpOpen, type StackContext } from '../../lib/stack/common.js';
import type { StackService } from '../../lib/stack/service.js';

/** Root of everything the suite keeps: services' state, scenario data, results. */
export const FAULTS_DIR = path.resolve(process.env.LOGMETER_FAULTS_DIR ?? '/tmp/logmeter-faults');
const BRIDGE = 'lmfaults0';
const BRIDGE_ADDR = '10.213.77.1/24';

/** Where the private services answer; passed from the runner to the test files in LOGMETER_FAULTS_SERVICES. */
export interface ServiceAddresses {
  kafka: string;
  redis: string;
  docker: string;
}

export interface Services {
  addresses: ServiceAddresses;
  kafka: string;
  redis: string;
  dockerHost: string;
  ctx: StackContext;
  kafkaService: StackService;
  redisService: StackService;
  dockerService: StackService;
  docker: Docker;
  /** Pid of the private Kafka broker (for SIGKILL). */
  kafkaPid(): number | undefined;
}

const DOCKERD_ARGS = [`--bridge=${BRIDGE}`, '--iptables=false', '--ip6tables=false', '--ip-masq=false', '--live-restore', '--cgroup-parent=logmeter-faults'];

export function services(addr: ServiceAddresses, logger: Logger = createLogger('warn', 2)): Services {
  const ctx: StackContext = { stateDir: path.join(FAULTS_DIR, 'stack'), logger, install: true };
  return {
    addresses: addr,
    kafka: addr.kafka,
    redis: addr.redis,
    dockerHost: addr.docker,
    ctx,
    kafkaService: kafkaService(addr.kafka),
    redisService: redisService(addr.redis),
    dockerService: dockerService(addr.docker, { daemonArgs: DOCKERD_ARGS }),
    docker: dockerClient(addr.docker),
    kafkaPid: () => readPid(path.join(ctx.stateDir, 'kafka', 'kafka.pid')),
  };
}

/** A port nothing listens on (and, with `pair`, the one after it too: the Kafka controller's). */
export async function freePort(pair = false): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    if (!pair) return port;
    if (port < 65000 && (await portFree(port + 1))) return port;
  }
  throw new Error('no free port pair found');
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function bridgeExists(): boolean {
  return spawnSync('ip', ['link', 'show', BRIDGE], { stdio: 'ignore' }).status === 0;
}

/** Mount points under `dir` (dockerd bind-mounts its data root onto itself), deepest first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Starts the private Kafka, Redis and dockerd; a previous run's leftovers are stopped first. */
export async function startServices(logger: Logger = createLogger('info', 2)): Promise<Services> {
  const svc = services({ kafka: `127.0.0.1:${await freePort(true)}`, redis: `redis://127.0.0.1:${await freePort()}`, docker: `unix://${path.join(FAULTS_DIR, 'docker.sock')}` }, logger);
  await stopLeftovers(svc.ctx);
  // Kafka and Redis start empty every run; the dockerd data root is kept (its base image).
  rmSync(path.join(svc.ctx.stateDir, 'kafka'), { recursive: true, force: true });
  rmSync(path.join(svc.ctx.stateDir, 'redis'), { recursive: true, force: true });
  rmSync(path.join(FAULTS_DIR, 'runs'), { recursive: true, force: true });
  // The Kafka jars `logmeter stack up` already fetched for this checkout are reused.
  const libs = `libs-${kafkaVersion()}`;
  const shared = path.join(stateDir(), 'kafka', libs);
  mkdirSync(path.join(svc.ctx.stateDir, 'kafka'), { recursive: true });
  if (existsSync(shared)) symlinkSync(shared, path.join(svc.ctx.stateDir, 'kafka', libs));
  if (!bridgeExists()) {
    run('ip', ['link', 'add', 'name', BRIDGE, 'type', 'bridge']);
    run('ip', ['addr', 'add', BRIDGE_ADDR, 'dev', BRIDGE]);
    run('ip', ['link', 'set', BRIDGE, 'up']);
  }
  try {
    await svc.dockerService.up(svc.ctx);
    await svc.redisService.up(svc.ctx);
    await svc.kafkaService.up(svc.ctx);
  } catch (err) {
    // What did start is stopped again: a failed start leaves nothing running.
    await stopServices(svc);
    throw err;
  }
  return svc;
}

/** Stops what a run that died left behind (pid files under our state directory only). */
async function stopLeftovers(ctx: StackContext): Promise<void> {
  const dockerPid = readPid(path.join(ctx.stateDir, 'docker', 'dockerd.pid'));
  if (pidAlive(dockerPid)) {
    const leftover = services({ kafka: '127.0.0.1:1', redis: 'redis://127.0.0.1:1', docker: `unix://${path.join(FAULTS_DIR, 'docker.sock')}` }, ctx.logger);
    await removeAllContainers(leftover.docker);
    await leftover.dockerService.down(ctx);
  }
  for (const m of mountsUnder(path.join(ctx.stateDir, 'docker'))) spawnSync('umount', [m], { stdio: 'ignore' });
  for (const [dir, file] of [['kafka', 'kafka.pid'], ['redis', 'redis.pid']] as const) {
    const pid = readPid(path.join(ctx.stateDir, dir, file));
    if (pid && pidAlive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(ctx.stateDir)) {
      process.kill(pid, 'SIGKILL');
      while (pidAlive(pid)) await sleep(100);
    }
  }
  // Mount points a scenario left read-only.
  for (const m of mountsUnder(path.join(FAULTS_DIR, 'runs'))) spawnSync('umount', [m], { stdio: 'ignore' });
}

export async function removeAllContainers(docker: Docker): Promise<void> {
  try {
    for (const c of await docker.listContainers({ all: true })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  } catch {
    /* daemon gone already */
  }
}

export async function stopServices(svc: Services): Promise<void> {
  await removeAllContainers(svc.docker);
  await svc.kafkaService.down(svc.ctx).catch(() => undefined);
  await svc.redisService.down(svc.ctx).catch(() => undefined);
  await svc.dockerService.down(svc.ctx).catch(() => undefined);
  for (const m of mountsUnder(path.join(svc.ctx.stateDir, 'docker'))) spawnSync('umount', [m], { stdio: 'ignore' });
  if (bridgeExists()) spawnSync('ip', ['link', 'del', BRIDGE], { stdio: 'ignore' });
}

/** The services the runner started (LOGMETER_FAULTS_SERVICES), or undefined when a file runs alone. */
export function servicesFromEnv(): Services | undefined {
  const s = process.env.LOGMETER_FAULTS_SERVICES;
  return s ? services(JSON.parse(s) as ServiceAddresses) : undefined;
}

/** SIGKILL the private Redis and wait until it is gone. */
export async function killRedis(svc: Services): Promise<number> {
  const pid = readPid(path.join(svc.ctx.stateDir, 'redis', 'redis.pid'));
  if (!pid || !pidAlive(pid)) throw new Error('the private Redis is not running');
  process.kill(pid, 'SIGKILL');
  while (pidAlive(pid)) await sleep(50);
  return pid;
}

/** SIGKILL the private broker and wait until it is gone. */
export async function killKafka(svc: Services): Promise<number> {
  const pid = svc.kafkaPid();
  if (!pid || !pidAlive(pid)) throw new Error('the private Kafka broker is not running');
  process.kill(pid, 'SIGKILL');
  while (pidAlive(pid)) await sleep(50);
  return pid;
}

/**
 * Stops the private broker (`kill`: SIGKILL, an unclean stop with log recovery at the
 * next start; `stop`: SIGTERM, a controlled shutdown) and starts it again; the
 * milliseconds it was away.
 */
export async function restartKafka(svc: Services, how: 'kill' | 'stop'): Promise<{ awayMs: number; startAttempts: number }> {
  const t0 = Date.now();
  if (how === 'kill') await killKafka(svc);
  else await svc.kafkaService.down(svc.ctx);
  // The next start must not find the old listener (it would be taken as already running).
  const [host, port] = svc.kafka.split(':') as [string, string];
  while (await tcpOpen(host, Number(port), 200)) await sleep(50);
  for (let attempt = 1; ; attempt++) {
    try {
      await svc.kafkaService.up(svc.ctx);
      return { awayMs: Date.now() - t0, startAttempts: attempt };
    } catch (err) {
      // A JVM that exits at once (its data directory still locked by the old one) is started again.
      if (attempt >= 3) throw err;
      await sleep(1000);
    }
  }
}

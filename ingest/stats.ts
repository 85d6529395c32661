/**
 * Stats sampling: one Docker stats reading per container becomes a `StatsSample`, with each
 * network interface tied to its Docker network (by MAC address) and so classed internal or
 * external. Counters are passed on as Docker reports them (cumulative since the interface or
 * cgroup was created); deltas and restarts are the usage processor's job.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { Docker } from '../lib/docker.js';
import type { CollectorConfig } from './config.js';
import { eventId } from '../lib/event-id.js';
import { type Identity } from '../lib/identity.js';
import type { InterfaceCounters, StatsSample, TrafficClass } from '../schemas/events.js';

/** The collector settings that decide a network's traffic class. */
export type TrafficClasses = Pick<CollectorConfig, 'internalNetworks' | 'externalNetworks' | 'defaultTrafficClass'>;

/** One interface's counters in `GET /containers/{id}/stats`. */
export interface DockerInterfaceStats {
  rx_bytes?: number;
  tx_bytes?: number;
  rx_packets?: number;
  tx_packets?: number;
}

/**
 * The part of `GET /containers/{id}/stats` we read. Every field but `read` may be missing or
 * null: a container that is not running gets zeros, `{}` and null arrays.
 */
export interface DockerStats {
  /** RFC 3339 time with nanoseconds; `0001-01-01T00:00:00Z` for a container that is not running. */
  read: string;
  networks?: Record<string, DockerInterfaceStats> | null;
  cpu_stats?: { cpu_usage?: { total_usage?: number } | null } | null;
  memory_stats?: { usage?: number; limit?: number } | null;
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op: string; value: number }> | null } | null;
}

/** `NetworkSettings.Networks` of `inspect`: network name → endpoint. */
export type DockerEndpoints = Record<string, { MacAddress?: string } | null | undefined>;

/**
 * The traffic class of a Docker network: `internal` when it is listed in `internalNetworks`,
 * else `external` when listed in `externalNetworks`, else `defaultTrafficClass`. An interface
 * whose network is not known (null) is `unknown`, whatever the default: billing it on a guess
 * would be wrong either way, and `unknown` shows up in reports.
 */
export function classify(network: string | null, cfg: TrafficClasses): TrafficClass {
  if (network === null) return 'unknown';
  if (cfg.internalNetworks.includes(network)) return 'internal';
  if (cfg.externalNetworks.includes(network)) return 'external';
  return cfg.defaultTrafficClass;
}

/**
 * Interface name → MAC address (lower case) inside a container's network namespace, `lo` left
 * out. Read from the host through `/proc/<pid>/root/sys/class/net/<if>/address`: the container's
 * own sysfs shows its namespace's interfaces (including ones connected after start), and
 * nothing has to exist in the container image. Needs root (or CAP_SYS_PTRACE) and host pids:
 * a collector running in a container needs `--pid=host`.
 *
 * @param pid the container's init process as seen by the host (`State.Pid` of `inspect`).
 * @throws ENOENT when the process is gone (the container stopped).
 */
export async function readInterfaceMacs(pid: number): Promise<Record<string, string>> {
  const dir = `/proc/${pid}/root/sys/class/net`;
  const names = await readdir(dir);
  const macs: Record<string, string> = {};
  await Promise.all(
    names
      .filter((n) => n !== 'lo')
      .map(async (n) => {
        try {
          const mac = (await readFile(`${dir}/${n}/address`, 'utf8')).trim().toLowerCase();
          if (mac !== '') macs[n] = mac;
        } catch (err) {
          // An interface removed between readdir and read (network disconnect) is simply gone.
          if (errorCode(err) !== 'ENOENT') throw err;
        }
      }),
  );
  return macs;
}

/** The Docker network whose endpoint has this MAC address, or null. */
function networkForMac(mac: string | undefined, networks: DockerEndpoints): string | null {
  if (!mac) return null;
  const want = mac.toLowerCase();
  for (const [name, ep] of Object.entries(networks)) {
    if (ep?.MacAddress && ep.MacAddress.toLowerCase() === want) return name;
  }
  return null;
}

function num(v: number | null | undefined): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** What `toStatsSample` turns into a `StatsSample`. */
export interface StatsInput {
  containerId: string;
  /** Without Docker's leading `/`. */
  containerName: string;
  identity: Identity;
  node: string;
  stats: DockerStats;
  /** Interface name → MAC, from `readInterfaceMacs`. */
  macs: Record<string, string>;
  /** `NetworkSettings.Networks` of `inspect`. */
  networks: DockerEndpoints;
  classes: TrafficClasses;
}

/**
 * A Docker stats reading as a `StatsSample` (pure). `ts` is the reading's time and the event id
 * derives from (container, read time), so a replayed reading keeps its id. `memory_bytes` is
 * the cgroup's `usage` as reported (page cache included on cgroup v1). Block IO sums every
 * device's `Read`/`Write` bytes (cgroup v1 capitalises the op, v2 does not). Missing fields
 * count as 0.
 */
export function toStatsSample(input: StatsInput): StatsSample {
  const { stats, identity } = input;
  const parsed = Date.parse(stats.read);
  const interfaces: InterfaceCounters[] = Object.entries(stats.networks ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, c]) => {
      const network = networkForMac(input.macs[name], input.networks);
      return {
        name,
        network,
        traffic_class: classify(network, input.classes),
        rx_bytes: num(c.rx_bytes),
        tx_bytes: num(c.tx_bytes),
        rx_packets: num(c.rx_packets),
        tx_packets: num(c.tx_packets),
      };
    });
  let blkioRead = 0;
  let blkioWrite = 0;
  for (const e of stats.blkio_stats?.io_service_bytes_recursive ?? []) {
    const op = e.op.toLowerCase();
    if (op === 'read') blkioRead += num(e.value);
    else if (op === 'write') blkioWrite += num(e.value);
  }
  return {
    event_id: eventId('stats', input.containerId, stats.read),
    tenant: identity.tenant,
    app: identity.app,
    node: input.node,
    container_id: input.containerId,
    ts: Number.isFinite(parsed) ? parsed : 0,
    container_name: input.containerName,
    size: identity.size,
    interfaces,
    cpu_usage_ns: num(stats.cpu_stats?.cpu_usage?.total_usage),
    memory_bytes: num(stats.memory_stats?.usage),
    memory_limit_bytes: num(stats.memory_stats?.limit),
    blkio_read_bytes: blkioRead,
    blkio_write_bytes: blkioWrite,
  };
}

/** What `sampleContainer` needs besides the container. */
export interface SampleContext {
  identity: Identity;
  node: string;
  classes: TrafficClasses;
  /** Interface MACs per container id; see `MacCache`. */
  macCache?: MacCache;
  /** Aborts the sample's Docker calls (the collector's deadline, docker-calls.ts). */
  abortSignal?: AbortSignal;
}

/**
 * Interface MACs per container id, so the host's /proc is read once per container rather than
 * once per sample. The caller deletes a container's entry on network connect/disconnect. The
 * pid is kept because a restarted container may number its interfaces differently with the
 * same MACs (`docker restart` of a container on two networks swaps eth0 and eth1), which no
 * check against `inspect` would notice; an entry is also read again when an interface's MAC
 * matches no network in `inspect`.
 */
export type MacCache = Map<string, { pid: number; macs: Record<string, string> }>;

/**
 * One stats sample of a running container, or undefined when it is not running (or is gone).
 *
 * Uses one-shot stats (API ≥ 1.41). dockerd 20.10 still answers from its stats collector,
 * which wakes at once when idle and then ticks every second: measured here, a call takes a
 * few ms when no stats were asked for in the last second and up to 1 s otherwise (without
 * `one-shot` it waits one more tick to fill `precpu_stats`: 1–2 s). Concurrent calls share a
 * tick (8 at once: 1 s in all), so sample containers concurrently, not one after another.
 */
export async function sampleContainer(docker: Docker, containerId: string, ctx: SampleContext): Promise<StatsSample | undefined> {
  const container = docker.getContainer(containerId);
  const abortSignal = ctx.abortSignal;
  const info = await ifExists(container.inspect(abortSignal ? { abortSignal } : {}));
  if (!info?.State.Running || !info.State.Pid) {
    ctx.macCache?.delete(containerId);
    return undefined;
  }
  const pid = info.State.Pid;
  const networks: DockerEndpoints = info.NetworkSettings.Networks ?? {};
  const entry = ctx.macCache?.get(containerId);
  const cached = entry?.pid === pid ? entry.macs : undefined;
  const [stats, firstMacs] = await Promise.all([
    ifExists<DockerStats>(container.stats({ stream: false, 'one-shot': true, ...(abortSignal ? { abortSignal } : {}) })),
    cached ? Promise.resolve(cached) : ifProcessExists(readInterfaceMacs(pid)),
  ]);
  // The zero `read` time is how the daemon answers for a container that stopped meanwhile.
  if (!stats || !firstMacs || !(Date.parse(stats.read) > 0)) {
    ctx.macCache?.delete(containerId);
    return undefined;
  }
  let macs = firstMacs;
  const unmapped = Object.keys(stats.networks ?? {}).some((n) => networkForMac(macs[n], networks) === null);
  if (cached && unmapped) {
    const fresh = await ifProcessExists(readInterfaceMacs(pid));
    if (!fresh) {
      ctx.macCache?.delete(containerId);
      return undefined;
    }
    macs = fresh;
  }
  ctx.macCache?.set(containerId, { pid, macs });
  return toStatsSample({
    containerId: info.Id,
    containerName: info.Name.replace(/^\//, ''),
    identity: ctx.identity,
    node: ctx.node,
    stats,
    macs,
    networks,
    classes: ctx.classes,
  });
}

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
}

/** The result, or undefined when Docker answers 404 (the container was removed). */
async function ifExists<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'statusCode' in err && err.statusCode === 404) return undefined;
    throw err;
  }
}

/** The result, or undefined when the container's process has exited (its /proc entry is gone). */
async function ifProcessExists<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ESRCH') return undefined;
    throw err;
  }
}

/**
 * Stats rounds one at a time: a round starts `intervalMs` after the previous one started,
 * or as soon as it ended when it took longer. Rounds must not overlap: Docker answers
 * concurrent stats calls for a container from one reading, so two rounds running at once
 * would send the same sample (same read time, same event id) twice.
 */
export class StatsRounds {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  /** @param round one round; it handles its own errors (a rejection ends the round, the next one still comes). */
  constructor(
    private readonly round: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(this.intervalMs);
  }

  /** No round starts after this; resolves when the one under way (if any) ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.run(), ms);
  }

  private run(): void {
    this.timer = undefined;
    const started = Date.now();
    const done = () => {
      this.running = undefined;
      if (!this.stopped) this.schedule(Math.max(0, this.intervalMs - (Date.now() - started)));
    };
    this.running = this.round().then(done, done);
  }
}

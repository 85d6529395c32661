/**
 * Several Docker engines on this machine, as the nodes of one cloud: each a private
 * `dockerd` (its own data root, exec root, pid file and socket under
 * <layout dir>/<node>, started and stopped through lib/stack/docker.ts as the fault
 * suite's is) on its own bridge (`<bridge prefix>1`, `2`, …, created here with a subnet
 * of its own; dockerd's `--bip` cannot be combined with `--bridge`, so the bridge's
 * address is its subnet), without iptables, in its own cgroup parent. The base
 * image is the shared daemon's, saved once into a tarball under the state directory
 * (named by the image id, so a rebuilt image is saved again) and loaded into each.
 *
 * The shared dockerd is only read from (`docker save`). `stopNodes` removes every
 * container of the nodes, stops their daemons, unmounts and deletes their directories
 * and bridges; `startNodes` does the same to a previous run's leftovers first, and
 * stops what it started if a later node fails to start. One run at a time per layout:
 * the directories and bridges have fixed names. Each test file that starts nodes has a
 * layout of its own ({@link NodesLayout}), so two such files never touch each other's.
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import { BASE_IMAGE, dockerClient, type Docker } from '../../lib/docker.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { dockerService } from '../../lib/stack/docker.js';
import { pidAlive, readPid, run, stateDir, type StackContext } from '../../lib/stack/common.js';
import type { StackService } from '../../lib/stack/service.js';
import { mountsUnder, removeAllContainers } from '../faults/services.js';
import { loadConfig, type Config } from '../../app/config.js';
import type { EventBus } from '../../lib/bus/bus.js';
import type { AvroCodec } from '../../schemas/codec.js';
import { createRegistry } from '../../lib/metrics.js';
import { collectorConfigSchema } from '../../ingest/config.js';
import { createCollector, type Collector } from '../../ingest/collector.js';

/** Where a test file's engines live: its own directory, bridges and subnets. */
export interface NodesLayout {
  /** Parent of the nodes' directories. */
  dir: string;
  /** Bridges `<bridgePrefix>1`, `<bridgePrefix>2`, … (at most 15 characters in all). */
  bridgePrefix: string;
  /** Third octet of the first node's subnet, 10.213.<octet>.0/24; the next nodes count up. */
  firstSubnet: number;
}

/** test/multi-node.test.ts: bridges lmnode1…lmnode3 on 10.213.81–83.0/24 (the fault suite's lmfaults0 is 10.213.77.0/24). */
export const MULTI_NODE_LAYOUT: NodesLayout = { dir: '/tmp/logmeter-nodes', bridgePrefix: 'lmnode', firstSubnet: 81 };
/** test/scaler-nodes.test.ts: bridges lmplace1…lmplace3 on 10.213.86–88.0/24. */
export const PLACEMENT_LAYOUT: NodesLayout = { dir: '/tmp/logmeter-place-nodes', bridgePrefix: 'lmplace', firstSubnet: 86 };
/** At most this many nodes per layout. */
export const MAX_NODES = 3;

export interface DockerNode {
  /** The node's name (what its collector's LOGMETER_NODE is). */
  name: string;
  /** DOCKER_HOST of its engine: `unix:///tmp/logmeter-nodes/<name>/docker.sock`. */
  host: string;
  docker: Docker;
  bridge: string;
  /** The bridge's address and subnet, e.g. `10.213.81.1/24`. */
  subnet: string;
  dir: string;
  service: StackService;
  ctx: StackContext;
}

function bridgeExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', name], { stdio: 'ignore' }).status === 0;
}

function nodeSpec(name: string, index: number, logger: Logger, layout: NodesLayout): DockerNode {
  const dir = path.join(layout.dir, name);
  const host = `unix://${path.join(dir, 'docker.sock')}`;
  const bridge = `${layout.bridgePrefix}${index + 1}`;
  const subnet = `10.213.${layout.firstSubnet + index}.1/24`;
  const args = [`--bridge=${bridge}`, '--iptables=false', '--ip6tables=false', '--ip-masq=false', `--cgroup-parent=${path.basename(layout.dir)}-${name}`];
  return {
    name,
    host,
    docker: dockerClient(host),
    bridge,
    subnet,
    dir,
    service: dockerService(host, { daemonArgs: args, provisionImage: loadBaseImage }),
    ctx: { stateDir: dir, logger, install: false },
  };
}

/** Saves the shared daemon's base image once (per image id) and loads it into `target`. */
async function loadBaseImage(target: Docker): Promise<void> {
  const shared = dockerClient(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
  const id = (await shared.getImage(BASE_IMAGE).inspect()).Id.replace(/^sha256:/, '').slice(0, 16);
  const cacheDir = path.join(stateDir(), 'nodes');
  const tarball = path.join(cacheDir, `base-${id}.tar`);
  if (!existsSync(tarball)) {
    mkdirSync(cacheDir, { recursive: true });
    const partial = `${tarball}.${process.pid}.part`;
    await pipeline(await shared.getImage(BASE_IMAGE).get(), createWriteStream(partial));
    renameSync(partial, tarball);
  }
  const res = await target.loadImage(createReadStream(tarball), { quiet: true });
  let out = '';
  for await (const chunk of res as AsyncIterable<Buffer>) out += chunk.toString();
  if (/"error/.test(out)) throw new Error(`docker load of ${tarball}: ${out}`);
  await target.getImage(BASE_IMAGE).inspect();
}

/** Removes a node's containers, stops its daemon (only ours: the pid file under its directory), deletes its directory and bridge. */
async function cleanNode(n: DockerNode): Promise<void> {
  const pid = readPid(path.join(n.dir, 'docker', 'dockerd.pid'));
  if (pidAlive(pid)) {
    await removeAllContainers(n.docker);
    await n.service.down(n.ctx).catch(() => undefined);
  }
  for (const m of mountsUnder(n.dir)) spawnSync('umount', [m], { stdio: 'ignore' });
  rmSync(n.dir, { recursive: true, force: true });
  if (bridgeExists(n.bridge)) spawnSync('ip', ['link', 'del', n.bridge], { stdio: 'ignore' });
}

/** Starts one engine per name (at most MAX_NODES) in `layout`, each with the base image; a previous run's leftovers are removed first. */
export async function startNodes(names: readonly string[], logger: Logger = createLogger('warn', 2), layout: NodesLayout = MULTI_NODE_LAYOUT): Promise<DockerNode[]> {
  if (names.length > MAX_NODES) throw new Error(`at most ${MAX_NODES} nodes`);
  const nodes = names.map((name, i) => nodeSpec(name, i, logger, layout));
  for (const n of nodes) await cleanNode(n);
  try {
    for (const n of nodes) {
      mkdirSync(n.dir, { recursive: true });
      run('ip', ['link', 'add', 'name', n.bridge, 'type', 'bridge']);
      run('ip', ['addr', 'add', n.subnet, 'dev', n.bridge]);
      run('ip', ['link', 'set', n.bridge, 'up']);
      await n.service.up(n.ctx);
    }
  } catch (err) {
    await stopNodes(nodes);
    throw err;
  }
  return nodes;
}

/** Removes every container of the nodes, stops their daemons, deletes their directories and bridges. */
export async function stopNodes(nodes: readonly DockerNode[]): Promise<void> {
  for (const n of nodes) await cleanNode(n);
  // The parents too, once no node is left in them.
  for (const parent of new Set(nodes.map((n) => path.dirname(n.dir)))) {
    if (existsSync(parent) && readdirSync(parent).length === 0) rmdirSync(parent);
  }
}

/** The config a process on `n` has: the test's environment with the node's LOGMETER_NODE and DOCKER_HOST. */
export function nodeConfig(env: NodeJS.ProcessEnv, n: DockerNode): Config {
  return loadConfig({ env: { ...env, LOGMETER_NODE: n.name, DOCKER_HOST: n.host } });
}

/** A collector on `n`, configured as the node's own would be (nodeConfig), following containers labelled under `labelPrefix`; started. */
export async function startNodeCollector(n: DockerNode, o: { env: NodeJS.ProcessEnv; labelPrefix: string; stateDir: string; bus: EventBus; codec: AvroCodec; logger: Logger }): Promise<Collector> {
  const config = nodeConfig(o.env, n);
  const c = createCollector({
    cfg: collectorConfigSchema.parse({ labelPrefix: o.labelPrefix, statsIntervalSeconds: 1 }),
    node: config.node,
    stateDir: o.stateDir,
    docker: dockerClient(config.docker.host),
    bus: o.bus,
    codec: o.codec,
    logger: o.logger,
    registry: createRegistry(false),
  });
  await c.start();
  return c;
}

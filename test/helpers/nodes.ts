/**
 * Several Docker engines on this machine, as the nodes of one cloud: each a private
 * `dockerd` (its own data root, exec root, pid file and socket under
 * /tmp/logmeter-nodes/<node>, started and stopped through lib/stack/docker.ts as the
 * fault suite's is) on its own bridge (`lmnode1`, `lmnode2`, …, created here with a
 * subnet of its own; dockerd's `--bip` cannot be combined with `--bridge`, so the
 * bridge's address is its subnet), without iptables, in its own cgroup parent. The base
 * image is the shared daemon's, saved once into a tarball under the state directory
 * (named by the image id, so a rebuilt image is saved again) and loaded into each.
 *
 * The shared dockerd is only read from (`docker save`). `stopNodes` removes every
 * container of the nodes, stops their daemons, unmounts and deletes their directories
 * and bridges; `startNodes` does the same to a previous run's leftovers first, and
 * stops what it started if a later node fails to start. One run at a time: the
 * directories and bridges have fixed names.
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

export const NODES_DIR = '/tmp/logmeter-nodes';
/** At most this many nodes: bridges lmnode1…lmnode3 on 10.213.81–83.0/24 (the fault suite's lmfaults0 is 10.213.77.0/24). */
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

function nodeSpec(name: string, index: number, logger: Logger): DockerNode {
  const dir = path.join(NODES_DIR, name);
  const host = `unix://${path.join(dir, 'docker.sock')}`;
  const bridge = `lmnode${index + 1}`;
  const subnet = `10.213.${81 + index}.1/24`;
  const args = [`--bridge=${bridge}`, '--iptables=false', '--ip6tables=false', '--ip-masq=false', `--cgroup-parent=logmeter-nodes-${name}`];
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

/** Starts one engine per name (at most MAX_NODES), each with the base image; a previous run's leftovers are removed first. */
export async function startNodes(names: readonly string[], logger: Logger = createLogger('warn', 2)): Promise<DockerNode[]> {
  if (names.length > MAX_NODES) throw new Error(`at most ${MAX_NODES} nodes`);
  const nodes = names.map((name, i) => nodeSpec(name, i, logger));
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
  // The parent too, once no node is left in it.
  if (existsSync(NODES_DIR) && readdirSync(NODES_DIR).length === 0) rmdirSync(NODES_DIR);
}

/**
 * Benchmark containers on the real dockerd: busybox (`logmeter/base:1`) running a shell
 * script, labelled with the run's prefix (tenant, app) and `logmeter.bench=<run id>`,
 * so they are removed by label afterwards whatever happened.
 */
import { statSync } from 'node:fs';
import type Docker from 'dockerode';
import { BASE_IMAGE, dockerClient } from '../../lib/docker.js';
import { sleep, until } from './common.js';

export const docker: Docker = dockerClient(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');

export const BENCH_LABEL = 'logmeter.bench';

export interface BenchContainerSpec {
  runId: string;
  labelPrefix: string;
  tenant: string;
  app: string;
  script: string;
  env?: Record<string, string>;
  /** Docker log driver; default the daemon's (json-file here). */
  logDriver?: 'json-file' | 'local';
  /** Bind mounts, `host:container[:ro]`. */
  binds?: string[];
}

export async function startContainer(s: BenchContainerSpec): Promise<Docker.Container> {
  const c = await docker.createContainer({
    Image: BASE_IMAGE,
    Cmd: ['sh', '-c', s.script],
    Env: Object.entries(s.env ?? {}).map(([k, v]) => `${k}=${v}`),
    Labels: { [BENCH_LABEL]: s.runId, [`${s.labelPrefix}tenant`]: s.tenant, [`${s.labelPrefix}app`]: s.app },
    HostConfig: { Init: true, Binds: s.binds, LogConfig: s.logDriver ? { Type: s.logDriver, Config: {} } : undefined },
  });
  await c.start();
  return c;
}

/** Starts many containers, `concurrency` at a time (dockerd serialises much of it anyway). */
export async function startContainers(specs: readonly BenchContainerSpec[], concurrency = 6): Promise<Docker.Container[]> {
  const outList: Docker.Container[] = new Array<Docker.Container>(specs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, specs.length) }, async () => {
      while (next < specs.length) {
        const i = next++;
        outList[i] = await startContainer(specs[i]!);
      }
    }),
  );
  return outList;
}

/** Removes every container of a run (by its `logmeter.bench` label). */
export async function removeRunContainers(runId: string): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${runId}`] } });
  let i = 0;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (i < list.length) {
        const c = list[i++]!;
        await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      }
    }),
  );
  return list.length;
}

/**
 * Waits until a container has printed everything: no `yes`/`head` process left (the
 * script ends in `exec sleep`) and its log file has stopped growing (dockerd's copier
 * has written the last of the pipe).
 */
export async function waitPrinted(c: Docker.Container, timeoutMs = 300_000): Promise<number> {
  await until(
    `container ${c.id.slice(0, 12)} finished printing`,
    async () => {
      const top = (await c.top({ ps_args: '-o pid,args' })) as { Titles: string[]; Processes: string[][] };
      return !top.Processes.some((p) => p.some((cell) => /^(yes|head)\b/.test(cell) || /\b(yes|head) /.test(cell)));
    },
    timeoutMs,
    200,
  );
  const info = await c.inspect();
  let last = -1;
  for (;;) {
    const size = info.LogPath ? statSync(info.LogPath).size : 0;
    if (size === last) return size;
    last = size;
    await sleep(300);
  }
}

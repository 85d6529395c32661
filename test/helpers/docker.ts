/**
 * Test containers on the real dockerd: the base image, labels under a per-test prefix,
 * removed afterwards.
 */
import type Docker from 'dockerode';
import { BASE_IMAGE, dockerClient } from '../../lib/docker.js';

export const docker: Docker = dockerClient(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');

export interface RunOptions {
  prefix: string;
  tenant?: string;
  app?: string;
  labels?: Record<string, string>;
  script: string;
  tty?: boolean;
  name?: string;
  network?: string;
  publish?: number;
  start?: boolean;
  /** Docker log driver; `local` keeps invalid UTF-8 bytes exactly (json-file replaces them). */
  logDriver?: 'json-file' | 'local';
}

/** Creates (and by default starts) a busybox container running `sh -c script`, labelled for the test's prefix. */
export async function runContainer(o: RunOptions): Promise<Docker.Container> {
  const labels: Record<string, string> = { 'logmeter.test': 'true', ...o.labels };
  if (o.tenant) labels[`${o.prefix}tenant`] = o.tenant;
  if (o.app) labels[`${o.prefix}app`] = o.app;
  const c = await docker.createContainer({
    Image: BASE_IMAGE,
    name: o.name,
    Cmd: ['sh', '-c', o.script],
    Tty: o.tty ?? false,
    Labels: labels,
    ExposedPorts: o.publish ? { [`${o.publish}/tcp`]: {} } : undefined,
    HostConfig: {
      Init: true,
      NetworkMode: o.network,
      LogConfig: o.logDriver ? { Type: o.logDriver, Config: {} } : undefined,
      PortBindings: o.publish ? { [`${o.publish}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] } : undefined,
    },
  });
  if (o.start !== false) await c.start();
  return c;
}

/** Removes every container and network this test created (by label). */
export async function removeTestContainers(prefix: string): Promise<void> {
  const filters = JSON.stringify({ label: [`${prefix}tenant`] });
  for (const c of await docker.listContainers({ all: true, filters })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
}

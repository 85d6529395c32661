/**
 * Docker Engine API client (dockerode) for a `DOCKER_HOST`-style endpoint.
 */
import Docker from 'dockerode';

export type { Docker };

export function dockerOptions(host: string): Docker.DockerOptions {
  if (host.startsWith('/')) return { socketPath: host };
  const u = new URL(host);
  if (u.protocol === 'unix:') return { socketPath: u.pathname };
  return { host: u.hostname, port: Number(u.port || 2375), protocol: u.protocol === 'https:' ? 'https' : 'http' };
}

export function dockerClient(host: string): Docker {
  return new Docker(dockerOptions(host));
}

/** The base image `stack up` builds with `docker import` (busybox: sh, httpd, nc, wget). */
export const BASE_IMAGE = 'logmeter/base:1';

/**
 * Docker: Debian's docker.io, and our own dockerd when no socket answers (data,
 * exec root, pid and log under the state directory). No registry is reachable, so
 * the base image the demo and tests use is built with `docker import` from Debian's
 * busybox-static (sh, httpd, nc, wget, …).
 */
import { existsSync, mkdtempSync, rmSync, symlinkSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LogmeterError } from '../errors.js';
import { BASE_IMAGE, dockerClient, dockerOptions, type Docker } from '../docker.js';
import { hasImage, importRootfs, installBusybox } from '../docker-image.js';
import { aptInstall, ensureDir, mtime, ownPid, pidAlive, readPid, startDaemon, stopPid, waitFor, type StackContext } from './common.js';
import type { ServiceStatus, StackService } from './service.js';

export interface DockerServiceOptions {
  /**
   * Extra `dockerd` arguments when this stack starts the daemon (a second, private
   * daemon needs its own bridge, `--iptables=false`, …). Default none.
   */
  daemonArgs?: string[];
  /**
   * How the base image gets onto a daemon that lacks it. Default: built with `docker
   * import` from busybox-static. The multi-node test harness loads the shared daemon's
   * image instead (`docker save` → `docker load`), so every engine runs the same image.
   */
  provisionImage?: (docker: Docker) => Promise<void>;
}

export function dockerService(host: string, opts: DockerServiceOptions = {}): StackService {
  const docker = dockerClient(host);
  const socket = dockerOptions(host).socketPath;
  const paths = (ctx: StackContext) => {
    const dir = path.join(ctx.stateDir, 'docker');
    return { dir, data: path.join(dir, 'data'), exec: path.join(dir, 'exec'), pid: path.join(dir, 'dockerd.pid'), log: path.join(dir, 'dockerd.log') };
  };
  const status = async (ctx: StackContext): Promise<ServiceStatus> => {
    const p = paths(ctx);
    const pid = ownPid(p.pid, p.pid);
    const managed = pid !== undefined;
    const version = await dockerVersion(docker);
    if (version) {
      const image = (await hasImage(docker, BASE_IMAGE)) ? `image ${BASE_IMAGE}` : `no ${BASE_IMAGE}`;
      return { name: 'docker', state: 'running', managed, where: host, pid: managed ? pid : undefined, since: managed ? mtime(p.pid) : undefined, detail: `Docker ${version}, ${image}${managed ? '' : ', reused: not started by logmeter'}` };
    }
    return { name: 'docker', state: existsSync('/usr/sbin/dockerd') || existsSync('/usr/bin/dockerd') ? 'stopped' : 'missing', managed: false, where: host };
  };
  return {
    name: 'docker',
    status,
    async up(ctx) {
      if (!(await dockerVersion(docker))) {
        if (!socket) throw new LogmeterError('docker_unreachable', `Docker at ${host} does not answer, and logmeter only starts a local dockerd (unix socket)`);
        aptInstall(ctx, ['docker.io']);
        const p = paths(ctx);
        ensureDir(p.data);
        ensureDir(p.exec);
        mkdirSync(path.dirname(socket), { recursive: true });
        // dockerd refuses to start while its pid file names a live process.
        if (existsSync(p.pid) && !pidAlive(readPid(p.pid))) rmSync(p.pid);
        // After a crash, a stale containerd pid file makes dockerd wait ~60 s for a containerd that is gone.
        const containerdPid = path.join(p.exec, 'containerd', 'containerd.pid');
        if (existsSync(containerdPid) && !pidAlive(readPid(containerdPid))) rmSync(containerdPid);
        const d = startDaemon('dockerd', ['--data-root', p.data, '--exec-root', p.exec, '--pidfile', p.pid, '-H', `unix://${socket}`, ...(opts.daemonArgs ?? [])], { log: p.log });
        await waitFor(`dockerd on ${socket}`, async () => (await dockerVersion(docker)) !== undefined, { timeoutMs: 60_000, log: p.log, alive: () => pidAlive(d.pid) });
        ctx.logger.info({ socket, pid: d.pid }, 'dockerd started');
      }
      if (!(await hasImage(docker, BASE_IMAGE)) && opts.provisionImage) {
        await opts.provisionImage(docker);
        ctx.logger.info({ image: BASE_IMAGE }, 'base image provisioned');
      } else if (!(await hasImage(docker, BASE_IMAGE))) {
        aptInstall(ctx, ['busybox-static']);
        await buildBaseImage(docker, BASE_IMAGE);
        ctx.logger.info({ image: BASE_IMAGE }, 'base image built with docker import');
      }
      // The deployment tests: debootstrap builds the Debian base of the Dockerfile's image
      // (lib/stack/node-image.ts), docker-compose validates docker-compose.yml.
      aptInstall(ctx, ['debootstrap', 'docker-compose']);
      return status(ctx);
    },
    async down(ctx) {
      const p = paths(ctx);
      const pid = ownPid(p.pid, p.pid);
      if (!pid) return 'docker: not started by logmeter, left alone';
      await stopPid(pid, 30_000);
      return `docker: stopped dockerd (pid ${pid})`;
    },
  };
}

async function dockerVersion(docker: Docker): Promise<string | undefined> {
  try {
    return (await docker.version()).Version;
  } catch {
    return undefined;
  }
}

/** Builds `ref` from /bin/busybox of busybox-static: every applet linked in /bin, a passwd, /www for httpd. */
export async function buildBaseImage(docker: Docker, ref: string): Promise<void> {
  const busybox = '/bin/busybox';
  if (!existsSync(busybox)) throw new LogmeterError('missing_packages', `${busybox} not found (Debian package busybox-static)`);
  const root = mkdtempSync(path.join(tmpdir(), 'logmeter-base-'));
  try {
    for (const d of ['bin', 'etc', 'usr', 'www/cgi-bin', 'root', 'var/run', 'var/log', 'proc', 'sys', 'dev', 'home', 'tmp']) mkdirSync(path.join(root, d), { recursive: true });
    chmodSync(path.join(root, 'tmp'), 0o1777);
    installBusybox(root, busybox);
    symlinkSync('bin', path.join(root, 'sbin'));
    symlinkSync('../bin', path.join(root, 'usr', 'bin'));
    symlinkSync('../bin', path.join(root, 'usr', 'sbin'));
    writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
    writeFileSync(path.join(root, 'etc', 'nsswitch.conf'), 'hosts: files dns\n');
    writeFileSync(path.join(root, 'www', 'index.html'), 'logmeter base\n');
    await importRootfs(docker, root, ref, ['CMD ["/bin/sh"]', 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin', 'WORKDIR /']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

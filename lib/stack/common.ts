/**
 * Shared machinery of `logmeter stack`: running commands, installing Debian packages,
 * starting detached daemons with their pid, logs and data under the state directory,
 * and waiting for them to answer.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, closeSync, writeFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../command.js';
import { LogmeterError } from '../errors.js';
import type { Logger } from '../logger.js';

// Shared with the image builds (lib/command.ts); re-exported for the stack's services and the fault tests.
export { run };

/** The checkout this code runs from. */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface StackContext {
  /** Ignored state directory: each service's data, logs and pid live under it. */
  stateDir: string;
  logger: Logger;
  /** Whether `stack up` may install missing packages (apt-get, Maven). */
  install: boolean;
}

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.LOGMETER_STATE_DIR ?? path.join(PROJECT_ROOT, '.state'));
}

export function ensureDir(...parts: string[]): string {
  const dir = path.join(...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function which(cmd: string): string | undefined {
  const res = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const out = res.stdout.trim();
  return res.status === 0 && out ? out : undefined;
}

export function packageInstalled(pkg: string): boolean {
  const res = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return res.status === 0 && res.stdout.includes('install ok installed');
}

let aptUpdated = false;

/** Installs the Debian packages that are missing (apt-get update first, once per process). */
export function aptInstall(ctx: StackContext, packages: string[]): string[] {
  const missing = packages.filter((p) => !packageInstalled(p));
  if (missing.length === 0) return [];
  if (!ctx.install) throw new LogmeterError('missing_packages', `missing Debian packages: ${missing.join(' ')} (run as root without --no-install)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    ctx.logger.info('apt-get update');
    run('apt-get', ['update', '-q'], { env, what: 'apt-get update' });
    aptUpdated = true;
  }
  ctx.logger.info({ packages: missing }, 'installing Debian packages');
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env, what: `apt-get install ${missing.join(' ')}` });
  return missing;
}

export interface Daemon {
  pid: number;
  log: string;
}

/** Starts a detached daemon, its stdout and stderr appended to `log`; it outlives this process. */
export function startDaemon(cmd: string, args: string[], opts: { log: string; cwd?: string; env?: NodeJS.ProcessEnv }): Daemon {
  mkdirSync(path.dirname(opts.log), { recursive: true });
  const fd = openSync(opts.log, 'a');
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], cwd: opts.cwd, env: opts.env ?? process.env });
    if (child.pid === undefined) throw new LogmeterError('start_failed', `could not start ${cmd}`);
    child.unref();
    return { pid: child.pid, log: opts.log };
  } finally {
    closeSync(fd);
  }
}

export function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it is not running.
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * The pid in `file` if that process is alive and its command line contains `marker`
 * (a path or port of ours): a stale pid file naming a recycled pid, or a service
 * started from another checkout, is not ours.
 */
export function ownPid(file: string, marker: string): number | undefined {
  const pid = readPid(file);
  if (!pidAlive(pid)) return undefined;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(marker) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function writePid(file: string, pid: number): void {
  writeFileSync(file, `${pid}\n`);
}

/** Sends SIGTERM, waits up to `graceMs`, then SIGKILL. */
export async function stopPid(pid: number, graceMs = 20_000): Promise<void> {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const end = Date.now() + graceMs;
  while (Date.now() < end) {
    if (!pidAlive(pid)) return;
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves true when a TCP connection to host:port succeeds within `timeoutMs`. */
export function tcpOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Polls `probe` until it resolves true; throws with `what` and the log tail after `timeoutMs`. */
export async function waitFor(what: string, probe: () => Promise<boolean>, opts: { timeoutMs: number; log?: string; alive?: () => boolean }): Promise<void> {
  const end = Date.now() + opts.timeoutMs;
  while (Date.now() < end) {
    if (await probe()) return;
    if (opts.alive && !opts.alive()) break;
    await sleep(250);
  }
  const tail = opts.log && existsSync(opts.log) ? `\nlast lines of ${opts.log}:\n${readFileSync(opts.log, 'utf8').split('\n').slice(-20).join('\n')}` : '';
  throw new LogmeterError('start_timeout', `${what} did not come up within ${opts.timeoutMs / 1000} s${tail}`);
}

export function mtime(file: string): Date | undefined {
  try {
    return statSync(file).mtime;
  } catch {
    return undefined;
  }
}

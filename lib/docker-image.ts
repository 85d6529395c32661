/**
 * Images built locally with `docker import` (no registry is reachable): a directory
 * tree becomes an image through the Engine API. Used by `logmeter stack` (the base
 * image) and by the routes processor's load balancer (the HAProxy image).
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { run } from './command.js';
import type { Docker } from './docker.js';
import { LogmeterError, errorMessage } from './errors.js';

export async function hasImage(docker: Docker, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch {
    return false;
  }
}

/** `docker import` of a directory through the Engine API (POST /images/create?fromSrc=-). */
export async function importRootfs(docker: Docker, root: string, ref: string, changes: string[]): Promise<void> {
  const [repo, tag = 'latest'] = ref.split(':') as [string, string?];
  const tar = spawn('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '--sort=name', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tarErr = '';
  tar.stderr.on('data', (d: Buffer) => (tarErr += d.toString()));
  const tarDone = new Promise<number | null>((r) => tar.on('close', r));
  try {
    const stream = (await docker.importImage(tar.stdout, { repo, tag, changes } as unknown as object));
    const result = await new Promise<string>((resolve, reject) => {
      let out = '';
      stream.on('data', (d: Buffer) => (out += d.toString()));
      stream.on('end', () => resolve(out));
      stream.on('error', reject);
    });
    if (/"error"/.test(result)) throw new Error(result);
  } catch (err) {
    throw new LogmeterError('image_build_failed', `docker import ${ref}: ${errorMessage(err)} ${tarErr}`);
  }
  if ((await tarDone) !== 0) throw new LogmeterError('image_build_failed', `tar of ${root} failed: ${tarErr}`);
  if (!(await hasImage(docker, ref))) throw new LogmeterError('image_build_failed', `docker import ${ref} finished but the image is missing`);
}

/** Copies `busybox` to `<root>/bin/busybox` and links every applet it lists next to it (a shell and the usual tools). */
export function installBusybox(root: string, busybox: string): void {
  copyFileSync(busybox, path.join(root, 'bin', 'busybox'));
  chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of run(busybox, ['--list']).split('\n').map((s) => s.trim())) {
    if (applet && applet !== 'busybox') symlinkSync('busybox', path.join(root, 'bin', applet));
  }
}

/** Absolute paths of the shared libraries (and the dynamic loader) a binary needs, from `ldd`. */
export function sharedLibraries(binary: string): string[] {
  const libs = new Set<string>();
  for (const line of run('ldd', [binary]).split('\n')) {
    // "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
    if (m) libs.add(m[1]!);
  }
  if (libs.size === 0) throw new LogmeterError('image_build_failed', `ldd ${binary} listed no libraries`);
  return [...libs].sort();
}

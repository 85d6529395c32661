/**
 * Running a local command to completion (image builds read `ldd` and `busybox --list`;
 * `logmeter stack` installs packages and starts daemons).
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { LogmeterError } from './errors.js';

/** Runs a command to completion; throws with its stderr tail when it fails. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions & { what?: string } = {}): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (res.error) throw new LogmeterError('command_failed', `${opts.what ?? cmd}: ${res.error.message}`);
  if (res.status !== 0) {
    const tail = `${String(res.stderr ?? '')}${String(res.stdout ?? '')}`.trim().split('\n').slice(-15).join('\n');
    throw new LogmeterError('command_failed', `${opts.what ?? `${cmd} ${args.join(' ')}`} exited with ${res.status ?? res.signal}:\n${tail}`);
  }
  return String(res.stdout ?? '');
}

/**
 * The operator token when `LOGMETER_ADMIN_TOKEN` is not set: `$LOGMETER_DATA_DIR/admin-token`,
 * created by the first `logmeter up` / `logmeter api` (32 random bytes, mode 0600, owner
 * only) and read from there by the CLI on the same host, so no anonymous caller is ever
 * the operator and the README's commands need no extra step.
 *
 * The running process re-reads the file when it changes (checked on each operator
 * request: a stat), so `logmeter admin-token rotate` invalidates the old token at once.
 * A file that group or others may read, that another user owns or that is not a plain
 * file is refused: whoever can read or replace it is the operator.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { dataPath } from './config.js';
import { LogmeterError, errorMessage } from './errors.js';
import type { Logger } from './logger.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

/** What these functions read of a config: where the data directory is and the configured token. */
export interface TokenConfig {
  dataDir: string;
  api: { adminToken?: string | undefined };
}

export function adminTokenPath(cfg: TokenConfig): string {
  return dataPath(cfg, ADMIN_TOKEN_FILE);
}

/** 32 bytes from the CSPRNG, base64url (43 characters). */
export function newAdminToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The token in `file`; undefined when there is none. Throws when the file is not safe to trust. */
export function readAdminTokenFile(file: string): string | undefined {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LogmeterError('admin_token_unreadable', `cannot read the admin token ${file}: ${errorMessage(err)}`);
  }
  if (!st.isFile()) throw new LogmeterError('admin_token_insecure', `the admin token ${file} is not a regular file (a symlink?): remove it and run logmeter admin-token rotate`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new LogmeterError('admin_token_insecure', `the admin token ${file} belongs to uid ${st.uid}, not to this user (uid ${process.getuid()}): run logmeter as its owner, or chown it`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new LogmeterError('admin_token_insecure', `the admin token ${file} is open to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): run chmod 600 ${file}`);
  }
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new LogmeterError('admin_token_unreadable', `cannot read the admin token ${file}: ${errorMessage(err)} (run as the user that started logmeter, or set LOGMETER_ADMIN_TOKEN)`);
  }
  if (token.length < 16) throw new LogmeterError('admin_token_insecure', `the admin token in ${file} is shorter than 16 characters: run logmeter admin-token rotate`);
  return token;
}

/** Writes a new token to `file` (created 0600, then renamed over the old one). */
function writeAdminTokenFile(file: string, exclusive: boolean): string {
  mkdirSync(path.dirname(file), { recursive: true });
  const token = newAdminToken();
  // 'wx': never through a file or symlink someone placed there first.
  const target = exclusive ? file : `${file}.${process.pid}.tmp`;
  const fd = openSync(target, 'wx', 0o600);
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  if (!exclusive) renameSync(target, file);
  return token;
}

// Tokens read from a file, by the token first read: the running process asks here for the current one.
const fileBacked = new Map<string, { file: string; stamp: string; token: string | undefined }>();

// ctime and mode too: a chmod that opens the file to others must take effect like a rotation.
function stampOf(file: string): string {
  const st = statSync(file);
  return `${st.ino}:${st.mtimeMs}:${st.ctimeMs}:${st.size}:${st.mode}`;
}

function track(token: string, file: string): void {
  fileBacked.set(token, { file, stamp: stampOf(file), token });
}

/**
 * The current operator token behind a configured one: the same string, or for a token
 * read from the admin-token file, the file's content now (re-read when it changed;
 * undefined when it is gone or no longer safe, so nobody is the operator).
 */
export function liveAdminToken(token: string | undefined): () => string | undefined {
  const t = token === undefined ? undefined : fileBacked.get(token);
  if (!t) return () => token;
  return () => {
    let stamp = '';
    try {
      stamp = stampOf(t.file);
    } catch {
      /* gone: stamp '' */
    }
    if (stamp !== t.stamp) {
      t.stamp = stamp;
      try {
        t.token = stamp ? readAdminTokenFile(t.file) : undefined;
      } catch {
        t.token = undefined;
      }
    }
    return t.token;
  };
}

/**
 * For `logmeter up` and `logmeter api`: the config with the operator token, the
 * configured one or the file's (created on the first start, its path logged, never the token).
 */
export function ensureAdminToken<C extends TokenConfig>(cfg: C, logger: Logger): C {
  if (cfg.api.adminToken) return cfg;
  const file = adminTokenPath(cfg);
  const log = logger.child({ component: 'admin-token' });
  let token = readAdminTokenFile(file);
  if (token === undefined) {
    try {
      token = writeAdminTokenFile(file, true);
      log.info({ file }, 'operator token created (LOGMETER_ADMIN_TOKEN is not set); the CLI on this host reads it from there');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      token = readAdminTokenFile(file)!; // another process created it first
    }
  } else {
    log.info({ file }, 'operator token read (LOGMETER_ADMIN_TOKEN is not set)');
  }
  track(token, file);
  return { ...cfg, api: { ...cfg.api, adminToken: token } };
}

/** For the CLI's clients (`sql`, `logs`, `report`): the config with the file's token when none is configured. */
export function withAdminTokenFile<C extends TokenConfig>(cfg: C): C {
  if (cfg.api.adminToken) return cfg;
  const token = readAdminTokenFile(adminTokenPath(cfg));
  return token === undefined ? cfg : { ...cfg, api: { ...cfg.api, adminToken: token } };
}

/** Replaces the token in the file; a running process refuses the old one from its next request. */
export function rotateAdminToken(cfg: TokenConfig): string {
  if (cfg.api.adminToken) throw new LogmeterError('admin_token_configured', 'the operator token comes from LOGMETER_ADMIN_TOKEN (or the config file): change it there and restart');
  const file = adminTokenPath(cfg);
  try {
    writeAdminTokenFile(file, false);
  } catch (err) {
    rmSync(`${file}.${process.pid}.tmp`, { force: true });
    throw err;
  }
  return file;
}

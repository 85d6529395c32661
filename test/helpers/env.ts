/**
 * Per-test namespaces on the real services: a unique topic prefix (so topics and
 * consumer groups), ClickHouse database, data directory and container label.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../../app/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = path.join(ROOT, 'bin', 'logmeter.mjs');

export interface TestNamespace {
  id: string;
  dataDir: string;
  env: NodeJS.ProcessEnv;
  config: Config;
  logger: Logger;
  cleanup(): void;
}

export function namespace(extraEnv: Record<string, string> = {}): TestNamespace {
  const id = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const dataDir = mkdtempSync(path.join(tmpdir(), `logmeter-${id}-`));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LOGMETER_TOPIC_PREFIX: `${id}.`,
    LOGMETER_DATA_DIR: dataDir,
    CLICKHOUSE_DATABASE: id,
    LOGMETER_HTTP: '127.0.0.1:0',
    LOGMETER_KEDA_LISTEN: '127.0.0.1:0',
    LOGMETER_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    ...extraEnv,
  };
  const config = loadConfig({ env });
  return {
    id,
    dataDir,
    env,
    config,
    logger: createLogger(config.log.level, 2),
    cleanup: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `logmeter <args>` to completion. */
export function cli(args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`logmeter ${args.join(' ')} timed out\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `logmeter <args>` in the background; `output()` has what it printed so far. */
export function cliBackground(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; output(): string; waitFor(re: RegExp, timeoutMs?: number): Promise<string>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    child,
    output: () => out,
    exited,
    waitFor: async (re, timeoutMs = 60_000) => {
      const end = Date.now() + timeoutMs;
      while (Date.now() < end) {
        const m = re.exec(out);
        if (m) return m[0];
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before ${re}:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out waiting for ${re}:\n${out}`);
    },
  };
}

/** Polls until `fn` returns a value that is not undefined. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out: ${what}${last ? ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`);
}

/** A loopback port nothing listens on (it was free a moment ago). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

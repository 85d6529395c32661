/**
 * Redis for bullmq: Debian's redis-server, started on the configured URL's port with
 * its data, log and pid under the state directory. One already answering PING on
 * that URL is reused (and left alone by `down`).
 */
import net from 'node:net';
import path from 'node:path';
import { aptInstall, ensureDir, mtime, ownPid, run, stopPid, waitFor, which, type StackContext } from './common.js';
import type { ServiceStatus, StackService } from './service.js';

export function redisService(url: string): StackService {
  const u = new URL(url);
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || 6379);
  const where = `${host}:${port}`;
  const paths = (ctx: StackContext) => {
    const dir = path.join(ctx.stateDir, 'redis');
    return { dir, pid: path.join(dir, 'redis.pid'), log: path.join(dir, 'redis.log') };
  };
  const status = async (ctx: StackContext): Promise<ServiceStatus> => {
    const p = paths(ctx);
    const pid = ownPid(p.pid, `:${port}`);
    const managed = pid !== undefined;
    if (await ping(host, port)) return { name: 'redis', state: 'running', managed, where, pid: managed ? pid : undefined, since: managed ? mtime(p.pid) : undefined, detail: managed ? p.log : 'reused: not started by logmeter' };
    return { name: 'redis', state: which('redis-server') ? 'stopped' : 'missing', managed: false, where };
  };
  return {
    name: 'redis',
    status,
    async up(ctx) {
      const now = await status(ctx);
      if (now.state === 'running') return now;
      if (!['127.0.0.1', 'localhost', '::1'].includes(host)) throw new Error(`Redis at ${where} does not answer, and logmeter only starts a local one`);
      aptInstall(ctx, ['redis-server']);
      const p = paths(ctx);
      ensureDir(p.dir);
      run('redis-server', [
        '--bind', host === 'localhost' ? '127.0.0.1' : host,
        '--port', String(port),
        '--dir', p.dir,
        '--daemonize', 'yes',
        '--pidfile', p.pid,
        '--logfile', p.log,
        '--appendonly', 'yes',
        '--save', '',
        '--protected-mode', 'yes',
      ], { what: 'redis-server' });
      await waitFor(`redis on ${where}`, () => ping(host, port), { timeoutMs: 15_000, log: p.log });
      ctx.logger.info({ where }, 'redis started');
      return status(ctx);
    },
    async down(ctx) {
      const p = paths(ctx);
      const pid = ownPid(p.pid, `:${port}`);
      if (!pid) return 'redis: not started by logmeter, left alone';
      await stopPid(pid);
      return `redis: stopped (pid ${pid})`;
    },
  };
}

/** True when a Redis server answers PING at host:port. */
export function ping(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

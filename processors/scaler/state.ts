/**
 * What the scaler keeps in Redis, next to its bullmq queue, so that it survives a
 * restart and is shared by every scaler process on the queue:
 * - `last-change:<app>`: when the app last changed, which way and by which job (cooldowns);
 * - `pending:<app>`: the id of the app's newest enqueued job (one pending job per app);
 * - `refused:<app>`: the last refusal reported, so a refusal repeated every second is
 *   reported to the tenant once (it is still logged and counted each time);
 * - `lock:app:<app>`, `lock:node` (on several nodes `lock:node:<node>`): exclusive runs
 *   (one job per app at a time; one scale-up at a time per node, so two apps cannot both
 *   take the last place under the cap);
 * - on several nodes, `node:<node>` and `nodes`: the nodes' reports (cluster.ts).
 *
 * `<app>` is {@link appKey}: tenant and app percent-encoded, joined by `|`.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { LastChange } from './plan.js';

/** `<tenant>|<app>`, each percent-encoded (so neither holds `|`, nor the `:` bullmq refuses in job ids). */
export function appKey(tenant: string, app: string): string {
  return `${encodeURIComponent(tenant)}|${encodeURIComponent(app)}`;
}

/** Lifetime of a lock not renewed (its holder died); held locks are renewed every third of it. */
export const LOCK_TTL_MS = 30_000;

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
/** Sets the key to ARGV[1] unless it holds it already; 1 when it was different (a new refusal). */
const SET_IF_DIFFERENT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1`;

export interface Lock {
  release(): Promise<void>;
}

export class ScalerState {
  /**
   * @param redis a non-blocking connection (may be the queue's)
   * @param base key prefix, `<bullmq prefix>:<queue name>:scaler`
   */
  constructor(
    private readonly redis: Redis,
    readonly base: string,
  ) {}

  private key(kind: string, app?: string): string {
    return app === undefined ? `${this.base}:${kind}` : `${this.base}:${kind}:${app}`;
  }

  async lastChange(app: string): Promise<LastChange | undefined> {
    const h = await this.redis.hgetall(this.key('last-change', app));
    if (h.at === undefined || h.job === undefined) return undefined;
    return { at: Number(h.at), job: h.job, direction: h.direction === 'down' ? 'down' : 'up' };
  }

  /** Records a change; kept for `keepMs` (longer than any cooldown), then forgotten with the app. */
  async recordChange(app: string, change: LastChange, keepMs: number): Promise<void> {
    const key = this.key('last-change', app);
    await this.redis.multi().hset(key, { at: String(change.at), job: change.job, direction: change.direction }).pexpire(key, keepMs).del(this.key('refused', app)).exec();
  }

  async pending(app: string): Promise<string | null> {
    return this.redis.get(this.key('pending', app));
  }

  async setPending(app: string, jobId: string, keepMs: number): Promise<void> {
    await this.redis.set(this.key('pending', app), jobId, 'PX', keepMs);
  }

  /** True when this refusal differs from the last one reported for the app in the last `repeatMs`. */
  async isNewRefusal(app: string, signature: string, repeatMs: number): Promise<boolean> {
    return (await this.redis.eval(SET_IF_DIFFERENT, 1, this.key('refused', app), signature, repeatMs)) === 1;
  }

  /** Forgets the app's last reported refusal (its state changed: the next refusal is news). */
  async clearRefusal(app: string): Promise<void> {
    await this.redis.del(this.key('refused', app));
  }

  /** Takes `lock:<name>` if free; renewed while held. Undefined when someone else holds it. */
  async tryLock(name: string): Promise<Lock | undefined> {
    const key = this.key('lock', name);
    const token = randomBytes(12).toString('hex');
    if ((await this.redis.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') return undefined;
    const renew = setInterval(() => void this.redis.eval(EXTEND, 1, key, token, LOCK_TTL_MS).catch(() => undefined), LOCK_TTL_MS / 3);
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        await this.redis.eval(RELEASE, 1, key, token);
      },
    };
  }

  /** Waits up to `waitMs` for `lock:<name>`; undefined when it stayed busy. */
  async lock(name: string, waitMs: number, pollMs = 100): Promise<Lock | undefined> {
    const end = Date.now() + waitMs;
    for (;;) {
      const lock = await this.tryLock(name);
      if (lock || Date.now() >= end) return lock;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
}

/**
 * Panel sessions: a token handed over once at sign-in becomes a random session id in an
 * `HttpOnly; SameSite=Strict` cookie (`Secure` when the request came over TLS), with an
 * expiry. The token stays in this process's memory only, and every request presenting the
 * cookie is judged by that token again (api/auth.ts), so a token removed from the
 * configuration or a rotated operator token ends its sessions too. A restart signs
 * everyone out: sessions are not worth a table.
 *
 * CSRF: the cookie is accepted on GET routes only (reads), and the one state change made
 * with it, sign-out, must also carry the session's CSRF token in `x-logmeter-csrf` (a
 * value a cross-site page cannot read). Sign-in needs no cookie but a JSON body with the
 * `x-logmeter-csrf: signin` header, which no cross-site form can send without a CORS
 * preflight this server never grants.
 */
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const SESSION_COOKIE = 'logmeter_session';
export const CSRF_HEADER = 'x-logmeter-csrf';
/** Sessions last 12 hours unless the store is made with another lifetime. */
export const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;

export interface Session {
  id: string;
  token: string;
  csrf: string;
  expires: number;
}

export interface SessionStore {
  create(token: string): Session;
  /** The live session of the request's cookie, if any (expired ones are forgotten here). */
  fromRequest(req: FastifyRequest): Session | undefined;
  destroy(id: string): void;
  readonly size: number;
}

export function createSessionStore(opts: { ttlMs?: number; now?: () => number } = {}): SessionStore {
  const ttl = opts.ttlMs ?? DEFAULT_SESSION_TTL_MS;
  const now = opts.now ?? Date.now;
  const sessions = new Map<string, Session>();
  const sweep = () => {
    const t = now();
    for (const [id, s] of sessions) if (s.expires <= t) sessions.delete(id);
  };
  return {
    create(token) {
      sweep();
      const s: Session = { id: randomBytes(32).toString('base64url'), token, csrf: randomBytes(24).toString('base64url'), expires: now() + ttl };
      sessions.set(s.id, s);
      return s;
    },
    fromRequest(req) {
      const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
      if (id === undefined) return undefined;
      const s = sessions.get(id);
      if (!s) return undefined;
      if (s.expires <= now()) {
        sessions.delete(id);
        return undefined;
      }
      return s;
    },
    destroy: (id) => void sessions.delete(id),
    get size() {
      return sessions.size;
    },
  };
}

/** One cookie's value from a `Cookie` header; undefined when absent. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const overTls = (req: FastifyRequest) => req.protocol === 'https';

export function setSessionCookie(req: FastifyRequest, reply: FastifyReply, s: Session, now = Date.now()): void {
  const maxAge = Math.max(0, Math.floor((s.expires - now) / 1000));
  void reply.header('set-cookie', `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${overTls(req) ? '; Secure' : ''}`);
}

export function clearSessionCookie(req: FastifyRequest, reply: FastifyReply): void {
  void reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${overTls(req) ? '; Secure' : ''}`);
}

/** Whether the request carries the session's CSRF token (compared in constant time). */
export function csrfOk(req: FastifyRequest, s: Session): boolean {
  const presented = req.headers[CSRF_HEADER];
  if (typeof presented !== 'string') return false;
  const d = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(d(presented), d(s.csrf));
}

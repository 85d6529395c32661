/**
 * Who is calling the log center API: a tenant (its bearer token from
 * `LOGMETER_API_TOKENS`) or the operator (`LOGMETER_ADMIN_TOKEN`, or when that is unset
 * the token `logmeter up` / `api` created in `$LOGMETER_DATA_DIR/admin-token`, see
 * lib/admin-token.ts). No token, no data: a caller is judged by its token only, wherever
 * it calls from; loopback is not trusted (any local account or container with host
 * networking is on loopback).
 *
 * The panel's session cookie (api/session.ts) stands for the token it was made from, on
 * reads only (GET and HEAD): a request with the cookie is judged by that token again, and
 * a state-changing request is never authenticated by a cookie, so no cross-site form can
 * act with a signed-in browser's rights.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LogmeterError } from '../lib/errors.js';
import { liveAdminToken } from '../lib/admin-token.js';
import type { SessionStore } from './session.js';

export type Principal = { kind: 'tenant'; tenant: string } | { kind: 'admin' };

export type AuthResult = { ok: true; principal: Principal } | { ok: false; error: string };

export interface Authenticator {
  authenticate(req: FastifyRequest): AuthResult;
  /** Who a bare token belongs to (the panel's sign-in). */
  authenticateToken(token: string): AuthResult;
}

/** The token of an `Authorization: Bearer <token>` header; undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return m?.[1];
}

// Digests have one length whatever the token's, so timingSafeEqual never throws and
// the comparison reveals neither a token's bytes nor its length.
function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function createAuthenticator(opts: { tokens: Record<string, string>; adminToken?: string | undefined; sessions?: SessionStore | undefined }): Authenticator {
  const known: Array<{ digest: Buffer; principal: Principal }> = [];
  const owner = new Map<string, string>();
  const add = (token: string, principal: Principal, who: string) => {
    const prior = owner.get(token);
    // A shared token would make the caller's tenant ambiguous: refuse to start rather than guess.
    if (prior !== undefined) throw new LogmeterError('config_invalid', `API tokens of ${prior} and ${who} are the same; each needs its own`);
    owner.set(token, who);
    known.push({ digest: digest(token), principal });
  };
  if (opts.adminToken) owner.set(opts.adminToken, 'the admin');
  for (const [tenant, token] of Object.entries(opts.tokens)) if (token) add(token, { kind: 'tenant', tenant }, `tenant ${tenant}`);
  // The operator's token is asked for on each request: a token from the admin-token file changes when it is rotated.
  const adminToken = liveAdminToken(opts.adminToken);
  let admin: { token: string; digest: Buffer } | undefined;

  const byToken = (token: string): AuthResult => {
    const presented = digest(token);
    const current = adminToken();
    if (current !== admin?.token) admin = current === undefined ? undefined : { token: current, digest: digest(current) };
    let match: Principal | undefined;
    // Every entry is compared, so the time taken does not tell which one matched.
    if (admin && timingSafeEqual(admin.digest, presented)) match = { kind: 'admin' };
    for (const k of known) if (timingSafeEqual(k.digest, presented)) match = k.principal;
    return match ? { ok: true, principal: match } : { ok: false, error: 'invalid token' };
  };

  return {
    authenticate(req) {
      const header = req.headers.authorization;
      if (header === undefined || header === '') {
        const session = opts.sessions && (req.method === 'GET' || req.method === 'HEAD') ? opts.sessions.fromRequest(req) : undefined;
        if (session) {
          const who = byToken(session.token);
          // The token is gone from the configuration (or rotated): so is every session made from it.
          if (!who.ok) opts.sessions?.destroy(session.id);
          return who.ok ? who : { ok: false, error: 'session ended: sign in again' };
        }
        return { ok: false, error: 'missing bearer token' };
      }
      const token = bearerToken(header);
      if (token === undefined) return { ok: false, error: 'malformed Authorization header: expected "Bearer <token>"' };
      return byToken(token);
    },
    authenticateToken: byToken,
  };
}

export function sendUnauthorized(reply: FastifyReply, error: string): FastifyReply {
  return reply.status(401).header('www-authenticate', 'Bearer').send({ error, code: 'unauthorized' });
}

/**
 * The check of an operator-only route: true for the admin token only; the same rules as
 * the API's, so neither a tenant's token nor a loopback caller without one opens it.
 */
export function operatorCheck(adminToken: string | undefined): (req: FastifyRequest) => boolean {
  const auth = createAuthenticator({ tokens: {}, adminToken });
  return (req) => {
    const who = auth.authenticate(req);
    return who.ok && who.principal.kind === 'admin';
  };
}

/** Refuses a caller of an operator route who is not the operator. */
export function sendOperatorOnly(reply: FastifyReply): FastifyReply {
  return sendUnauthorized(reply, 'operator token required');
}

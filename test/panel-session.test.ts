/**
 * Panel sessions without a browser (api/session.ts, api/auth.ts): expiry on an injected
 * clock, the cookie's attributes, reads only, and a withdrawn token ending its sessions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createAuthenticator } from '../api/auth.js';
import { cookieValue, createSessionStore, csrfOk, setSessionCookie, clearSessionCookie, SESSION_COOKIE } from '../api/session.js';

const request = (opts: { cookie?: string; method?: string; protocol?: 'http' | 'https'; headers?: Record<string, string> }) =>
  ({ method: opts.method ?? 'GET', protocol: opts.protocol ?? 'http', headers: { ...(opts.cookie ? { cookie: `other=1; ${SESSION_COOKIE}=${opts.cookie}` } : {}), ...opts.headers } }) as unknown as FastifyRequest;

function replyRecorder() {
  const headers: Record<string, string> = {};
  const reply = { header: (k: string, v: string) => ((headers[k] = v), reply) } as unknown as FastifyReply;
  return { reply, headers };
}

test('a session lives until its expiry on the store’s clock, then is forgotten', () => {
  let now = 1_000_000;
  const store = createSessionStore({ ttlMs: 60_000, now: () => now });
  const s = store.create('tok');
  assert.equal(s.expires, 1_060_000);
  assert.equal(store.fromRequest(request({ cookie: s.id }))?.token, 'tok');
  now = 1_059_999;
  assert.equal(store.fromRequest(request({ cookie: s.id }))?.id, s.id);
  now = 1_060_000;
  assert.equal(store.fromRequest(request({ cookie: s.id })), undefined);
  assert.equal(store.size, 0);
  assert.equal(store.fromRequest(request({ cookie: 'forged' })), undefined);
  assert.equal(store.fromRequest(request({})), undefined);
});

test('the cookie: HttpOnly, SameSite=Strict, Max-Age of the session, Secure over TLS only; sign-out clears it', () => {
  const store = createSessionStore({ ttlMs: 3_600_000, now: () => 0 });
  const s = store.create('tok');
  const plain = replyRecorder();
  setSessionCookie(request({ protocol: 'http' }), plain.reply, s, 0);
  assert.equal(plain.headers['set-cookie'], `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600`);
  const tls = replyRecorder();
  setSessionCookie(request({ protocol: 'https' }), tls.reply, s, 0);
  assert.equal(tls.headers['set-cookie'], `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure`);
  const cleared = replyRecorder();
  clearSessionCookie(request({ protocol: 'https' }), cleared.reply);
  assert.equal(cleared.headers['set-cookie'], `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure`);
  assert.equal(cookieValue(`a=1; ${SESSION_COOKIE}=xyz; b=2`, SESSION_COOKIE), 'xyz');
  assert.equal(cookieValue(`x${SESSION_COOKIE}=xyz`, SESSION_COOKIE), undefined);
});

test('CSRF proof: only the session’s own token', () => {
  const store = createSessionStore();
  const s = store.create('tok');
  assert.equal(csrfOk(request({ headers: { 'x-logmeter-csrf': s.csrf } }), s), true);
  assert.equal(csrfOk(request({ headers: { 'x-logmeter-csrf': `${s.csrf}x` } }), s), false);
  assert.equal(csrfOk(request({ headers: { 'x-logmeter-csrf': store.create('tok').csrf } }), s), false);
  assert.equal(csrfOk(request({}), s), false);
});

test('the cookie authenticates reads only, as its token; a withdrawn token ends the session', () => {
  const store = createSessionStore();
  const tokens: Record<string, string> = { acme: 'acme-token-0123456789', globex: 'globex-token-0123456789' };
  const auth = createAuthenticator({ tokens, sessions: store });
  const s = store.create(tokens.acme!);
  assert.deepEqual(auth.authenticate(request({ cookie: s.id })), { ok: true, principal: { kind: 'tenant', tenant: 'acme' } });
  assert.deepEqual(auth.authenticate(request({ cookie: s.id, method: 'HEAD' })), { ok: true, principal: { kind: 'tenant', tenant: 'acme' } });
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) assert.deepEqual(auth.authenticate(request({ cookie: s.id, method })), { ok: false, error: 'missing bearer token' }, method);
  // A bearer token, when given, is what counts: the cookie never widens or changes it.
  assert.deepEqual(auth.authenticate(request({ cookie: s.id, headers: { authorization: `Bearer ${tokens.globex}` } })), { ok: true, principal: { kind: 'tenant', tenant: 'globex' } });
  // Without a session store (the API registered alone), a cookie is nothing.
  assert.deepEqual(createAuthenticator({ tokens }).authenticate(request({ cookie: s.id })), { ok: false, error: 'missing bearer token' });

  const stale = store.create('a-token-no-longer-configured');
  assert.deepEqual(auth.authenticate(request({ cookie: stale.id })), { ok: false, error: 'session ended: sign in again' });
  assert.equal(store.fromRequest(request({ cookie: stale.id })), undefined, 'forgotten');
});

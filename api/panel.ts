/**
 * The tenant panel at `/`: one static page and its client bundle (panel/src, TypeScript +
 * Preact + uPlot), and the session routes that turn a token into a cookie
 * (api/session.ts). Everything the panel shows it reads through `/api/v1`, with that
 * cookie; there is no other data path.
 *
 * The bundle is built by esbuild in memory the first time the panel is asked for
 * (0.1–0.2 s), so there is no build step, no artifact to go stale next to its sources,
 * and processes that never serve the panel never build it
 * (docs/decisions/2026-12-04-panel-view-library.md).
 *
 * Every response of the server carries a strict Content-Security-Policy: scripts, styles
 * and connections from this origin only, nothing inline, no framing.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from '../lib/logger.js';
import { errorMessage } from '../lib/errors.js';
import type { Authenticator } from './auth.js';
import { bodyField } from './params.js';
import { CSRF_HEADER, clearSessionCookie, csrfOk, setSessionCookie, type SessionStore } from './session.js';

export const PANEL_DIR = fileURLToPath(new URL('../panel/', import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The sign-in request's proof that it came from the panel's own script (a cross-site form cannot set a header). */
export const SIGNIN_PROOF = 'signin';

export interface PanelBundle {
  js: string;
  css: string;
}

/** Builds the client bundle from panel/src (esbuild, minified, no source maps). */
export async function buildPanel(dir = PANEL_DIR): Promise<PanelBundle> {
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [path.join(dir, 'src', 'main.tsx')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: '/panel-assets',
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
  });
  const file = (ext: string) => out.outputFiles.find((f) => f.path.endsWith(ext))?.text ?? '';
  return { js: file('.js'), css: file('.css') };
}

export function registerPanel(app: FastifyInstance, deps: { auth: Authenticator; sessions: SessionStore; tenants: string[]; logger: Logger }): void {
  let bundle: Promise<PanelBundle> | undefined;
  const assets = () => {
    if (!bundle) {
      const started = Date.now();
      bundle = buildPanel().then(
        (b) => {
          deps.logger.info({ ms: Date.now() - started, jsBytes: b.js.length, cssBytes: b.css.length }, 'panel bundle built');
          return b;
        },
        (err: unknown) => {
          bundle = undefined; // the next request tries again
          throw err;
        },
      );
    }
    return bundle;
  };

  app.addHook('onSend', async (_req, reply) => {
    void reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    void reply.header('x-content-type-options', 'nosniff');
    void reply.header('referrer-policy', 'no-referrer');
    void reply.header('x-frame-options', 'DENY');
  });

  const sendAsset = async (reply: FastifyReply, kind: 'js' | 'css') => {
    try {
      const b = await assets();
      return reply.header('content-type', kind === 'js' ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8').header('cache-control', 'no-cache').send(b[kind]);
    } catch (err) {
      deps.logger.error({ err }, 'panel bundle build failed');
      return reply.status(500).send({ error: `panel bundle build failed: ${errorMessage(err)}`, code: 'internal' });
    }
  };

  app.get('/', async (_req, reply) => {
    void assets().catch(() => undefined); // start building while the page travels
    const html = await readFile(path.join(PANEL_DIR, 'index.html'));
    return reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-cache').send(html);
  });
  app.get('/assets/panel.js', async (_req, reply) => sendAsset(reply, 'js'));
  app.get('/assets/panel.css', async (_req, reply) => sendAsset(reply, 'css'));

  app.get('/panel/session', async (req, reply) => {
    const s = deps.sessions.fromRequest(req);
    const who = s ? deps.auth.authenticateToken(s.token) : undefined;
    if (!s || !who?.ok) return reply.status(401).send({ error: 'not signed in', code: 'unauthorized' });
    const p = who.principal;
    return { principal: p, csrf: s.csrf, expires: new Date(s.expires).toISOString(), tenants: p.kind === 'admin' ? deps.tenants : [p.tenant] };
  });

  app.post('/panel/session', async (req, reply) => {
    if (req.headers[CSRF_HEADER] !== SIGNIN_PROOF) return reply.status(403).send({ error: `sign-in needs the ${CSRF_HEADER} header`, code: 'csrf' });
    const token = bodyField(req.body, 'token');
    if (typeof token !== 'string' || token.length === 0 || token.length > 1024) return reply.status(400).send({ error: 'token: required', code: 'bad_request' });
    const who = deps.auth.authenticateToken(token);
    if (!who.ok) return reply.status(401).send({ error: 'unknown token', code: 'unauthorized' });
    const s = deps.sessions.create(token);
    setSessionCookie(req, reply, s);
    deps.logger.info({ principal: who.principal.kind === 'admin' ? 'admin' : `tenant ${who.principal.tenant}` }, 'panel sign-in');
    return { principal: who.principal, csrf: s.csrf, expires: new Date(s.expires).toISOString() };
  });

  app.post('/panel/session/end', async (req, reply) => {
    const s = deps.sessions.fromRequest(req);
    if (s && !csrfOk(req, s)) return reply.status(403).send({ error: `sign-out needs the session's ${CSRF_HEADER} header`, code: 'csrf' });
    if (s) deps.sessions.destroy(s.id);
    clearSessionCookie(req, reply);
    return reply.status(204).send();
  });
}

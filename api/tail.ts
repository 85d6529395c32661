/**
 * `GET /api/v1/logs/tail`: the live tail of a log search as Server-Sent Events. It takes
 * the parameters of `/api/v1/logs` (api/logs.ts) and is scoped by the same code, so a
 * tail shows exactly what the search would; each new line or lifecycle entry is one
 * `data:` event holding the search's item JSON.
 *
 * How: once a second the search runs for the last LOOKBACK_MS (container time), oldest
 * first, and whatever event id was not sent yet is sent. Lines reach ClickHouse a little
 * after the time Docker stamped on them; the window lets them arrive that late and still
 * be shown, the set of sent ids keeps each one single. A line stored more than LOOKBACK_MS
 * after its own time is not tailed (the search still finds it).
 */
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { Logger } from '../lib/logger.js';
import { sendUnauthorized, type Authenticator } from './auth.js';
import { API_PREFIX } from './handler.js';
import { parseLogSearch, searchLogs, type LogSearch } from './logs.js';
import { ApiError, MAX_LIMIT } from './params.js';

export const TAIL_POLL_MS = 1000;
export const LOOKBACK_MS = 30_000;
const KEEPALIVE_MS = 15_000;

export function registerTailRoute(app: FastifyInstance, deps: { ch: ClickHouse; auth: Authenticator; logger: Logger; pollMs?: number }): void {
  const pollMs = deps.pollMs ?? TAIL_POLL_MS;
  const open = new Set<() => void>();
  // A tail never ends by itself: closing the server ends every tail, or close() would wait forever.
  app.addHook('onClose', (_app, done) => {
    for (const stop of open) stop();
    done();
  });

  app.get(`${API_PREFIX}/logs/tail`, async (req, reply) => {
    const who = deps.auth.authenticate(req);
    if (!who.ok) return sendUnauthorized(reply, who.error);
    let search: LogSearch;
    try {
      // Paging and a time range mean nothing to a tail: the window and the order are its own.
      const { cursor: _c, order: _o, from: _f, to: _t, limit: _l, ...rest } = (req.query ?? {}) as Record<string, unknown>;
      search = { ...parseLogSearch(rest, who.principal), order: 'asc', limit: MAX_LIMIT, cursor: undefined, to: undefined };
    } catch (err) {
      if (err instanceof ApiError) return reply.status(err.status).send({ error: err.message, code: err.code });
      throw err;
    }

    const sent = new Map<string, number>();
    const poll = async (emit: boolean): Promise<number> => {
      const now = Date.now();
      let emitted = 0;
      const { items } = await searchLogs(deps.ch, { ...search, from: now - LOOKBACK_MS });
      for (const item of items) {
        if (sent.has(item.event_id)) continue;
        sent.set(item.event_id, Date.parse(item.ts));
        if (!emit) continue;
        reply.raw.write(`data: ${JSON.stringify(item)}\n\n`);
        emitted++;
      }
      for (const [id, ts] of sent) if (ts < now - 2 * LOOKBACK_MS) sent.delete(id);
      return emitted;
    };
    // What is already there belongs to the listing, not to the tail.
    await poll(false);

    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no', 'x-content-type-options': 'nosniff' });
    reply.raw.write(': tail started\n\n');
    let timer: NodeJS.Timeout | undefined;
    let lastWrite = Date.now();
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      open.delete(stop);
      reply.raw.end();
    };
    open.add(stop);
    req.raw.on('close', stop);
    const tick = async () => {
      try {
        // A comment now and then keeps proxies from closing a quiet stream.
        if ((await poll(true)) > 0) lastWrite = Date.now();
        else if (Date.now() - lastWrite > KEEPALIVE_MS) {
          reply.raw.write(': keepalive\n\n');
          lastWrite = Date.now();
        }
      } catch (err) {
        deps.logger.error({ err, request: req.id }, 'log tail poll failed');
        reply.raw.write(`event: problem\ndata: ${JSON.stringify({ error: `tail interrupted (request ${req.id}); retrying` })}\n\n`);
      }
      if (!stopped) timer = setTimeout(() => void tick(), pollMs);
    };
    timer = setTimeout(() => void tick(), pollMs);
  });
}

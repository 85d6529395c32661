/**
 * How a tenant route answers: authentication first, then the handler; an ApiError
 * becomes its 4xx, anything else a 500 that names only the request id.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../lib/logger.js';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { sendUnauthorized, type Authenticator, type Principal } from './auth.js';
import { ApiError } from './params.js';

export const API_PREFIX = '/api/v1';

export type Handler = (principal: Principal, query: unknown, params: Record<string, string>) => Promise<unknown>;

/** What a resource module registers its GET routes with. */
export interface TenantRouter {
  ch: ClickHouse;
  /** Registers `GET /api/v1<path>`. */
  get(path: string, handler: Handler): void;
}

export function tenantRouter(app: FastifyInstance, ch: ClickHouse, auth: Authenticator, log: Logger): TenantRouter {
  return {
    ch,
    get(path, handler) {
      app.get(`${API_PREFIX}${path}`, async (req, reply) => {
        // Authentication comes first: an anonymous caller learns nothing, not even which parameters are wrong.
        const who = auth.authenticate(req);
        if (!who.ok) return sendUnauthorized(reply, who.error);
        try {
          return await handler(who.principal, req.query, req.params as Record<string, string>);
        } catch (err) {
          if (err instanceof ApiError) return reply.status(err.status).send({ error: err.message, code: err.code });
          // ClickHouse's messages quote our SQL: logged for the operator, not shown to tenants.
          log.error({ err, route: path, request: req.id }, 'API request failed');
          return reply.status(500).send({ error: `internal error (request ${req.id})`, code: 'internal' });
        }
      });
    },
  };
}

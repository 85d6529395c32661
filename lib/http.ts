/**
 * The process's HTTP surface: `/metrics` (Prometheus text), `/healthz`, and whatever
 * routes components register (the API under `/api/v1`). Fastify, one per process.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { Logger } from './logger.js';
import { splitHostPort } from './config.js';
import { errorMessage } from './errors.js';

/**
 * A check resolves when healthy and throws when not. Throwing a Degraded says the
 * component still works but not as it should (e.g. a stall it is recovering from):
 * `/healthz` answers 503 with status `degraded` and the reason, unless another check
 * fails outright (`unhealthy`).
 */
export type HealthCheck = () => Promise<void>;

export class Degraded extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Degraded';
  }
}

export interface HttpServer {
  readonly app: FastifyInstance;
  /** Adds a named readiness check run by `/healthz`. */
  addHealthCheck(name: string, check: HealthCheck): void;
  /**
   * Adds what a component is doing to `/healthz` (`details.<name>`), whatever its health:
   * `/healthz` is open to anyone who reaches the port, so no tenant data in it. A promise
   * (a detail asked of another thread) is awaited; it must not reject.
   */
  addHealthDetail(name: string, detail: () => unknown): void;
  /**
   * Adds metrics kept elsewhere (another thread's registry, as `getMetricsAsJSON()` gives
   * them) to `/metrics`: merged with the process's registry, values of one name and labels added up.
   */
  addMetrics(source: () => Promise<MetricObjectWithValues<MetricValue<string>>[]>): void;
  listen(): Promise<string>;
  close(): Promise<void>;
}

export function createHttpServer(opts: { listen: string; registry: Registry; logger: Logger }): HttpServer {
  const loggerInstance: FastifyBaseLogger = opts.logger;
  const app: FastifyInstance = Fastify({ loggerInstance, disableRequestLogging: true, bodyLimit: 1024 * 1024 });
  const checks = new Map<string, HealthCheck>();
  const details = new Map<string, () => unknown>();
  const sources: Array<() => Promise<MetricObjectWithValues<MetricValue<string>>[]>> = [];

  app.setErrorHandler((err: { statusCode?: number; message: string; code?: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) opts.logger.error({ err }, 'request failed');
    void reply.status(status).send({ error: err.message, code: err.code ?? (status >= 500 ? 'internal' : 'bad_request') });
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.status(404).send({ error: 'not found', code: 'not_found' });
  });

  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', opts.registry.contentType);
    if (sources.length === 0) return opts.registry.metrics();
    const all = await Promise.all([opts.registry.getMetricsAsJSON(), ...sources.map((s) => s())]);
    return AggregatorRegistry.aggregate(all).metrics();
  });

  app.get('/healthz', async (_req, reply) => {
    const results: Record<string, string> = {};
    let unhealthy = false;
    let degraded = false;
    await Promise.all(
      [...checks].map(async ([name, check]) => {
        try {
          await check();
          results[name] = 'ok';
        } catch (err) {
          if (err instanceof Degraded) degraded = true;
          else unhealthy = true;
          results[name] = err instanceof Degraded ? `degraded: ${err.message}` : errorMessage(err);
        }
      }),
    );
    void reply.status(unhealthy || degraded ? 503 : 200);
    const status = unhealthy ? 'unhealthy' : degraded ? 'degraded' : 'ok';
    if (details.size === 0) return { status, checks: results };
    // A detail may come from another thread (app/thread-host.ts): awaited, all at once.
    return { status, checks: results, details: Object.fromEntries(await Promise.all([...details].map(async ([name, d]) => [name, await d()] as const))) };
  });

  return {
    app,
    addHealthCheck: (name, check) => void checks.set(name, check),
    addHealthDetail: (name, detail) => void details.set(name, detail),
    addMetrics: (source) => void sources.push(source),
    async listen() {
      const { host, port } = splitHostPort(opts.listen);
      return app.listen({ host, port });
    },
    close: () => app.close(),
  };
}

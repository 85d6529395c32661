/**
 * Access-log parser: lines of containers whose `log-format` label names a known format
 * become HttpRequest events on the http topic (the log sink writes them to
 * `http_requests`). A line that does not parse is counted by reason and stays what it
 * is, an ordinary log line. Offsets are committed after the http events are
 * acknowledged; the event id derives from the line's, so a replay repeats, not adds.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import { counter } from '../../lib/metrics.js';
import type { HttpRequest, LogLine } from '../../schemas/events.js';
import { eventId } from '../../ingest/identity.js';
import { isAccessLogFormat, parseAccessLine, type ParserOptions } from './parse.js';

export interface AccessLogDeps {
  bus: EventBus;
  logger: Logger;
  registry: Registry;
  parser?: ParserOptions;
}

/** The HttpRequest of an access line, or the reason it is not one. */
export function toHttpRequest(e: LogLine, opts?: ParserOptions): { request: HttpRequest } | { skip: 'no_format' | 'unknown_format' } | { failed: string; reason: string } {
  const format = e.log_format;
  if (!format) return { skip: 'no_format' };
  if (!isAccessLogFormat(format)) return { skip: 'unknown_format' };
  const r = parseAccessLine(format, e.line.toString('utf8'), opts);
  if (!r.ok) return { failed: r.code, reason: r.reason };
  const p = r.request;
  return {
    request: {
      event_id: eventId('http', e.event_id),
      tenant: e.tenant,
      app: e.app,
      node: e.node,
      container_id: e.container_id,
      ts: p.ts ?? e.ts,
      source_event_id: e.event_id,
      format,
      host: p.host,
      method: p.method,
      path: p.path,
      status: p.status,
      bytes: p.bytes,
      request_time_ms: p.request_time_ms,
      upstream_time_ms: p.upstream_time_ms,
      queue_time_ms: p.queue_time_ms,
      backend_queue: p.backend_queue,
      server_queue: p.server_queue,
      backend: p.backend,
      server: p.server,
      client_ip: p.client_ip,
    },
  };
}

export async function startAccessLogParser(deps: AccessLogDeps): Promise<Subscription> {
  const log = deps.logger.child({ component: 'access-log' });
  const parsed = counter(deps.registry, 'logmeter_access_lines_parsed_total', 'Access-log lines parsed into HTTP requests', ['format']);
  const failed = counter(deps.registry, 'logmeter_access_lines_unparsed_total', 'Access-log lines that did not parse (kept as log lines)', ['format', 'reason']);
  const unknown = new Set<string>();
  const sub = await deps.bus.subscribe({
    group: 'access-log',
    topics: ['logs'],
    concurrency: 4,
    handle: async (batch) => {
      const out: HttpRequest[] = [];
      for (const m of batch) {
        const r = toHttpRequest(m.event, deps.parser);
        if ('request' in r) {
          out.push(r.request);
          parsed.inc({ format: r.request.format });
        } else if ('failed' in r) {
          failed.inc({ format: m.event.log_format ?? '', reason: r.failed });
          log.debug({ container: m.event.container_name, reason: r.reason }, 'access line not parsed');
        } else if (r.skip === 'unknown_format' && !unknown.has(m.event.log_format ?? '')) {
          unknown.add(m.event.log_format ?? '');
          log.warn({ format: m.event.log_format, container: m.event.container_name }, 'unknown log-format label; lines kept as ordinary logs');
        }
      }
      await deps.bus.publish('http', out.map((event) => ({ event })));
    },
  });
  log.info('access-log parser started');
  return sub;
}

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
import type { HttpRequest } from '../../schemas/events.js';
import { ACCESS_LOG_PROCESSOR, type ParserOptions } from './config.js';
import { toHttpRequest } from './http-event.js';
import { accessLogMetrics } from './telemetry.js';

export interface AccessLogDeps {
  bus: EventBus;
  logger: Logger;
  registry: Registry;
  parser?: ParserOptions;
}

export async function startAccessLogParser(deps: AccessLogDeps): Promise<Subscription> {
  const log = deps.logger.child({ component: 'access-log' });
  const metrics = accessLogMetrics(deps.registry);
  const unknown = new Set<string>();
  const sub = await deps.bus.subscribe({
    group: ACCESS_LOG_PROCESSOR.group,
    topics: [ACCESS_LOG_PROCESSOR.from],
    concurrency: ACCESS_LOG_PROCESSOR.concurrency,
    handle: async (batch) => {
      const out: HttpRequest[] = [];
      for (const m of batch) {
        const r = toHttpRequest(m.event, deps.parser);
        if ('request' in r) {
          out.push(r.request);
          metrics.parsed.inc({ format: r.request.format });
        } else if ('failed' in r) {
          metrics.unparsed.inc({ format: m.event.log_format ?? '', reason: r.failed });
          log.debug({ container: m.event.container_name, reason: r.reason }, 'access line not parsed');
        } else if (r.skip === 'unknown_format' && !unknown.has(m.event.log_format ?? '')) {
          unknown.add(m.event.log_format ?? '');
          log.warn({ format: m.event.log_format, container: m.event.container_name }, 'unknown log-format label; lines kept as ordinary logs');
        }
      }
      await deps.bus.publish(ACCESS_LOG_PROCESSOR.to, out.map((event) => ({ event })));
    },
  });
  log.info('access-log parser started');
  return sub;
}

/**
 * Access-log parser: lines of containers whose `log-format` label names a known format
 * become HttpRequest events on the http topic (the log sink writes them to
 * `http_requests`). A line that does not parse is counted by reason and stays what it
 * is, an ordinary log line. Offsets are committed after the http events are
 * acknowledged; the event id derives from the line's, so a replay repeats, not adds.
 *
 * Scale-out: run 1…N instances with one config; they form group `access-log` and split
 * the logs partitions. Nothing here needs to run alone.
 * - Keys: reads logs keyed by container; writes http keyed by the app a request counts
 *   for: its own `tenant/app`, and for the load balancer's requests (`routing.lbApp`)
 *   the app whose `lb-host` label claims the request's host (its backend name when the
 *   log has none). A request for a host no app claims yet keeps the load balancer's
 *   key; the autoscale processor counts it only when one instance owns every partition.
 *   So all of an app's requests are on one http partition, and one autoscale instance
 *   owns the app.
 * - State: only the lifecycle table (lb hosts), which every instance reads whole from
 *   the topic before it parses and then follows (a few events per container). Parsing
 *   is stateless.
 * - What N buys: the parsing CPU split by logs partition (up to one instance per
 *   partition); each instance also reads the whole lifecycle topic.
 * - Rebalance: only partitions move; the new owner starts at the group's committed
 *   offset. Lines handled but not committed by an instance that died (SIGKILL) are
 *   parsed again by the next owner: the same events with the same ids, content and keys
 *   (exact copies, removed downstream by event id; a key follows the lb-host claims
 *   known when its line is parsed), nothing lost.
 */
import { randomBytes } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus, Subscription, TopicReader } from '../../lib/bus/bus.js';
import { Fleet } from '../autoscale/fleet.js';
import type { HttpRequest } from '../../schemas/events.js';
import { ACCESS_LOG_PROCESSOR, type ParserOptions } from './config.js';
import { toHttpRequest } from './http-event.js';
import { accessLogMetrics } from './telemetry.js';

export interface AccessLogDeps {
  bus: EventBus;
  logger: Logger;
  registry: Registry;
  parser?: ParserOptions;
  /**
   * Keys the load balancer's requests by the app they were routed to (see the header):
   * its app (`autoscale.lbApp`) and the collector's label prefix. Without it, every
   * request is keyed by its own app.
   */
  routing?: { lbApp: string; labelPrefix: string };
}

export async function startAccessLogParser(deps: AccessLogDeps): Promise<Subscription> {
  const log = deps.logger.child({ component: 'access-log' });
  const metrics = accessLogMetrics(deps.registry);
  const unknown = new Set<string>();
  let lifecycle: TopicReader | undefined;
  let keyOf = (r: HttpRequest): string => `${r.tenant}/${r.app}`;
  const routing = deps.routing;
  if (routing) {
    const fleet = new Fleet(routing.labelPrefix, routing.lbApp);
    lifecycle = await deps.bus.readToEnd({
      topic: 'lifecycle',
      group: `access-log-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}-lifecycle`,
      handle: (batch) => {
        for (const m of batch) fleet.apply(m.event);
        return Promise.resolve();
      },
    });
    try {
      await lifecycle.caughtUp;
    } catch (err) {
      await lifecycle.stop();
      throw err;
    }
    keyOf = (r) => {
      const app = `${r.tenant}/${r.app}`;
      if (app !== routing.lbApp) return app;
      return fleet.appForHost(r.host) ?? (r.backend ? fleet.appForHost(r.backend) : undefined) ?? app;
    };
  }
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
      await deps.bus.publish(ACCESS_LOG_PROCESSOR.to, out.map((event) => ({ event, key: keyOf(event) })));
    },
  }).catch(async (err: unknown) => {
    await lifecycle?.stop();
    throw err;
  });
  log.info({ routing: Boolean(routing) }, 'access-log parser started');
  return {
    group: sub.group,
    stop: async () => {
      await sub.stop();
      await lifecycle?.stop();
    },
  };
}

/**
 * A log line → the HttpRequest event it stands for. Pure: the event id derives from the
 * line's, so a replayed line yields the same event (a repeat, not an addition).
 */
import type { HttpRequest, LogLine } from '../../schemas/events.js';
import { eventId } from '../../lib/event-id.js';
import type { ParserOptions } from './config.js';
import { isAccessLogFormat, parseAccessLine } from './parse.js';

/** The HttpRequest of an access line, or the reason it is not one. */
export function toHttpRequest(e: LogLine, opts?: ParserOptions): { request: HttpRequest } | { skip: 'no_format' | 'unknown_format' } | { failed: string; reason: string } {
  const format = e.log_format;
  if (!format) return { skip: 'no_format' };
  if (!isAccessLogFormat(format)) return { skip: 'unknown_format' };
  const r = parseAccessLine(format, e.line.toString('utf8'), opts);
  if (!r.ok) return { failed: r.code, reason: r.reason };
  return {
    request: {
      ...r.request,
      event_id: eventId('http', e.event_id),
      tenant: e.tenant,
      app: e.app,
      node: e.node,
      container_id: e.container_id,
      ts: r.request.ts ?? e.ts,
      source_event_id: e.event_id,
      format,
    },
  };
}

/**
 * Log events as the collector writes them, for the sink benchmark: several tenants,
 * apps and containers; a share of access lines (nginx combined, labelled with their
 * format, so the sink's access/debug classification parses them) and the rest ordinary
 * application lines of about 120 bytes.
 */
import { eventId } from '../../lib/event-id.js';
import type { LogLine } from '../../schemas/events.js';
import { makeLine, prng } from './lines.js';

function nginxLine(i: number, rnd: () => number): string {
  const ms = Math.floor(rnd() * 900);
  return `203.0.113.${i % 250} - - [26/Nov/2026:08:${String(i % 60).padStart(2, '0')}:57 +0000] "GET /products/${Math.floor(rnd() * 100_000)}?color=red HTTP/1.1" ${rnd() < 0.97 ? 200 : 504} ${Math.floor(rnd() * 20_000)} "https://shop.acme.test/" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0" 0.${String(ms).padStart(3, '0')}`;
}

/**
 * `count` log events; `from` numbers them on from an earlier call (a recording made in
 * chunks), `apps` is how many apps the containers are spread over (default 5; each
 * tenant/app pair is one key of the http topic).
 */
export function makeLogEvents(count: number, opts: { accessShare?: number; containers?: number; apps?: number; startMs?: number; seed?: number; from?: number } = {}): LogLine[] {
  const rnd = prng(opts.seed ?? 7);
  const nContainers = opts.containers ?? 20;
  const nApps = opts.apps ?? 5;
  const from = opts.from ?? 0;
  const accessShare = opts.accessShare ?? 0.3;
  const start = opts.startMs ?? Date.now() - 3_600_000;
  const containers = Array.from({ length: nContainers }, (_, c) => ({
    id: eventId('bench-container', c).padEnd(64, '0'),
    name: `app${c % 5}-${c}`,
    tenant: `tenant${c % 4}`,
    app: `app${c % nApps}`,
    access: c < Math.round(nContainers * accessShare),
  }));
  const events: LogLine[] = [];
  for (let i = from; i < from + count; i++) {
    const c = containers[i % nContainers]!;
    const ts = start + Math.floor(i / 20);
    const seq = i % 20;
    const text = c.access ? nginxLine(i, rnd) : makeLine(i, 120, rnd);
    const line = Buffer.from(text, 'utf8');
    events.push({
      event_id: eventId(c.id, 'stdout', ts, seq, i),
      tenant: c.tenant,
      app: c.app,
      node: 'bench-node',
      container_id: c.id,
      container_name: c.name,
      ts,
      ts_nanos: (i * 7919) % 1_000_000,
      seq,
      stream: i % 10 === 0 ? 'stderr' : 'stdout',
      tty: false,
      line,
      original_length: line.length,
      truncated: false,
      invalid_utf8: false,
      log_format: c.access ? 'nginx-combined' : null,
    });
  }
  return events;
}

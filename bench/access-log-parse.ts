/**
 * Parse throughput of each access-log format on one core:
 * `node --import tsx bench/access-log-parse.ts [seconds per format, default 2]`.
 * Lines vary (paths, sizes, optional fields) so no single shape is all the JIT sees.
 */
import { ACCESS_LOG_FORMATS, parseAccessLine, type AccessLogFormat } from '../processors/access-log/parse.js';

const VARIANTS = 1024;
const seconds = Number(process.argv[2] ?? 2);

function nginxLine(i: number): string {
  const upstream = i % 4 === 0 ? '' : i % 4 === 1 ? ' -' : i % 4 === 2 ? ` 0.0${i % 90 + 10}` : ` 0.010, 0.0${i % 90 + 10}`;
  const host = i % 3 === 0 ? '' : ` "shop${i % 7}.acme.test"`;
  return `203.0.113.${i % 250} - - [26/Nov/2026:08:${String(i % 60).padStart(2, '0')}:57 +0000] "GET /products/${i}?color=red HTTP/1.1" 200 ${i * 37} "https://shop.acme.test/" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0" 0.${String(i % 1000).padStart(3, '0')}${upstream}${host}`;
}

function jsonLine(i: number): string {
  return JSON.stringify({
    time: `2026-11-26T08:45:${String(i % 60).padStart(2, '0')}.123Z`,
    remote_addr: `203.0.113.${i % 250}`,
    host: `shop${i % 7}.acme.test`,
    method: 'GET',
    path: `/products/${i}`,
    status: 200,
    bytes: i * 37,
    request_time: (i % 1000) / 1000,
    upstream_time: (i % 900) / 1000,
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0',
  });
}

function haproxyLine(i: number): string {
  const header = i % 2 === 0 ? '' : '<134>Nov 26 08:45:57 haproxy[12]: ';
  const capture = i % 3 === 0 ? '' : ` {shop${i % 7}.acme.test|Mozilla/5.0}`;
  return `${header}10.0.${i % 250}.2:${30000 + i} [26/Nov/2026:08:45:57.${String(i % 1000).padStart(3, '0')}] fe_http be_shop/srv${i % 4} 0/${i % 5}/1/${i % 90}/${i % 90 + 3} 200 ${i * 37} - - ---- 10/10/4/1/0 0/${i % 3}${capture} "GET /products/${i} HTTP/1.1"`;
}

const makers: Record<AccessLogFormat, (i: number) => string> = { 'nginx-combined': nginxLine, json: jsonLine, haproxy: haproxyLine };

for (const format of ACCESS_LOG_FORMATS) {
  const lines = Array.from({ length: VARIANTS }, (_, i) => makers[format](i));
  for (const line of lines) {
    const r = parseAccessLine(format, line);
    if (!r.ok) throw new Error(`bench line does not parse (${r.reason}): ${line}`);
  }
  // Warm up so the figure is the optimised code, not the interpreter.
  for (let i = 0; i < 200_000; i++) parseAccessLine(format, lines[i % VARIANTS] ?? '');

  let n = 0;
  let sink = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < VARIANTS; i++) {
      const r = parseAccessLine(format, lines[i] ?? '');
      if (r.ok) sink += r.request.status;
    }
    n += VARIANTS;
    elapsed = process.hrtime.bigint() - start;
  }
  // Reading every result keeps the JIT from dropping the parse as dead code.
  if (sink === 0) throw new Error('no line parsed');
  const perSecond = n / (Number(elapsed) / 1e9);
  const avgBytes = lines.reduce((a, l) => a + l.length, 0) / lines.length;
  process.stdout.write(`${format.padEnd(15)} ${Math.round(perSecond).toLocaleString('en-US').padStart(11)} lines/s  (${Math.round(avgBytes)} B/line, ${((perSecond * avgBytes) / 1e6).toFixed(0)} MB/s)\n`);
}

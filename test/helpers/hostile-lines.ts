/**
 * Hostile log lines (every byte value, separators, escapes, invalid UTF-8, markup, a
 * 512 KiB line) as log events: the insert formats' round-trip cases (sink-tsv.test.ts,
 * sink-columns.test.ts).
 */
import type { LogLine } from '../../schemas/events.js';

const all256 = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
/** 512 KiB of every byte value, in a fixed pseudo-random order. */
const long = Buffer.alloc(512 * 1024);
for (let i = 0, x = 7; i < long.length; i++) {
  x = (x * 1103515245 + 12345) >>> 0;
  long[i] = x >>> 24;
}
export const HOSTILE: Array<[name: string, line: Buffer]> = [
  ['tabs and newlines', Buffer.from('a\tb\nc\r\nd\t\t\n')],
  ['backslashes', Buffer.from('\\ \\\\ \\t \\n \\N \\0 \\x41 \\xZZ \\')],
  ['only \\N', Buffer.from('\\N')],
  ['NUL bytes', Buffer.from([0x61, 0x00, 0x62, 0x00, 0x00])],
  ['invalid UTF-8', Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0x20, 0x80, 0xc3, 0x28, 0xe2, 0x82, 0x09, 0xf0, 0x9f, 0x98])],
  ['overlong and surrogate encodings', Buffer.from([0xc0, 0xaf, 0xe0, 0x80, 0xaf, 0xed, 0xa0, 0x80, 0x5c])],
  ['valid UTF-8, several scripts and an emoji', Buffer.from('Grüße, 日本語, مرحبا, 😀\t\\é')],
  ['HTML and script', Buffer.from('<script>alert("x")</script><img src=x onerror=alert(1)>&amp;')],
  ['ANSI escape sequences', Buffer.from('\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J')],
  ['SQL and JSON look-alikes', Buffer.from(`'); DROP TABLE logs; -- {"a":"\\u0000"} \`x\``)],
  ['every byte value', all256],
  ['empty', Buffer.alloc(0)],
  ['ends with a backslash', Buffer.from('trailing\\')],
  ['512 KiB of random bytes', long],
];
const T0 = Date.parse('2026-12-04T10:00:00.000Z');
const CONTAINER = 'c'.repeat(64);

export function hostileEvents(tag: string): LogLine[] {
  return HOSTILE.map(([name, line], i) => ({
    event_id: `${tag}-${i}`,
    tenant: 'acme',
    app: 'shop',
    node: 'node-t',
    container_id: CONTAINER,
    // Other string columns carry escapes too.
    container_name: i === 0 ? 'web\t1\n\\x00' : `web-${i}`,
    ts: T0 + i * 1001 + 7,
    ts_nanos: (i * 7919) % 1_000_000,
    seq: i,
    stream: i % 2 === 0 ? 'stdout' : 'stderr',
    tty: i % 3 === 0,
    line,
    original_length: line.length + i,
    truncated: name.startsWith('512'),
    invalid_utf8: name.includes('invalid'),
    log_format: i === 7 ? 'nginx-combined' : null,
  }));
}

/** The columns read back, the line as hex, times as epoch ms. */
export const COLUMNS = 'event_id, tenant, app, node, container_id, container_name, toUnixTimestamp64Milli(ts) AS ts, ts_nanos, seq, stream, tty, hex(line) AS line_hex, original_length, truncated, invalid_utf8, log_format, kind';
export type Row = Record<string, unknown> & { event_id: string; line_hex: string };

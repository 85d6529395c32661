/**
 * `logmeter logs --tenant T …`: a tenant's log lines and lifecycle events, oldest to
 * newest, as `<ts> <tenant>/<app> <container> <stream>: <line>` (lifecycle events show
 * their kind, start or operation, where a line shows its stream).
 *
 * Reads through the running process's API (`GET /api/v1/logs`, cli/client.ts) because
 * that process holds the embedded ClickHouse; when no process answers it queries
 * ClickHouse directly with the same code the API runs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { answerOf, callIfRunning, callProcess, errorOf, openClickHouseDirectly, type ProcessAnswer, type ProcessCall } from './client.js';
import { compareCursors, encodeCursor, type Cursor } from '../api/cursor.js';
import { logItemCursor, parseLogSearch, searchLogs, type LogItem } from '../api/logs.js';
import { ApiError, MAX_LIMIT } from '../api/params.js';
import { parseTime } from '../api/time.js';

export interface LogsOptions {
  tenant: string;
  app?: string | undefined;
  container?: string | undefined;
  stream?: string | undefined;
  kind?: string | undefined;
  /** A duration ago (`10m`) or an ISO 8601 time. */
  since?: string | undefined;
  grep?: string | undefined;
  /** How many of the newest matching lines to print first. Default 100. */
  limit?: string | undefined;
  follow?: boolean | undefined;
  /** Print control characters as `\xNN` (set when stdout is a terminal, unless `--raw`). */
  escape?: boolean | undefined;
}

type Page = { items: LogItem[]; next_cursor: string | null };

interface LogSource {
  page(params: Record<string, string>, signal?: AbortSignal): Promise<Page>;
  close(): Promise<void>;
}

/** Polling interval of `--follow`. */
export const FOLLOW_INTERVAL_MS = 1000;
/**
 * How far behind the newest printed line `--follow` keeps looking: a line that reaches
 * ClickHouse late (sink batching, a slow node) but within this window is still printed
 * (once: printed ids within the window are remembered).
 */
export const FOLLOW_GRACE_MS = 5000;

export function logsCommand(program: Command, config: () => Config): void {
  program
    .command('logs')
    .description("print a tenant's log lines and lifecycle events, oldest to newest")
    .requiredOption('--tenant <tenant>', 'the tenant')
    .option('--app <app>', 'only this app')
    .option('--container <container>', 'only this container (name, id or id prefix of 12+ characters)')
    .option('--stream <stream>', 'stdout or stderr (container output only)')
    .option('--kind <kind>', 'access, debug, start or operation')
    .option('--since <when>', 'from this time: a duration ago (10m, 2h, 7d) or ISO 8601')
    .option('--grep <text>', 'only lines containing this text (literal; ASCII letters case-insensitive)')
    .option('--limit <n>', 'print at most the n newest matching lines first', '100')
    .option('--follow', 'then keep printing new lines as they arrive (Ctrl-C stops)')
    .option('--raw', 'print control characters as stored even on a terminal (they are escaped there by default)')
    .action(async (opts: LogsOptions & { raw?: boolean }) => {
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        // A tenant's line must not drive the operator's terminal (colours, cursor moves, OSC
        // title or clipboard sequences): on a terminal its control characters are shown, not sent.
        await runLogs(config(), { ...opts, escape: Boolean(process.stdout.isTTY) && !opts.raw }, (s) => process.stdout.write(s), stop.signal);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

export function formatLine(item: LogItem, escape = false): string {
  const container = item.container_name || item.container_id.slice(0, 12);
  const line = escape ? escapeControls(item.line) : item.line;
  return `${item.ts} ${item.tenant}/${item.app} ${container} ${item.stream ?? item.kind}: ${line}\n`;
}

/** C0 controls but tab, DEL and C1 controls as `\xNN`; a backslash before `x` doubled so the output stays unambiguous. */
export function escapeControls(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const control = (c < 0x20 && c !== 0x09) || (c >= 0x7f && c <= 0x9f);
    const ambiguous = c === 0x5c && s.charCodeAt(i + 1) === 0x78; // a backslash before "x"
    if (!control && !ambiguous) continue;
    out += s.slice(from, i) + (ambiguous ? '\\\\' : `\\x${c.toString(16).padStart(2, '0')}`);
    from = i + 1;
  }
  return out + s.slice(from);
}

/** Prints the tail, then with `follow` new lines until `signal` aborts. */
export async function runLogs(cfg: Config, opts: LogsOptions, write: (s: string) => void, signal?: AbortSignal): Promise<void> {
  const limit = Number(opts.limit ?? '100');
  if (!/^\d+$/.test(opts.limit ?? '100') || limit < 1) throw new LogmeterError('bad_argument', `--limit: expected a positive integer, got ${opts.limit}`);
  const base: Record<string, string> = { tenant: opts.tenant };
  for (const [param, value] of [['app', opts.app], ['container', opts.container], ['stream', opts.stream], ['kind', opts.kind], ['q', opts.grep]] as const) {
    if (value !== undefined) base[param] = value;
  }
  if (opts.since !== undefined) {
    const t = parseTime(opts.since);
    if (t === undefined) throw new LogmeterError('bad_argument', `--since: expected a duration ago (10m, 2h, 7d) or an ISO 8601 time, got "${opts.since}"`);
    // Absolute, so `--follow` keeps one starting point however long it runs.
    base.from = new Date(t).toISOString();
  }
  // The API's own validation, so both ways refuse the same arguments with the same words.
  try {
    parseLogSearch(base, { kind: 'admin' });
  } catch (err) {
    if (err instanceof ApiError) throw new LogmeterError('bad_argument', err.message.replace(/^q:/, '--grep:'));
    throw err;
  }

  const source = (await throughRunningProcess(cfg, { ...base, limit: '1' }, signal)) ?? openDirect(cfg);
  try {
    await printLogs(source, base, limit, Boolean(opts.follow), Boolean(opts.escape), write, signal);
  } finally {
    await source.close();
  }
}

async function printLogs(source: LogSource, base: Record<string, string>, limit: number, follow: boolean, escape: boolean, write: (s: string) => void, signal?: AbortSignal): Promise<void> {
  const key = (item: LogItem): Cursor => logItemCursor(item);
  const seen = new Map<string, number>();
  const print = (item: LogItem) => {
    seen.set(item.event_id, key(item).ts);
    write(formatLine(item, escape));
  };

  // The tail: the newest `limit` rows, fetched newest first, printed oldest first.
  const tail: LogItem[] = [];
  let cursor: string | null = null;
  let more = false;
  do {
    const page = await source.page({ ...base, limit: String(Math.min(MAX_LIMIT, limit - tail.length)), ...(cursor ? { cursor } : {}) }, signal);
    tail.push(...page.items);
    cursor = page.next_cursor;
    more = cursor !== null;
  } while (more && tail.length < limit);
  tail.reverse().forEach(print);
  if (!follow) return;

  const startedAt = Date.now();
  let newest = tail.length ? key(tail[tail.length - 1]!) : undefined;
  // Rows older than the tail's oldest were left out on purpose (--limit); never print them later.
  const floor = more && tail.length ? key(tail[0]!) : undefined;
  while (!signal?.aborted) {
    await sleep(FOLLOW_INTERVAL_MS, undefined, signal ? { signal } : {}).catch(() => undefined);
    if (signal?.aborted) break;
    const windowStart = (newest?.ts ?? startedAt) - FOLLOW_GRACE_MS;
    const from: Cursor = floor && floor.ts >= windowStart ? floor : { ts: windowStart, id: '' };
    let next: string | null = encodeCursor(from);
    try {
      while (next !== null) {
        const page = await source.page({ ...base, order: 'asc', limit: String(MAX_LIMIT), cursor: next }, signal);
        for (const item of page.items) {
          if (seen.has(item.event_id)) continue;
          print(item);
          const k = key(item);
          if (!newest || compareCursors(k, newest) > 0) newest = k;
        }
        next = page.next_cursor;
      }
    } catch (err) {
      if (signal?.aborted) break;
      throw err;
    }
    // Ids older than the window cannot come back (every poll starts inside it).
    const keepFrom = (newest?.ts ?? startedAt) - FOLLOW_GRACE_MS;
    for (const [id, ts] of seen) if (ts < keepFrom) seen.delete(id);
  }
}

const logsCall = (params: Record<string, string>, signal?: AbortSignal): ProcessCall => ({ path: '/api/v1/logs', query: params, signal });

function pageFrom(cfg: Config, answer: ProcessAnswer): Page {
  if (!answer.ok) {
    const hint = answer.status === 401 ? ' (set LOGMETER_ADMIN_TOKEN to the token of the running process)' : '';
    throw new LogmeterError('logs_failed', `logmeter process on ${cfg.http.listen}: ${errorOf(answer.text) ?? answer.text}${hint}`);
  }
  return JSON.parse(answer.text) as Page;
}

/** A source over the running process's API, or undefined when no process serves it on LOGMETER_HTTP. */
async function throughRunningProcess(cfg: Config, probe: Record<string, string>, signal?: AbortSignal): Promise<LogSource | undefined> {
  const first = await callIfRunning(cfg, logsCall(probe, signal), 'logs_failed');
  if (first === undefined) return undefined;
  pageFrom(cfg, first);
  return {
    page: async (params, sig) => pageFrom(cfg, await answerOf(await callProcess(cfg, logsCall(params, sig)))),
    close: () => Promise.resolve(),
  };
}

function openDirect(cfg: Config): LogSource {
  const ch = openClickHouseDirectly(cfg, createLogger('warn', 2));
  return {
    async page(params) {
      try {
        return await searchLogs(ch, parseLogSearch(params, { kind: 'admin' }));
      } catch (err) {
        if (/UNKNOWN_(TABLE|DATABASE)|does not exist/i.test(`${(err as { type?: string }).type ?? ''} ${errorMessage(err)}`)) {
          throw new LogmeterError('no_logs', `no logs stored in ClickHouse database ${cfg.clickhouse.database} yet (its tables are created when logmeter up or logmeter api starts)`);
        }
        throw err;
      }
    },
    close: () => ch.close(),
  };
}

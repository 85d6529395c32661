/**
 * The CLI's way to the running logmeter process (`logs`, `sql`, `report`): only one
 * process may open the embedded ClickHouse, so a command asks the process that holds it,
 * on LOGMETER_HTTP, with the admin token when one is configured (without one the
 * process trusts loopback callers). Nothing listening there, or a 404 (something else
 * listens, or a logmeter process without the route: the collector), means no process
 * serves it: the command falls back to opening ClickHouse itself.
 */
import type { Config } from '../app/config.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { clickHouseOptions, openClickHouse, type ClickHouse } from '../lib/clickhouse/client.js';

export interface ProcessCall {
  /** Path under the process's address, with `/api/v1`. */
  path: string;
  query?: Record<string, string>;
  /** Sent as JSON with POST; without it the call is a GET. */
  body?: unknown;
  /** Default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** The answer of a call, read in full. */
export interface ProcessAnswer {
  ok: boolean;
  status: number;
  text: string;
}

/** Calls the running process; a failure to reach it is thrown as fetch throws it. */
export async function callProcess(cfg: Config, call: ProcessCall): Promise<Response> {
  const timeout = AbortSignal.timeout(call.timeoutMs ?? 60_000);
  const query = call.query ? `?${new URLSearchParams(call.query).toString()}` : '';
  const auth: Record<string, string> = cfg.api.adminToken ? { authorization: `Bearer ${cfg.api.adminToken}` } : {};
  return fetch(`http://${cfg.http.listen}${call.path}${query}`, {
    ...(call.body === undefined ? { headers: auth } : { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(call.body) }),
    signal: call.signal ? AbortSignal.any([call.signal, timeout]) : timeout,
  });
}

/**
 * The answer of the running process, or undefined when none serves `call.path` on
 * LOGMETER_HTTP. Any other failure to reach it is a LogmeterError with `failCode`.
 */
export async function callIfRunning(cfg: Config, call: ProcessCall, failCode: string): Promise<ProcessAnswer | undefined> {
  let res: Response;
  try {
    res = await callProcess(cfg, call);
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') return undefined;
    throw new LogmeterError(failCode, `logmeter process on ${cfg.http.listen}: ${errorMessage(err)}`);
  }
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  return answerOf(res);
}

export async function answerOf(res: Response): Promise<ProcessAnswer> {
  return { ok: res.ok, status: res.status, text: await res.text() };
}

/** The `error` of a logmeter error body (`{error, code}`); undefined for any other text. */
export function errorOf(text: string): string | undefined {
  try {
    const body: unknown = JSON.parse(text);
    const error = (body as { error?: unknown } | null)?.error;
    return typeof error === 'string' ? error : undefined;
  } catch {
    return undefined;
  }
}

/**
 * ClickHouse opened by the command itself, when no process serves it. An embedded store
 * held by another process is explained with `heldBy` (who may hold it, what to do).
 */
export function openClickHouseDirectly(cfg: Config, logger: Logger, heldBy = `a logmeter process on another LOGMETER_HTTP than ${cfg.http.listen}?`): ClickHouse {
  const opts = clickHouseOptions(cfg, logger);
  try {
    return openClickHouse(opts);
  } catch (err) {
    if ((err as { code?: string }).code === 'CHDB_CONNECTION') {
      throw new LogmeterError('clickhouse_locked', `cannot open the embedded ClickHouse in ${opts.embeddedPath}: it is held by another process (${heldBy}) or unreadable`);
    }
    throw err;
  }
}

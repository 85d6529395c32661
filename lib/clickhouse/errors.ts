/**
 * ClickHouse errors, classified once: whether retrying the same statement can help.
 *
 * A server answers with `Code: N. DB::Exception: …` (clickhouse-js parses it into a
 * `ClickHouseError` with `code`; embedded chDB throws the same text). Codes that name a
 * passing condition (too many parts, memory or time limits, network, a table being
 * read-only during startup) are retriable; everything else the engine says about the
 * statement or its data (syntax, unknown table or column, types, parse errors, access)
 * will fail the same way again. An error without a ClickHouse code (connection refused,
 * reset, a timeout of the HTTP request) is taken as transient.
 */
import { LogmeterError, errorMessage } from '../errors.js';

/** ClickHouse error codes after which the same statement may succeed. */
const TRANSIENT_CODES = new Set([
  159, // TIMEOUT_EXCEEDED
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  236, // ABORTED
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  279, // ALL_CONNECTION_TRIES_FAILED
  319, // UNKNOWN_STATUS_OF_INSERT
  425, // SYSTEM_ERROR
  999, // KEEPER_EXCEPTION
]);

/** The ClickHouse error code of an error, from clickhouse-js' `code` or the message text. */
export function clickHouseCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^\d+$/.test(code)) return Number(code);
  if (typeof code === 'number') return code;
  // chDB's own errors (its raw insert) carry the engine's code beside their string `code`.
  const engineCode = (err as { clickhouseCode?: unknown } | null)?.clickhouseCode;
  if (typeof engineCode === 'number') return engineCode;
  const m = /\bCode: (\d+)\b/.exec(errorMessage(err));
  return m ? Number(m[1]) : undefined;
}

export function isTransientClickHouseError(err: unknown): boolean {
  const code = clickHouseCode(err);
  return code === undefined || TRANSIENT_CODES.has(code);
}

/** Wraps an error of a ClickHouse call as a LogmeterError with its code and retriability. */
export function clickHouseError(what: string, err: unknown): LogmeterError {
  if (err instanceof LogmeterError) return err;
  const code = clickHouseCode(err);
  return new LogmeterError(code === undefined ? 'clickhouse_unavailable' : `clickhouse_${code}`, `${what}: ${errorMessage(err)}`, {
    retriable: isTransientClickHouseError(err),
    cause: err,
  });
}

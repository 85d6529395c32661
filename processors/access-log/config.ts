/**
 * Settings of the access-log parser. It reads no environment and no config file: the
 * parser options come from the caller (`AccessLogDeps.parser`), the rest are fixed.
 * Option mistakes are programmer errors, thrown as a TypeError by the format that reads
 * them the first time an options object is used (see each format's `compile`).
 */

/** Where the processor reads and writes, and how many partitions it handles at once. */
export const ACCESS_LOG_PROCESSOR = {
  /** Consumer group. */
  group: 'access-log',
  /** Topic of the log lines read. */
  from: 'logs',
  /** Topic the HttpRequest events are published to. */
  to: 'http',
  /** Partitions handled at once. */
  concurrency: 4,
} as const;

/**
 * A JSON field name, or several tried in order (the first one present and not `null`
 * wins).
 */
export type JsonFieldName = string | readonly string[];

/** Where the `json` format finds each value. */
export interface JsonFormatOptions {
  /**
   * Request time: an ISO 8601 date-time (UTC when it has no zone), nginx's
   * `26/Nov/2026:08:45:57 +0000`, or epoch seconds or milliseconds (number or numeric
   * string; below 1e11 means seconds). Default `time`.
   */
  time?: JsonFieldName;
  /** Virtual host. Default `host`. */
  host?: JsonFieldName;
  /** HTTP method. Default `method`. */
  method?: JsonFieldName;
  /** Request target. Default `path`, then `uri`, then `url`. */
  path?: JsonFieldName;
  /** Whole request line (`GET /x HTTP/1.1`), used when method or path is absent. Default `request`. */
  request?: JsonFieldName;
  /** Response status (required). Default `status`. */
  status?: JsonFieldName;
  /** Response bytes; 0 when absent. Default `bytes`, then `body_bytes_sent`. */
  bytes?: JsonFieldName;
  /** Total request time in {@link timeUnit} (required). Default `request_time`. */
  request_time?: JsonFieldName;
  /**
   * Upstream time in {@link timeUnit}; a list like nginx's `0.010, 0.020` is summed.
   * Default `upstream_time`.
   */
  upstream_time?: JsonFieldName;
  /** Client address. Default `remote_addr`. */
  client_ip?: JsonFieldName;
  /** Unit of `request_time` and `upstream_time`: seconds or milliseconds. Default `s`. */
  timeUnit?: 's' | 'ms';
}

/** The `json` format's field names when none are configured (as documented on {@link JsonFormatOptions}). */
export const JSON_FIELD_DEFAULTS: Required<Omit<JsonFormatOptions, 'timeUnit'>> = {
  time: 'time',
  host: 'host',
  method: 'method',
  path: ['path', 'uri', 'url'],
  request: 'request',
  status: 'status',
  bytes: ['bytes', 'body_bytes_sent'],
  request_time: 'request_time',
  upstream_time: 'upstream_time',
  client_ip: 'remote_addr',
};

/** The `json` format's time unit when none is configured. */
export const JSON_TIME_UNIT_DEFAULT: NonNullable<JsonFormatOptions['timeUnit']> = 's';

/** How HAProxy lines are read. */
export interface HaproxyFormatOptions {
  /**
   * HAProxy prints its accept date in its local time with no zone; this is that zone's
   * offset from UTC in minutes (e.g. 60 for UTC+1). Default 0 (containers run in UTC).
   */
  utcOffsetMinutes?: number;
}

/** Per-format options. Resolved once per options object, so pass the same object every call. */
export interface ParserOptions {
  /** Field names and units of the `json` format. Defaults as documented on each field. */
  json?: JsonFormatOptions;
  /** Time zone of HAProxy's accept date. Default UTC. */
  haproxy?: HaproxyFormatOptions;
}

/**
 * ClickHouse access, one seam for both modes: embedded chDB (the engine in-process,
 * plugged into @clickhouse/client as its `connection`) by default, or a ClickHouse
 * server when `CLICKHOUSE_URL` is set. Same client API, same SQL.
 *
 * chDB ignores the client's `database` option, so every statement names its tables
 * fully (`<database>.<table>`); the database name is a validated identifier.
 */
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { dataPath, type Config } from '../config.js';
import type { Logger } from '../logger.js';

export type { ClickHouseClient };

export interface ClickHouse {
  readonly client: ClickHouseClient;
  readonly mode: 'embedded' | 'server';
  readonly database: string;
  /** `<database>.<table>`, for building statements. */
  table(name: string): string;
  close(): Promise<void>;
}

export interface OpenOptions {
  url?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  database: string;
  /** Data directory of the embedded engine (used when `url` is unset). */
  embeddedPath: string;
  logger: Logger;
}

export function clickHouseOptions(config: Config, logger: Logger): OpenOptions {
  return {
    url: config.clickhouse.url,
    username: config.clickhouse.username,
    password: config.clickhouse.password,
    database: config.clickhouse.database,
    embeddedPath: dataPath(config, 'clickhouse'),
    logger,
  };
}

/**
 * Settings sent with every query, so both modes answer alike: 64-bit integers as JSON
 * numbers (our counters stay far below 2^53), timestamps in UTC.
 */
export const COMMON_SETTINGS = { output_format_json_quote_64bit_integers: 0, session_timezone: 'UTC' } as const;

type ChdbConnectionModule = typeof import('chdb/connection');
let chdbModule: ChdbConnectionModule | undefined;

/**
 * chDB's module, loaded on first use: loading it maps the engine's library (~130 MiB of
 * RSS) into the process, which processes that never open the store (the collector,
 * `stack`, `schemas`) must not pay for. The package is CommonJS, so this stays synchronous.
 */
function chdb(): ChdbConnectionModule {
  chdbModule ??= createRequire(import.meta.url)('chdb/connection') as ChdbConnectionModule;
  return chdbModule;
}

export function openClickHouse(opts: OpenOptions): ClickHouse {
  let client: ClickHouseClient;
  let mode: ClickHouse['mode'];
  if (opts.url) {
    mode = 'server';
    client = createClient({
      url: opts.url,
      username: opts.username ?? 'default',
      password: opts.password ?? '',
      request_timeout: 30_000,
      compression: { request: false, response: true },
      clickhouse_settings: COMMON_SETTINGS,
    });
  } else {
    mode = 'embedded';
    mkdirSync(opts.embeddedPath, { recursive: true });
    // chdb types its Connection against @clickhouse/client-common, which the client
    // bundles as its own copy: the same interface under two declarations.
    const connection = chdb().createChdbConnection({ path: opts.embeddedPath }) as unknown as NonNullable<Parameters<typeof createClient>[0]>['connection'];
    client = createClient({ connection, clickhouse_settings: COMMON_SETTINGS });
  }
  opts.logger.info({ mode, database: opts.database, where: opts.url ?? opts.embeddedPath }, 'clickhouse opened');
  return {
    client,
    mode,
    database: opts.database,
    table: (name) => `${opts.database}.${name}`,
    close: () => client.close(),
  };
}

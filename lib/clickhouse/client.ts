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
import { Readable } from 'node:stream';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { dataPath, type BaseConfig as Config } from '../config.js';
import type { Logger } from '../logger.js';
import { clickHouseError } from './errors.js';
import { LogmeterError } from '../errors.js';
import type { EncodedRows } from './tsv.js';
import type { ArrowColumn, ColumnarWriter, ColumnSpec } from './columnar.js';

export type { ClickHouseClient };

export interface ClickHouse {
  /** The raw client, for lib/clickhouse only: everything else uses the methods below. */
  readonly client: ClickHouseClient;
  readonly mode: 'embedded' | 'server';
  readonly database: string;
  /** `<database>.<table>`, for building statements. */
  table(name: string): string;
  /**
   * Rows of a statement as objects (JSONEachRow), with bound parameters (`{name:Type}`).
   * Errors are LogmeterErrors classified by ClickHouse's code (see errors.ts).
   */
  query<T = Record<string, unknown>>(sql: string, params?: Record<string, unknown>): Promise<T[]>;
  /** Inserts rows (JSONEachRow) into `table` of logmeter's database; resolves after the insert. */
  insert(table: string, rows: readonly Record<string, unknown>[], columns?: readonly string[]): Promise<void>;
  /**
   * Inserts rows already encoded into `table`; resolves after the insert. The body must
   * stay unchanged until then. `TabSeparated` bytes (tsv.ts): embedded, handed to chDB as
   * they are (no SQL string around them); server, streamed as the request body. Binary
   * columns (columnar.ts, only where `columnarInserts(ch)`: the embedded engine): read
   * by chDB in place (`INSERT … SELECT … FROM arrowstream(…)`).
   */
  insertEncoded(table: string, rows: EncodedRows | ColumnarRows): Promise<void>;
  /** A statement that returns no rows (DDL, ALTER, CREATE DATABASE). */
  command(sql: string, params?: Record<string, unknown>): Promise<void>;
  /** Rejects unless the engine answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Rows written as binary columns (columnar.ts): the embedded engine's insert format. */
export interface ColumnarRows {
  readonly format: 'columns';
  readonly columns: readonly ColumnSpec[];
  readonly writer: ColumnarWriter;
  readonly rows: number;
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

/** chDB's root module: a Session (its own native connection) and its Arrow C data interface input. */
interface ChdbRoot {
  Session: new (path: string) => ChdbSession;
  _arrowRegisterColumns(connection: unknown, name: string, columns: ArrowColumn[]): void;
  _arrowUnregister(connection: unknown, name: string): void;
}
interface ChdbSession {
  readonly connection: unknown;
  queryAsync(sql: string, opts?: { format?: string }): Promise<unknown>;
  close(): void;
}

// The data directory behind each embedded client: operator SQL (operator-sql.ts) opens its
// own read-only connection to the same directory. Keyed by client, so handles that swap or
// share a client (clickHouseOn, withDatabase) find it too.
const embeddedPaths = new WeakMap<ClickHouseClient, string>();

/** chDB's raw insert of an embedded client's connection: the body goes to the engine's parser as bytes. */
type RawInsert = (params: { table: string; columns: readonly string[]; format: 'TabSeparated'; values: Buffer }) => Promise<unknown>;
const rawInserts = new WeakMap<ClickHouseClient, RawInsert>();

/** The embedded engine's insert of binary columns, by client. */
type ColumnarInsert = (table: string, rows: ColumnarRows) => Promise<void>;
const columnarInsertsOf = new WeakMap<ClickHouseClient, ColumnarInsert>();

/** True when `ch` takes binary columns (`insertEncoded` with ColumnarRows): the embedded engine. */
export function columnarInserts(ch: ClickHouse): boolean {
  return columnarInsertsOf.has(ch.client);
}

/** The embedded engine's data directory of a handle; undefined in server mode. */
export function embeddedPathOf(ch: ClickHouse): string | undefined {
  return ch.mode === 'embedded' ? embeddedPaths.get(ch.client) : undefined;
}

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
  let closeClient: (() => Promise<void>) | undefined;
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
    const chdbConnection = chdb().createChdbConnection({ path: opts.embeddedPath });
    const connection = chdbConnection as unknown as NonNullable<Parameters<typeof createClient>[0]>['connection'];
    client = createClient({ connection, clickhouse_settings: COMMON_SETTINGS });
    embeddedPaths.set(client, opts.embeddedPath);
    // No session settings needed: the body's timestamps are epoch numbers, its columns typed.
    rawInserts.set(client, (params) => chdbConnection.chdb.rawInsert({ ...params, columns: [...params.columns] }));
    const columnar = embeddedColumnarInsert(opts.embeddedPath);
    columnarInsertsOf.set(client, columnar.insert);
    const c = client;
    closeClient = async () => {
      columnar.close();
      await c.close();
    };
  }
  opts.logger.info({ mode, database: opts.database, where: opts.url ?? opts.embeddedPath }, 'clickhouse opened');
  return clickHouseOn(() => client, mode, opts.database, closeClient ?? (() => client.close()));
}

/**
 * Binary columns into the embedded engine: registered with chDB as an Arrow table
 * (zero copy: the engine reads the writer's buffers) on a connection of its own to the
 * same data directory, then `INSERT INTO t (…) SELECT … FROM arrowstream(name)`, then
 * unregistered. The connection is opened on first use (chDB allows several per path).
 */
function embeddedColumnarInsert(path: string): { insert: ColumnarInsert; close(): void } {
  let session: ChdbSession | undefined;
  let closed = false;
  let seq = 0;
  return {
    async insert(table, rows) {
      if (closed) throw new Error('the embedded ClickHouse is closed');
      const root = createRequire(import.meta.url)('chdb') as ChdbRoot;
      session ??= new root.Session(path);
      const name = `logmeter_insert_${process.pid}_${++seq}`;
      const names = rows.columns.map((c) => c.name).join(', ');
      const conn = session.connection;
      root._arrowRegisterColumns(conn, name, rows.writer.arrow());
      try {
        await session.queryAsync(`INSERT INTO ${table} (${names}) SELECT ${names} FROM arrowstream('${name}')`, { format: 'CSV' });
      } finally {
        root._arrowUnregister(conn, name);
      }
    },
    close() {
      closed = true;
      session?.close();
      session = undefined;
    },
  };
}

/**
 * The ClickHouse seam over a client that `client()` returns each time: for a handle whose
 * client can be swapped (a store closed and opened again), or another database on the
 * same engine (`withDatabase`).
 */
export function clickHouseOn(client: () => ClickHouseClient, mode: ClickHouse['mode'], database: string, close: () => Promise<void>): ClickHouse {
  const table = (name: string) => `${database}.${name}`;
  return {
    get client() {
      return client();
    },
    mode,
    database,
    table,
    async query<T>(sql: string, params?: Record<string, unknown>): Promise<T[]> {
      try {
        const rs = await client().query({ query: sql, format: 'JSONEachRow', ...(params ? { query_params: params } : {}) });
        return await rs.json<T>();
      } catch (err) {
        throw clickHouseError('query', err);
      }
    },
    async insert(name, rows, columns) {
      if (rows.length === 0) return;
      try {
        await client().insert({
          table: table(name),
          values: rows,
          format: 'JSONEachRow',
          ...(columns ? { columns: columns as [string, ...string[]] } : {}),
        });
      } catch (err) {
        throw clickHouseError(`insert into ${name}`, err);
      }
    },
    async insertEncoded(name, rows) {
      if (rows.rows === 0) return;
      const c = client();
      try {
        if ('format' in rows) {
          const columnar = columnarInsertsOf.get(c);
          if (!columnar) throw new LogmeterError('clickhouse_columns_unsupported', `insert into ${name}: binary columns need the embedded engine`, { retriable: false });
          await columnar(table(name), rows);
          return;
        }
        const raw = rawInserts.get(c);
        if (raw) await raw({ table: table(name), columns: rows.columns, format: 'TabSeparated', values: rows.body });
        // A server, or a client wrapped by the caller: the same bytes as the request body.
        else await c.insert({ table: table(name), values: Readable.from([rows.body], { objectMode: false }), format: 'TabSeparated', columns: [...rows.columns] as [string, ...string[]] });
      } catch (err) {
        throw clickHouseError(`insert into ${name}`, err);
      }
    },
    async command(sql, params) {
      try {
        await client().command({ query: sql, ...(params ? { query_params: params } : {}) });
      } catch (err) {
        throw clickHouseError('command', err);
      }
    },
    async ping() {
      const r = await client().ping();
      if (!r.success) throw clickHouseError('ping', r.error);
    },
    close,
  };
}

/** The same engine and client, statements naming another database; closing it closes nothing. */
export function withDatabase(ch: ClickHouse, database: string): ClickHouse {
  return clickHouseOn(() => ch.client, ch.mode, database, () => Promise.resolve());
}

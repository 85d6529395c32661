/**
 * The operator's SQL (`logmeter sql`, `POST /api/v1/admin/sql`): reads logmeter's tables
 * and nothing else, with limits, and every statement audited.
 *
 * The engine decides as much as it can (docs/decisions/2026-12-04-operator-sql.md):
 * 1. readonly.ts, a first line only: one statement, of a reading kind, no INTO OUTFILE.
 * 2. ClickHouse's formatter (`formatQuery`, the statement passed as a bound parameter, so
 *    never run): it refuses more than one statement (the tokenizer can be fooled, e.g.
 *    by `$$…$$` strings, and the engine runs every statement it is given) and returns the
 *    one statement in canonical form; everything below checks and runs that text.
 * 3. ClickHouse's parser (`EXPLAIN AST`): the statement kind, every table function (an
 *    allow-list, so table functions ClickHouse adds later are refused), every table and
 *    database named, every function (file(), dictGet…, user-defined ones refused),
 *    SETTINGS, INTO OUTFILE and FORMAT clauses.
 * 4. ClickHouse's analyzer (`EXPLAIN QUERY TREE`) for SELECTs: every table the engine
 *    itself resolves (CTEs, subqueries, `IN <table>`) must be in logmeter's database.
 * 5. The statement runs on its own connection to the embedded engine, opened with
 *    `readonly=1` and the limits as connection settings: the engine refuses writes, table
 *    functions that touch files or the network, and any SETTINGS that would lift a limit.
 *    The process's shared session (which the sink inserts through) is never touched.
 * Grants are not used: chDB 3.4 has only the read-only users.xml storage, so it cannot
 * create a user with `SELECT ON logmeter.*`.
 */
import { createRequire } from 'node:module';
import { ClickHouseError, parseError } from '@clickhouse/client';
import type { Logger } from '../logger.js';
import { LogmeterError, errorMessage } from '../errors.js';
import { embeddedPathOf, type ClickHouse } from './client.js';
import { clickHouseCode } from './errors.js';
import { assertReadOnly } from './readonly.js';

/** Limits of one operator query. */
export interface OperatorLimits {
  /** Rows a result may have (`max_result_rows`, the query fails beyond). Default 100 000. */
  maxResultRows: number;
  /** Memory one query may use (`max_memory_usage`), bytes. Default 512 MiB. */
  maxMemoryBytes: number;
  /** Run time of one query (`max_execution_time`), seconds. Default 30. */
  maxExecutionSeconds: number;
}

export const OPERATOR_LIMITS: OperatorLimits = { maxResultRows: 100_000, maxMemoryBytes: 512 * 1024 * 1024, maxExecutionSeconds: 30 };

export interface OperatorSqlContext {
  /** Who asks, for the audit: `admin@<address>` for the API, `cli:<user>` for `logmeter sql --direct`. */
  who: string;
  via: 'http' | 'cli';
  logger: Logger;
  limits?: Partial<OperatorLimits>;
}

export interface OperatorResult {
  /** The rows as JSON lines, as ClickHouse wrote them. */
  ndjson: string;
  rows: number;
}

/** Table functions that read nothing but their arguments (or a subquery that is checked itself). */
const TABLE_FUNCTIONS = new Set(['numbers', 'numbers_mt', 'values', 'generateSeries', 'generate_series', 'null', 'view']);

/** System tables without secrets or other databases' rows. */
const SYSTEM_TABLES = new Set(['one', 'numbers', 'tables', 'columns', 'databases', 'parts', 'functions', 'table_functions', 'data_type_families', 'formats', 'time_zones']);

/** Statements (the root of `EXPLAIN AST`) an operator may run. */
const STATEMENTS = new Set(['SelectWithUnionQuery', 'SelectIntersectExceptQuery', 'DescribeQuery', 'ShowTables', 'ShowCreateTableQuery', 'Explain']);

/**
 * Functions that reach outside the statement's tables: files, dictionaries (their sources
 * may be files, URLs or other databases), Join tables, models on disk, server internals.
 */
const DENIED_FUNCTIONS = /^(file|dict.*|joinget.*|catboostevaluate|naivebayesclassifier|getclienthttpheader|generateserialid|addresstoline.*|addresstosymbol|demangle|filesystem.*|getserversetting|getmacro|s3.*|url.*|azure.*|hdfs.*|input|executable.*)$/i;

const IN_FUNCTIONS = new Set(['in', 'notIn', 'globalIn', 'globalNotIn', 'nullIn', 'notNullIn', 'globalNullIn', 'globalNotNullIn']);

type Session = InstanceType<typeof import('chdb').Session>;
let chdbRoot: typeof import('chdb') | undefined;
function chdb(): typeof import('chdb') {
  chdbRoot ??= createRequire(import.meta.url)('chdb') as typeof import('chdb');
  return chdbRoot;
}

/** Runs an operator's statement; throws LogmeterError `sql_refused` naming what was refused. */
export async function runOperatorSql(ch: ClickHouse, sql: string, ctx: OperatorSqlContext): Promise<OperatorResult> {
  const limits = { ...OPERATOR_LIMITS, ...ctx.limits };
  const log = ctx.logger.child({ component: 'operator-sql' });
  const at = new Date();
  try {
    const stmt = assertReadOnly(sql);
    const result = await withEngine(ch, limits, async (run) => {
      const canonical = await checkStatement(ch, stmt, run);
      const ndjson = await run(canonical);
      return { ndjson, rows: ndjson.split('\n').filter((l) => l !== '').length };
    });
    await audit(ch, log, { at, ctx, statement: sql, outcome: 'ok', rows: result.rows, reason: '' });
    return result;
  } catch (err) {
    const e = classify(err, limits);
    await audit(ch, log, { at, ctx, statement: sql, outcome: e instanceof LogmeterError && e.code === 'sql_refused' ? 'refused' : 'failed', rows: 0, reason: errorMessage(e) });
    throw e;
  }
}

type Run = (sql: string, params?: Record<string, unknown>) => Promise<string>;

/** Runs `fn` on a read-only, limited connection; never on the shared session. */
async function withEngine<T>(ch: ClickHouse, limits: OperatorLimits, fn: (run: Run) => Promise<T>): Promise<T> {
  const settings: Record<string, string> = {
    max_result_rows: String(limits.maxResultRows),
    result_overflow_mode: 'throw',
    max_memory_usage: String(limits.maxMemoryBytes),
    max_execution_time: String(limits.maxExecutionSeconds),
    output_format_json_quote_64bit_integers: '0',
    session_timezone: 'UTC',
  };
  if (ch.mode === 'server') {
    // Per request over HTTP; readonly last, so the limits before it are accepted and nothing after.
    const run: Run = async (q, params) =>
      (await ch.client.query({ query: q, format: 'JSONEachRow', ...(params ? { query_params: params } : {}), clickhouse_settings: { ...settings, readonly: '1' } })).text();
    return fn(run);
  }
  const path = embeddedPathOf(ch);
  if (!path) throw new LogmeterError('sql_failed', 'operator SQL needs the embedded store opened by openClickHouse');
  // A second connection to the same data directory: its settings are its own (measured:
  // readonly=1 there leaves the shared session writable).
  const args = ['--readonly=1', ...Object.entries(settings).map(([k, v]) => `--${k}=${v}`)];
  const session: Session = new (chdb().Session)(path, { connectionArgs: args });
  try {
    return await fn(async (q, params) => (await (params ? session.queryBindAsync(q, params, { format: 'JSONEachRow' }) : session.queryAsync(q, { format: 'JSONEachRow' }))).text());
  } finally {
    session.close();
  }
}

interface AstNode {
  kind: string;
  arg: string;
  depth: number;
  parent: AstNode | undefined;
  index: number;
}

/** The lines of `EXPLAIN AST` as a tree (one node a line, depth = indentation). */
function parseAst(lines: readonly string[]): AstNode[] {
  const nodes: AstNode[] = [];
  const stack: AstNode[] = [];
  const childCount = new Map<AstNode | undefined, number>();
  for (const line of lines) {
    if (line.trim() === '') continue;
    const depth = line.length - line.trimStart().length;
    const m = /^(\S+)(?: (.*?))?(?: \(children \d+\))?$/.exec(line.trimStart());
    while (stack.length > 0 && stack[stack.length - 1]!.depth >= depth) stack.pop();
    const parent = stack[stack.length - 1];
    const index = childCount.get(parent) ?? 0;
    childCount.set(parent, index + 1);
    const node: AstNode = { kind: m?.[1] ?? line.trim(), arg: (m?.[2] ?? '').replace(/ \(alias .*\)$/, ''), depth, parent, index };
    nodes.push(node);
    stack.push(node);
  }
  return nodes;
}

function refuse(what: string): never {
  throw new LogmeterError('sql_refused', `refused: ${what}; operator SQL reads logmeter's tables only`);
}

/** `db.table` with backquotes removed; undefined parts when unqualified. */
function splitName(name: string): { db?: string; table: string } {
  const unq = name.replace(/`/g, '');
  const dot = unq.indexOf('.');
  return dot < 0 ? { table: unq } : { db: unq.slice(0, dot), table: unq.slice(dot + 1) };
}

function checkTable(ch: ClickHouse, name: string, unqualifiedOk: boolean): void {
  const { db, table } = splitName(name);
  if (db === undefined) {
    if (!unqualifiedOk) refuse(`table ${name} without its database (write ${ch.database}.${name})`);
    return;
  }
  if (db === ch.database) return;
  if (db === 'system' && SYSTEM_TABLES.has(table)) return;
  refuse(`table ${name} (outside the ${ch.database} database)`);
}

/**
 * The statement in the engine's canonical form, once everything the engine's parser and
 * analyzer find in it is allowed; refuses it otherwise.
 */
async function checkStatement(ch: ClickHouse, stmt: string, run: Run): Promise<string> {
  const formatted = await run('SELECT formatQuery({q:String}) AS q', { q: stmt });
  const canonical = (JSON.parse(formatted.split('\n')[0] ?? '{}') as { q?: unknown }).q;
  if (typeof canonical !== 'string' || canonical === '') refuse('a statement ClickHouse could not format');
  const lines = (await run(`EXPLAIN AST ${canonical}`)).split('\n').filter((l) => l !== '');
  const explain = lines.map((l) => (JSON.parse(l) as { explain?: unknown }).explain);
  // Anything but EXPLAIN's own lines means something else ran: never expected after formatQuery, refused all the same.
  if (!explain.every((e): e is string => typeof e === 'string')) refuse('more than one statement');
  const nodes = parseAst(explain);
  const roots = nodes.filter((n) => n.depth === 0);
  if (roots.length !== 1) refuse(`${roots.length} statements (one at a time)`);
  const root = roots[0]!;
  if (!STATEMENTS.has(root.kind)) refuse(`statement ${root.kind}`);
  const user = await userFunctions(run);
  for (const n of nodes) {
    const parent = n.parent;
    if (parent?.kind === 'Explain' && !STATEMENTS.has(n.kind) && n.kind !== 'Set') refuse(`statement ${n.kind}`);
    if (n.kind === 'Set' || n.kind === 'SetQuery') refuse('SETTINGS (operator queries run with fixed settings)');
    if (parent === root && root.kind.startsWith('Select') && n.index > 0) refuse(n.kind === 'Literal' ? 'INTO OUTFILE' : n.kind === 'Identifier' ? `FORMAT ${n.arg}` : `clause ${n.kind}`);
    if (n.kind === 'Function') {
      const name = n.arg.split(' ')[0]!;
      if (parent?.kind === 'TableExpression') {
        if (!TABLE_FUNCTIONS.has(name)) refuse(`table function ${name}`);
      } else if (DENIED_FUNCTIONS.test(name) || user.has(name.toLowerCase())) {
        refuse(`function ${name}`);
      }
    }
    if (n.kind === 'TableIdentifier') checkTable(ch, n.arg, root.kind.startsWith('Select'));
    // `x IN db.table` reads a table through an identifier, not a table expression.
    if (n.kind === 'Identifier' && n.index === 1 && parent?.kind === 'ExpressionList' && parent.parent?.kind === 'Function' && IN_FUNCTIONS.has(parent.parent.arg.split(' ')[0]!)) {
      checkTable(ch, n.arg, root.kind.startsWith('Select'));
    }
    if (root.kind === 'ShowTables' && n.kind === 'Identifier' && n.arg !== ch.database) refuse(`database ${n.arg}`);
    if (root.kind === 'ShowCreateTableQuery' && n === root) {
      const ids = nodes.filter((c) => c.parent === root);
      if (ids.length !== 2 || ids[0]!.arg !== ch.database) refuse(`SHOW CREATE ${root.arg} (name it ${ch.database}.<table>)`);
    }
  }
  // The analyzer resolves what the parser leaves open (CTE names, unqualified tables): every table it reads must pass too.
  if (root.kind.startsWith('Select')) {
    const tree = await run(`EXPLAIN QUERY TREE ${canonical}`);
    for (const m of tree.matchAll(/ TABLE id: \d+,(?: alias: [^,]*,)? table_name: ([^"\\]+)/g)) checkTable(ch, m[1]!.trim(), false);
    for (const m of tree.matchAll(/ TABLE_FUNCTION id: \d+,(?: alias: [^,]*,)? table_function_name: ([A-Za-z0-9_]+)/g)) if (!TABLE_FUNCTIONS.has(m[1]!)) refuse(`table function ${m[1]!}`);
  }
  return canonical;
}

/** User-defined functions (SQL or executable): none of them is the engine's own. */
async function userFunctions(run: Run): Promise<Set<string>> {
  const text = await run("SELECT lower(name) AS name FROM system.functions WHERE origin != 'System'");
  return new Set(text.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { name: string }).name));
}

/** The engine's refusals as `sql_refused`, its limits as `sql_limit`; other errors as they are. */
function classify(err: unknown, limits: OperatorLimits): unknown {
  if (err instanceof LogmeterError) return err;
  const code = clickHouseCode(err);
  const msg = errorMessage(err);
  if (code === 164 || code === 497) {
    const setting = /Cannot modify '([^']+)' setting/.exec(msg)?.[1];
    return new LogmeterError('sql_refused', setting ? `refused: SETTINGS ${setting} (operator queries run with fixed settings)` : `refused by ClickHouse (read-only operator connection): ${msg}`, { cause: err });
  }
  if (code === 396) return new LogmeterError('sql_limit', `result over ${limits.maxResultRows} rows (max_result_rows): add a LIMIT or aggregate`, { cause: err });
  if (code === 159) return new LogmeterError('sql_limit', `query ran over ${limits.maxExecutionSeconds} s (max_execution_time)`, { cause: err });
  if (code === 241) return new LogmeterError('sql_limit', `query needed more than ${limits.maxMemoryBytes} bytes (max_memory_usage)`, { cause: err });
  // A statement the parser cannot read cannot be checked: refused, with the engine's reason.
  if (code === 62) return new LogmeterError('sql_refused', `refused: ClickHouse cannot parse it: ${msg}`, { cause: err });
  // chDB's own errors carry the text only: the same shape as the client's (code, type) for callers.
  return code !== undefined && !(err instanceof ClickHouseError) ? parseError(msg) : err;
}

async function audit(ch: ClickHouse, log: Logger, e: { at: Date; ctx: OperatorSqlContext; statement: string; outcome: 'ok' | 'refused' | 'failed'; rows: number; reason: string }): Promise<void> {
  const line = { audit: true, who: e.ctx.who, via: e.ctx.via, statement: e.statement, outcome: e.outcome, rows: e.rows, ...(e.reason ? { reason: e.reason } : {}) };
  if (e.outcome === 'ok') log.info(line, 'operator sql');
  else log.warn(line, `operator sql ${e.outcome}`);
  try {
    await ch.insert('audit', [{ ts: e.at.toISOString().replace('T', ' ').replace('Z', ''), who: e.ctx.who, via: e.ctx.via, statement: e.statement, outcome: e.outcome, rows: e.rows, reason: e.reason }]);
  } catch (err) {
    // The pino line above stays the record (an unmigrated store has no audit table yet).
    log.error({ err: errorMessage(err), who: e.ctx.who }, 'operator sql: audit row not written');
  }
}

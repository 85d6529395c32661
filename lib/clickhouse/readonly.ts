/**
 * The first line in front of operator SQL: one statement (a second would reach the
 * engine, which runs every statement it is given), of a reading kind (SELECT, WITH …
 * SELECT, SHOW, DESCRIBE, EXPLAIN), no INTO OUTFILE. What the statement reads is decided
 * by the engine in operator-sql.ts, and it runs on a `readonly` connection.
 */
import { LogmeterError } from '../errors.js';

const ALLOWED = new Set(['SELECT', 'WITH', 'SHOW', 'DESCRIBE', 'DESC', 'EXPLAIN']);

/** Returns the statement without a trailing `;`; throws LogmeterError `sql_refused` otherwise. */
export function assertReadOnly(sql: string): string {
  const stripped = stripComments(sql).trim();
  if (!stripped) throw new LogmeterError('sql_refused', 'empty statement');
  const statements = splitOutsideQuotes(stripped).filter((s) => s.trim().length > 0);
  if (statements.length !== 1) throw new LogmeterError('sql_refused', `refused: exactly one statement allowed, got ${statements.length}`);
  const stmt = statements[0]!.trim();
  const keyword = /^[A-Za-z]+/.exec(stmt)?.[0]?.toUpperCase() ?? '';
  if (!ALLOWED.has(keyword)) {
    throw new LogmeterError('sql_refused', `refused: only SELECT, SHOW and DESCRIBE statements are allowed (got ${keyword || 'no keyword'}), and EXPLAIN of them; logmeter sql is read-only`);
  }
  // ClickHouse runs `INTO OUTFILE` where the client is, and the embedded engine is in this process: it would write files here.
  if (/\bINTO\s+OUTFILE\b/i.test(blankQuoted(stmt))) throw new LogmeterError('sql_refused', 'refused: INTO OUTFILE writes files; logmeter sql is read-only');
  return stmt;
}

/** The statement with every quoted literal emptied, so keywords inside strings do not count. */
function blankQuoted(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === '`') {
      const end = endOfQuoted(sql, i);
      out += `${c}${c}`;
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Removes `-- …` and `/* … *\/` comments outside string literals. */
function stripComments(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === '`') {
      const end = endOfQuoted(sql, i);
      out += sql.slice(i, end);
      i = end;
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < sql.length && sql[i] !== '\n') i++;
    } else if (c === '#' ) {
      while (i < sql.length && sql[i] !== '\n') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
      out += ' ';
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function splitOutsideQuotes(sql: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === '`') i = endOfQuoted(sql, i);
    else if (c === ';') {
      parts.push(sql.slice(start, i));
      start = ++i;
    } else i++;
  }
  parts.push(sql.slice(start));
  return parts;
}

/** Index just past the quoted literal starting at `i` (backslash escapes and doubled quotes). */
function endOfQuoted(sql: string, i: number): number {
  const q = sql[i];
  let j = i + 1;
  while (j < sql.length) {
    if (sql[j] === '\\') j += 2;
    else if (sql[j] === q) {
      if (sql[j + 1] === q) j += 2;
      else return j + 1;
    } else j++;
  }
  return sql.length;
}

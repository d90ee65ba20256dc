import { CopyEncodeError } from '../errors.ts';
/**
 * PostgreSQL COPY text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2):
 * columns separated by tab, rows by newline, NULL as \N, and backslash, tab, newline and carriage return escaped
 * with a backslash. A NUL byte cannot be carried at all (Postgres text cannot hold it), so it is refused here and
 * such records are rejected before they reach the sink.
 */
export type CopyValue = string | number | bigint | boolean | null | undefined;

/** Anything that needs a look: the four escaped characters, and NUL (refused). One scan for the common clean value. */
const SPECIAL = /[\\\t\n\r\u0000]/;
const ESCAPES = /[\\\t\n\r]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export { CopyEncodeError };

export function escapeCopyText(value: string): string {
  if (!SPECIAL.test(value)) return value;
  if (value.indexOf('\u0000') >= 0) throw new CopyEncodeError('a NUL character cannot be stored in a Postgres text value');
  return value.replace(ESCAPES, (c) => ESCAPED[c]);
}

export function encodeCopyValue(value: CopyValue): string {
  if (typeof value === 'string') return escapeCopyText(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new CopyEncodeError(`${value} is not a finite number`);
    return '' + value;
  }
  if (value === null || value === undefined) return '\\N';
  return String(value);
}

/** One row as a COPY text line, newline included. Strings and numbers (nearly every value) take the short path. */
export function encodeCopyRow(row: readonly CopyValue[]): string {
  let line = '';
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    let text: string;
    if (typeof v === 'string') text = SPECIAL.test(v) ? escapeCopyText(v) : v;
    else if (typeof v === 'number' && Number.isFinite(v)) text = '' + v;
    else text = encodeCopyValue(v);
    line = i === 0 ? text : line + '\t' + text;
  }
  return line + '\n';
}

const UNESCAPED: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };

/** A COPY text line (its newline optional) back to its values, NULL as null: how Postgres reads what encodeCopyRow wrote. */
export function decodeCopyRow(line: string): (string | null)[] {
  const body = line.endsWith('\n') ? line.slice(0, -1) : line;
  return body.split('\t').map((field) => (field === '\\N' ? null : field.replace(/\\(.)/g, (_m, c: string) => UNESCAPED[c] ?? c)));
}

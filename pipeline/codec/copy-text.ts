/**
 * PostgreSQL COPY text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2):
 * columns separated by tab, rows by newline, NULL as \N, and backslash, tab, newline and carriage return escaped
 * with a backslash. A NUL byte cannot be carried at all (Postgres text cannot hold it), so it is refused here and
 * such records are rejected before they reach the sink.
 */
export type CopyValue = string | number | bigint | boolean | null | undefined;

const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPES = /[\\\t\n\r]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export class CopyEncodeError extends Error {
  readonly code = 'COPY_UNENCODABLE';
}

export function escapeCopyText(value: string): string {
  if (value.indexOf('\u0000') >= 0) throw new CopyEncodeError('a NUL character cannot be stored in a Postgres text value');
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPES, (c) => ESCAPED[c]) : value;
}

export function encodeCopyValue(value: CopyValue): string {
  if (value === null || value === undefined) return '\\N';
  if (typeof value === 'string') return escapeCopyText(value);
  if (typeof value === 'number' && !Number.isFinite(value)) throw new CopyEncodeError(`${value} is not a finite number`);
  return String(value);
}

/** One row as a COPY text line, newline included. */
export function encodeCopyRow(row: readonly CopyValue[]): string {
  let line = encodeCopyValue(row[0]);
  for (let i = 1; i < row.length; i++) line += '\t' + encodeCopyValue(row[i]);
  return line + '\n';
}

/** Joins COPY text lines into chunks of about chunkBytes, so the COPY stream gets few large writes. */
export function* copyChunks(lines: Iterable<string>, chunkBytes = 64 * 1024): Generator<Buffer> {
  let parts: string[] = [];
  let size = 0;
  for (const line of lines) {
    parts.push(line);
    size += line.length;
    if (size >= chunkBytes) {
      yield Buffer.from(parts.join(''), 'utf8');
      parts = [];
      size = 0;
    }
  }
  if (parts.length) yield Buffer.from(parts.join(''), 'utf8');
}

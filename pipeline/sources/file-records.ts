import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { PipelineError, type DeadLetterReason } from '../errors.ts';

/**
 * Records of a CSV or NDJSON file, each with the number of the line it starts on (1-based, as editors count) and
 * the number of the line after it: that is the position a loader commits, so a restart resumes at a record
 * boundary. A record that cannot be read becomes an error record with its line number, never the end of the load.
 * One record is one line: a quoted CSV field may hold commas and quotes but not a line break, so that one broken
 * line can never swallow the lines after it.
 */
export type FileFormat = 'csv' | 'ndjson';

export type FileRecord =
  | { ok: true; line: number; nextLine: number; text: string; value: Record<string, unknown> }
  | { ok: false; line: number; nextLine: number; text: string; reason: DeadLetterReason; message: string };

export function formatOf(file: string): FileFormat | undefined {
  if (/\.csv$/i.test(file)) return 'csv';
  if (/\.(ndjson|jsonl)$/i.test(file)) return 'ndjson';
  return undefined;
}

/** One NDJSON line: a JSON object, or an error saying why not. */
export function parseNdjsonLine(text: string): { ok: true; value: Record<string, unknown> } | { ok: false; reason: DeadLetterReason; message: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: 'malformed-json', message: (err as Error).message };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, reason: 'schema', message: 'the line is not a JSON object' };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/**
 * Splits one CSV line (RFC 4180: fields separated by commas, a field in double quotes may hold commas and "" for
 * a quote). Returns undefined when the line ends inside a quoted field.
 */
export function splitCsv(text: string): string[] | undefined {
  const fields: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  let wasQuoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else field += c;
      i++;
      continue;
    }
    if (c === ',') {
      fields.push(field);
      field = '';
      wasQuoted = false;
    } else if (c === '"' && field === '' && !wasQuoted) {
      quoted = true;
      wasQuoted = true;
    } else if (c === '"') {
      throw new PipelineError('CSV_QUOTE', `a quote inside an unquoted field at column ${i + 1}`);
    } else if (wasQuoted) {
      throw new PipelineError('CSV_QUOTE', `text after a closing quote at column ${i + 1}`);
    } else field += c;
    i++;
  }
  if (quoted) return undefined;
  fields.push(field);
  return fields;
}

const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/**
 * A CSV row as an object keyed by the header. CSV has no types, so the types come from the schema: a field of a
 * property typed integer or number becomes a number when it is written as one (otherwise it stays text and the
 * schema says what is wrong); an empty field is absent, so the schema reports it as missing.
 */
export function csvObject(header: string[], fields: string[], numeric: ReadonlySet<string>): Record<string, unknown> {
  if (fields.length !== header.length) {
    throw new PipelineError('CSV_COLUMNS', `${fields.length} fields where the header has ${header.length}`);
  }
  const out: Record<string, unknown> = {};
  for (let i = 0; i < header.length; i++) {
    const f = fields[i];
    if (f === '') continue;
    out[header[i]] = numeric.has(header[i]) && NUMBER.test(f) ? Number(f) : f;
  }
  return out;
}

/** The properties a JSON Schema types as integer or number. */
export function numericProperties(schema: object): Set<string> {
  const props = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {};
  return new Set(Object.entries(props).filter(([, p]) => p.type === 'integer' || p.type === 'number').map(([k]) => k));
}

/** A line of a file with its number (1-based). */
export interface FileLine {
  line: number;
  text: string;
}

/**
 * The lines of a file from line fromLine on, each with its number; blank lines are skipped, and so is line 1 when
 * skipHeader (a CSV header). A byte order mark is not part of the first line.
 */
export async function* readFileLines(file: string, fromLine: number, skipHeader: boolean): AsyncGenerator<FileLine> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const raw of lines) {
      n++;
      if (n < fromLine || (skipHeader && n === 1)) continue;
      const text = n === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (text.trim() !== '') yield { line: n, text };
    }
  } finally {
    lines.close();
  }
}

/** The header of a CSV file (line 1), or a CSV_HEADER error. */
export async function readCsvHeader(file: string): Promise<string[]> {
  let header: string[] | undefined;
  for await (const first of readFileLines(file, 1, false)) {
    if (first.line === 1) {
      try {
        header = splitCsv(first.text)?.map((h) => h.trim());
      } catch { /* reported below */ }
    }
    break;
  }
  if (!header || header.some((h) => h === '')) throw new PipelineError('CSV_HEADER', `${file}: line 1 is not a CSV header`);
  return header;
}

/** Reads one line of the format as a record (header: the CSV header). */
export function lineReader(format: FileFormat, header: string[] | undefined, numeric: ReadonlySet<string>): (l: FileLine) => FileRecord {
  return ({ line: n, text }) => {
    if (format === 'ndjson') {
      const p = parseNdjsonLine(text);
      return p.ok ? { ok: true, line: n, nextLine: n + 1, text, value: p.value }
        : { ok: false, line: n, nextLine: n + 1, text, reason: p.reason, message: `line ${n}: ${p.message}` };
    }
    try {
      const fields = splitCsv(text);
      if (fields === undefined) throw new PipelineError('CSV_QUOTE', 'a quoted field is not closed on its line');
      return { ok: true, line: n, nextLine: n + 1, text, value: csvObject(header!, fields, numeric) };
    } catch (err) {
      return { ok: false, line: n, nextLine: n + 1, text, reason: 'malformed-csv', message: `line ${n}: ${(err as Error).message}` };
    }
  };
}

/**
 * Reads the file from line fromLine on (the CSV header, line 1, is always read), as records. Blank lines are
 * skipped.
 */
export async function* readFileRecords(file: string, format: FileFormat, fromLine: number, numeric: ReadonlySet<string>): AsyncGenerator<FileRecord> {
  const read = lineReader(format, format === 'csv' ? await readCsvHeader(file) : undefined, numeric);
  for await (const l of readFileLines(file, fromLine, format === 'csv')) yield read(l);
}

/** Lines of the file (for --loop positions) without reading records. */
export async function countLines(file: string): Promise<number> {
  let n = 0;
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const _ of lines) n++;
  return n;
}

import { CopyEncodeError, encodeCopyRow, type CopyValue } from '../codec/copy-text.ts';
import { errorMessage } from '../errors.ts';
import type { StreamRecord } from '../records.ts';

/**
 * Rows for a COPY, as one buffer of COPY text: the rows of one polled batch for one sink, encoded in one pass (on the
 * main thread or in a stage worker). A flush writes its segments as they are, a few large writes, and only when
 * Postgres rejects a row does it look at single lines (see PostgresCopySink).
 */
export interface CopySegment {
  /** The COPY text of every row, one line each. */
  text: Buffer;
  /** Where each row's line ends, in bytes; row i is text[ends[i-1] .. ends[i]). */
  ends: Uint32Array;
  /** Each row's key (the sink's key column), when the sink has one: for in-batch duplicate detection. */
  keys: string[] | undefined;
  /** The record row i came from: its dead letter if Postgres rejects it, and its partition. */
  record(i: number): StreamRecord;
}

/** Where entry i of entries stored back to back (a line, a value) starts: where the one before it ends. */
export const lineStart = (ends: Uint32Array, i: number): number => (i === 0 ? 0 : ends[i - 1]);

/** String.prototype.isWellFormed (ES2024, in Node 20); O(1) for the one-byte strings most values are. */
type WellFormed = string & { isWellFormed(): boolean };

export interface EncodedRows {
  text: Buffer;
  ends: Uint32Array;
  keys: string[] | undefined;
  /** The records that became rows, in row order. */
  rows: StreamRecord[];
}

/**
 * Encodes records as COPY rows: toValues gives a record's column values, keyAt the key column (-1: none). A record
 * whose values COPY cannot carry is handed to reject instead (reason unencodable, or map-failed when toValues throws).
 */
export function encodeRows(records: StreamRecord[], toValues: (r: StreamRecord) => readonly CopyValue[], keyAt: number,
  reject: (r: StreamRecord, reason: string, message: string) => void): EncodedRows {
  const rows: StreamRecord[] = [];
  const keys: string[] | undefined = keyAt < 0 ? undefined : [];
  const charEnds: number[] = [];
  const lines: string[] = [];
  let chars = 0;
  for (const r of records) {
    let line: string;
    let values: readonly CopyValue[];
    try {
      values = toValues(r);
      // A lone UTF-16 surrogate (JSON allows "\ud800") has no UTF-8 form: it would reach Postgres as U+FFFD, silently changed.
      for (const x of values) if (typeof x === 'string' && !(x as WellFormed).isWellFormed()) throw new CopyEncodeError('a lone UTF-16 surrogate has no UTF-8 form (it would be stored as U+FFFD)');
      line = encodeCopyRow(values);
    } catch (err) {
      reject(r, (err as { code?: string }).code === 'COPY_UNENCODABLE' ? 'unencodable' : 'map-failed', errorMessage(err));
      continue;
    }
    lines.push(line);
    chars += line.length;
    charEnds.push(chars);
    rows.push(r);
    if (keys) keys.push(String(values[keyAt]));
  }
  const joined = lines.join('');
  const text = Buffer.from(joined, 'utf8');
  const ends = new Uint32Array(charEnds.length);
  if (text.length === joined.length) ends.set(charEnds); // all one-byte characters: characters are bytes
  else {
    let at = 0;
    for (let i = 0; i < lines.length; i++) ends[i] = at += Buffer.byteLength(lines[i], 'utf8');
  }
  return { text, ends, keys, rows };
}

/** A segment of the encoded rows, each row's record looked up in rows. */
export function segmentOf(e: EncodedRows): CopySegment {
  return { text: e.text, ends: e.ends, keys: e.keys, record: (i) => e.rows[i] };
}

/** The rows of a segment whose records pass keep, as a new segment (rebalances only: not a hot path). */
export function filterSegment(s: CopySegment, keep: (r: StreamRecord) => boolean): CopySegment | undefined {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  const keys: string[] | undefined = s.keys ? [] : undefined;
  const kept: number[] = [];
  let at = 0;
  for (let i = 0; i < s.ends.length; i++) {
    if (!keep(s.record(i))) continue;
    const start = lineStart(s.ends, i);
    parts.push(s.text.subarray(start, s.ends[i]));
    ends.push(at += s.ends[i] - start);
    keys?.push(s.keys![i]);
    kept.push(i);
  }
  if (kept.length === s.ends.length) return s;
  if (!kept.length) return undefined;
  return { text: Buffer.concat(parts), ends: Uint32Array.from(ends), keys, record: (i) => s.record(kept[i]) };
}

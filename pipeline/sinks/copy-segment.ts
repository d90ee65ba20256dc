import { CopyEncodeError, encodeCopyRow, encodeCopyValue, type CopyValue } from '../codec/copy-text.ts';
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
  /** Each row's key hash (keyHash of the sink's key column as COPY text), when the sink has one: for in-batch duplicates. */
  keyHashes: Uint32Array | undefined;
  /** The key column's index in a row, -1 when the sink has none. */
  keyAt: number;
  /** The record row i came from: its dead letter if Postgres rejects it, and its partition. */
  record(i: number): StreamRecord;
}

/** Where entry i of entries stored back to back (a line, a value) starts: where the one before it ends. */
export const lineStart = (ends: Uint32Array, i: number): number => (i === 0 ? 0 : ends[i - 1]);

/** String.prototype.isWellFormed (ES2024, in Node 20); O(1) for the one-byte strings most values are. */
type WellFormed = string & { isWellFormed(): boolean };

/**
 * FNV-1a over a key's COPY text (its UTF-16 code units). Rows cross from the stage workers with their keys as these
 * numbers rather than as strings: cloning 10,000 strings a batch and hashing them again in a Set cost the main thread
 * ~0.8 CPU s per 1M records (`npm run bench -- ingest --cpu-prof DIR`). Equal hashes are confirmed on the bytes.
 */
export function keyHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Row i's key as COPY text: field keyAt of its line (a value's own tabs are escaped, so tabs split fields exactly). */
export function keyField(s: { text: Buffer; ends: Uint32Array }, keyAt: number, i: number): Buffer {
  let start = lineStart(s.ends, i);
  const end = s.ends[i] - 1; // the newline
  for (let f = 0; f < keyAt; f++) start = s.text.indexOf(9, start) + 1;
  const tab = s.text.indexOf(9, start);
  return s.text.subarray(start, tab < 0 || tab > end ? end : tab);
}

export interface EncodedRows {
  text: Buffer;
  ends: Uint32Array;
  keyHashes: Uint32Array | undefined;
  keyAt: number;
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
  const keys: number[] | undefined = keyAt < 0 ? undefined : [];
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
    if (keys) keys.push(keyHash(encodeCopyValue(values[keyAt])));
  }
  const joined = lines.join('');
  const text = Buffer.from(joined, 'utf8');
  const ends = new Uint32Array(charEnds.length);
  if (text.length === joined.length) ends.set(charEnds); // all one-byte characters: characters are bytes
  else {
    let at = 0;
    for (let i = 0; i < lines.length; i++) ends[i] = at += Buffer.byteLength(lines[i], 'utf8');
  }
  return { text, ends, keyHashes: keys && Uint32Array.from(keys), keyAt, rows };
}

/** A segment of the encoded rows, each row's record looked up in rows. */
export function segmentOf(e: EncodedRows): CopySegment {
  return { text: e.text, ends: e.ends, keyHashes: e.keyHashes, keyAt: e.keyAt, record: (i) => e.rows[i] };
}

/** The rows of a segment whose records pass keep, as a new segment (rebalances only: not a hot path). */
export function filterSegment(s: CopySegment, keep: (r: StreamRecord) => boolean): CopySegment | undefined {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  const keys: number[] | undefined = s.keyHashes ? [] : undefined;
  const kept: number[] = [];
  let at = 0;
  for (let i = 0; i < s.ends.length; i++) {
    if (!keep(s.record(i))) continue;
    const start = lineStart(s.ends, i);
    parts.push(s.text.subarray(start, s.ends[i]));
    ends.push(at += s.ends[i] - start);
    keys?.push(s.keyHashes![i]);
    kept.push(i);
  }
  if (kept.length === s.ends.length) return s;
  if (!kept.length) return undefined;
  return { text: Buffer.concat(parts), ends: Uint32Array.from(ends), keyHashes: keys && Uint32Array.from(keys), keyAt: s.keyAt, record: (i) => s.record(kept[i]) };
}

import { encodeCopyRow, encodeCopyValue, type CopyValue } from '../codec/copy-text.ts';
import { binaryKeyText, MAX_VALUE_BYTES, type ColumnEncoder } from '../codec/copy-binary.ts';
import { CopyEncodeError, errorMessage, type DeadLetterReason } from '../errors.ts';
import type { StreamRecord } from '../records.ts';

/**
 * Rows for a COPY, as one buffer of COPY text: the rows of one polled batch for one sink, encoded in one pass (on the
 * main thread or in a stage worker). A flush writes its segments as they are, a few large writes, and only when
 * Postgres rejects a row does it look at single lines (see PostgresCopySink).
 */
export interface CopySegment {
  /** The COPY data of every row: a line of text each, or a binary tuple each when `binary` is set. */
  text: Buffer;
  /** Where each row ends, in bytes; row i is text[ends[i-1] .. ends[i]). */
  ends: Uint32Array;
  /** Set when the rows are in COPY's binary format (codec/copy-binary.ts): the column types they are encoded for. */
  binary?: BinaryRows;
  /** Each row's key hash (keyHash of the sink's key column as COPY text), when the sink has one: for in-batch duplicates. */
  keyHashes: Uint32Array | undefined;
  /** The (first) key column's index in a row, -1 when the sink has none. */
  keyAt: number;
  /** How many columns the key is, from keyAt on (1 unless the key is composite). */
  keyFields: number;
  /** The record row i came from: its dead letter if Postgres rejects it, and its partition. */
  record(i: number): StreamRecord;
}

/**
 * What a segment of binary rows carries: the Postgres types of the columns (pg_type names, in the sink's column
 * order) its values are encoded for, which the flush checks the table still has, and which print a key as its text.
 */
export interface BinaryRows {
  types: readonly string[];
}

/** Where entry i of entries stored back to back (a line, a value) starts: where the one before it ends. */
export const lineStart = (ends: Uint32Array, i: number): number => (i === 0 ? 0 : ends[i - 1]);

/** String.prototype.isWellFormed (ES2024, in Node 20); O(1) for the one-byte strings most values are. */
type WellFormed = string & { isWellFormed(): boolean };

/**
 * FNV-1a over a key's COPY text (its UTF-16 code units). Rows cross from the stage workers with their keys as these
 * numbers rather than as strings: cloning a batch's key strings and hashing them again in a Set was the main thread's
 * largest cost (docs/performance.md). Equal hashes are confirmed on the bytes.
 */
export function keyHash(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Row i's key as COPY text: fields keyAt .. keyAt + keyFields - 1 of its line, tabs between them (a value's own tabs
 * are escaped, so tabs split fields exactly).
 */
export function keyField(s: { text: Buffer; ends: Uint32Array; binary?: BinaryRows }, keyAt: number, i: number, keyFields = 1): Buffer {
  if (s.binary) return binaryKeyText(s.text, lineStart(s.ends, i), keyAt, s.binary.types.slice(keyAt, keyAt + keyFields));
  let start = lineStart(s.ends, i);
  const end = s.ends[i] - 1; // the newline
  for (let f = 0; f < keyAt; f++) start = s.text.indexOf(9, start) + 1;
  let stop = start - 1;
  for (let f = 0; f < keyFields; f++) {
    const tab = s.text.indexOf(9, stop + 1);
    stop = tab < 0 || tab > end ? end : tab;
  }
  return s.text.subarray(start, stop);
}

/** A sink's rows as COPY text with each line's end and key hash: what CopyRowsBuilder.finish() gives. */
export interface CopyRows {
  text: Buffer;
  ends: Uint32Array;
  binary?: BinaryRows;
  keyHashes: Uint32Array | undefined;
  keyAt: number;
  keyFields: number;
}

/**
 * COPY rows appended chunk after chunk (runtime/batch.ts) into one growing buffer, with their line ends and key
 * hashes in growing arrays: a polled batch's rows for a sink end up in one buffer of its own, with no buffer and
 * arrays per chunk and no concatenation at the end (each was an ArrayBuffer to allocate, and to collect).
 */
export class CopyRowsBuilder {
  private text: Buffer;
  private bytes = 0;
  private count = 0;
  private ends: Uint32Array;
  private hashes: Uint32Array | undefined;

  /**
   * keyAt: the first key column (-1: none), keyFields: how many adjacent columns the key is; rows and bytes: a guess
   * at the sizes it will reach (it grows past them).
   */
  constructor(readonly keyAt: number, rows = 256, bytes = 32_768, readonly keyFields = 1, readonly binary?: BinaryRows) {
    this.text = Buffer.allocUnsafeSlow(Math.max(bytes, 64));
    this.ends = new Uint32Array(Math.max(rows, 1));
    this.hashes = keyAt < 0 ? undefined : new Uint32Array(this.ends.length);
  }

  get length(): number {
    return this.count;
  }

  /**
   * Encodes the records' rows after those already here and returns the records that became rows, in order:
   * toValues gives a record's column values. A record whose values COPY cannot carry is handed to reject instead
   * (reason unencodable, or map-failed when toValues throws).
   */
  append(records: StreamRecord[], toValues: (r: StreamRecord) => readonly CopyValue[], reject: (r: StreamRecord, reason: DeadLetterReason, message: string) => void): StreamRecord[] {
    const { keyAt } = this;
    if (this.binary) throw new Error('binary COPY rows come only from the direct reader (appendBinary)');
    const rows: StreamRecord[] = [];
    const keys: number[] = [];
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
        reject(r, err instanceof CopyEncodeError ? 'unencodable' : 'map-failed', errorMessage(err));
        continue;
      }
      lines.push(line);
      chars += line.length;
      charEnds.push(chars);
      rows.push(r);
      if (keyAt >= 0) keys.push(keyHash(this.keyFields === 1 ? encodeCopyValue(values[keyAt]) : values.slice(keyAt, keyAt + this.keyFields).map(encodeCopyValue).join('\t')));
    }
    if (!rows.length) return rows;
    const joined = lines.join('');
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: measured exactly only when the room left might not do.
    if (this.text.length - this.bytes < 3 * joined.length) this.reserveBytes(Buffer.byteLength(joined, 'utf8'));
    this.reserveRows(rows.length);
    const base = this.bytes;
    const written = this.text.write(joined, base, 'utf8');
    if (written === joined.length) for (let i = 0; i < rows.length; i++) this.ends[this.count + i] = base + charEnds[i]; // one byte a character
    else for (let i = 0, at = base; i < rows.length; i++) this.ends[this.count + i] = at += Buffer.byteLength(lines[i], 'utf8');
    this.hashes?.set(keys, this.count);
    this.bytes += written;
    this.count += rows.length;
    return rows;
  }

  /**
   * Appends one row whose values are already COPY text in src, column c at src[starts[c], ends[c]) (single-byte
   * characters, as JsonRows finds them): copied a byte at a time, cheaper than a subarray per field.
   */
  appendFields(src: Uint8Array, starts: Int32Array, ends: Int32Array): void {
    const columns = starts.length;
    let bytes = columns; // the tabs and the newline
    for (let c = 0; c < columns; c++) bytes += ends[c] - starts[c];
    if (this.text.length - this.bytes < bytes) this.reserveBytes(bytes);
    this.reserveRows(1);
    const out = this.text;
    let at = this.bytes;
    for (let c = 0; c < columns; c++) {
      if (c > 0) out[at++] = 0x09;
      for (let k = starts[c], e = ends[c]; k < e; k++) out[at++] = src[k];
    }
    out[at++] = 0x0a;
    if (this.hashes) this.hashes[this.count] = this.fieldsHash(src, starts, ends);
    this.ends[this.count++] = at;
    this.bytes = at;
  }

  /**
   * Appends one row in COPY's binary format, each column's value (as for appendFields) written by its encoder;
   * false, with nothing appended, when an encoder does not take its value. The key hash is the one appendFields
   * gives the same row, so that keys compare across text and binary segments.
   */
  appendBinary(src: Uint8Array, starts: Int32Array, ends: Int32Array, encoders: readonly ColumnEncoder[]): boolean {
    const columns = starts.length;
    let bytes = 2;
    for (let c = 0; c < columns; c++) bytes += MAX_VALUE_BYTES + ends[c] - starts[c];
    if (this.text.length - this.bytes < bytes) this.reserveBytes(bytes);
    this.reserveRows(1);
    const out = this.text;
    out[this.bytes] = columns >>> 8; // the field count, big-endian
    out[this.bytes + 1] = columns;
    let at = this.bytes + 2;
    for (let c = 0; c < columns && at >= 0; c++) at = encoders[c](src, starts[c], ends[c], out, at);
    if (at < 0) return false;
    if (this.hashes) this.hashes[this.count] = this.fieldsHash(src, starts, ends);
    this.ends[this.count++] = at;
    this.bytes = at;
    return true;
  }

  /** keyHash over the key's characters, which are these bytes (and a tab between the fields of a composite key). */
  private fieldsHash(src: Uint8Array, starts: Int32Array, ends: Int32Array): number {
    let h = FNV_OFFSET;
    for (let f = this.keyAt; f < this.keyAt + this.keyFields; f++) {
      if (f > this.keyAt) h = Math.imul(h ^ 0x09, FNV_PRIME);
      for (let k = starts[f], e = ends[f]; k < e; k++) h = Math.imul(h ^ src[k], FNV_PRIME);
    }
    return h >>> 0;
  }

  /** The rows so far, as views of the builder's buffers: each array in an ArrayBuffer of its own, to transfer whole. */
  finish(): CopyRows {
    return { text: this.text.subarray(0, this.bytes), ends: this.ends.subarray(0, this.count), keyHashes: this.hashes?.subarray(0, this.count), keyAt: this.keyAt, keyFields: this.keyFields, binary: this.binary };
  }

  private reserveBytes(more: number): void {
    if (this.text.length - this.bytes >= more) return;
    const next = Buffer.allocUnsafeSlow(Math.max(2 * this.text.length, this.bytes + more));
    this.text.copy(next, 0, 0, this.bytes);
    this.text = next;
  }

  private reserveRows(more: number): void {
    if (this.ends.length - this.count >= more) return;
    const size = Math.max(2 * this.ends.length, this.count + more);
    const grow = (a: Uint32Array) => {
      const next = new Uint32Array(size);
      next.set(a.subarray(0, this.count));
      return next;
    };
    this.ends = grow(this.ends);
    if (this.hashes) this.hashes = grow(this.hashes);
  }
}

export interface EncodedRows extends CopyRows {
  /** The records that became rows, in row order. */
  rows: StreamRecord[];
}

/** Encodes records as COPY rows, keyAt the key column (-1: none); see CopyRowsBuilder.append. */
export function encodeRows(records: StreamRecord[], toValues: (r: StreamRecord) => readonly CopyValue[], keyAt: number,
  reject: (r: StreamRecord, reason: DeadLetterReason, message: string) => void, keyFields = 1): EncodedRows {
  const b = new CopyRowsBuilder(keyAt, records.length, undefined, keyFields);
  const rows = b.append(records, toValues, reject);
  return { ...b.finish(), rows };
}

/** A segment of the encoded rows, each row's record looked up in rows. */
export function segmentOf(e: EncodedRows): CopySegment {
  return { text: e.text, ends: e.ends, keyHashes: e.keyHashes, keyAt: e.keyAt, keyFields: e.keyFields, binary: e.binary, record: (i) => e.rows[i] };
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
  return { text: Buffer.concat(parts), ends: Uint32Array.from(ends), keyHashes: keys && Uint32Array.from(keys), keyAt: s.keyAt, keyFields: s.keyFields, binary: s.binary, record: (i) => s.record(kept[i]) };
}

/** Whether a sink's pending item is a CopySegment (a COPY sink's) rather than a record. */
export function isCopySegment(item: unknown): item is CopySegment {
  return typeof item === 'object' && item !== null && 'ends' in item && 'text' in item && 'record' in item;
}

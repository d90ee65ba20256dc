import { isMultipleOf } from '../schema/decimal.ts';
import { isDigit, type BytesCheck } from '../schema/format-bytes.ts';
import type { CopyRowsBuilder } from '../sinks/copy-segment.ts';
import type { ColumnEncoder, JsonKind } from './copy-binary.ts';

/**
 * JSON values straight to COPY rows, for a flat object schema whose properties are the sink's columns by name: one
 * pass over the message's bytes that finds each property's value, checks it against the schema, and copies its
 * bytes into the COPY text as they are. No string, object or row is made for a record it reads (JSON.parse, ajv and
 * the COPY encoder together were ~4 µs a record, most of a stage worker's time: `npm run bench -- stages`).
 *
 * It only reads what it can decide exactly as JSON.parse + ajv + the COPY encoder would, and gives up on anything
 * else (read() returns false): the record then takes that generic path, which decides it (a row, or a dead letter
 * with its reason). What it reads:
 * - an object of distinct keys, each a property of the schema, with every required property and every column;
 * - strings of printable ASCII without escapes (their COPY text is their bytes; length in bytes is length in code
 *   points), checked for minLength, maxLength and format with ajv's format check (on the bytes for uuid and date-time);
 * - integers of at most 15 digits, and decimals of at most 15 digits without an exponent, written as JavaScript
 *   prints the double they parse to (no trailing zero in the fraction, no -0, not below 1e-6), so that the COPY
 *   text String(value) would give is the bytes themselves; checked for minimum, maximum and multipleOf (decimal.ts)
 *   on that double, which is exactly JSON.parse's: digits / 10^k with both below 2^53 is one correctly rounded
 *   division (Clinger's fast path).
 * Everything else (escapes, non-ASCII text, exponents, long numbers, booleans, nulls, nesting, duplicate or unknown
 * keys) goes the generic way. A schema with any keyword outside this list gets no reader at all (compileJsonRows
 * gives undefined). test/unit/codec/json-rows.test.ts checks it against the generic path on mutated orders.
 */
export interface JsonRows {
  /** Reads the JSON value in bytes[start, end); true when it is a row, which write() then appends. */
  read(bytes: Uint8Array, start: number, end: number): boolean;
  /** Appends the row last read (from the same bytes) to rows. */
  write(bytes: Uint8Array, rows: CopyRowsBuilder): void;
  /**
   * Appends the row last read to rows (a binary builder) with an encoder per column (codec/copy-binary.ts); false,
   * with nothing appended, when some value is not one its encoder writes.
   */
  writeBinary(bytes: Uint8Array, rows: CopyRowsBuilder, encoders: readonly ColumnEncoder[]): boolean;
  /** What each column holds in a row it reads: a JSON string's content or a number's bytes. */
  readonly columnKinds: readonly JsonKind[];
}

/** A format's check as ajv runs it, on bytes (validator.ts gives ajv's), or undefined when it has none. */
export type FormatCheck = (name: string) => BytesCheck | undefined;

const Kind = { String: 0, Integer: 1, Number: 2 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

interface Property {
  name: Buffer;
  kind: Kind;
  /** Its column in the row, -1 when it is no column (validated only). */
  column: number;
  minLength: number;
  maxLength: number;
  format: BytesCheck | undefined;
  minimum: number;
  maximum: number;
  exclusiveMinimum: number;
  exclusiveMaximum: number;
  multipleOf: number | undefined;
}

const ANNOTATIONS = ['title', 'description', '$comment', 'examples', 'default', 'deprecated'];
const OBJECT_KEYWORDS = new Set(['$schema', '$id', 'type', 'properties', 'required', 'additionalProperties', ...ANNOTATIONS]);
const STRING_KEYWORDS = new Set(['type', 'minLength', 'maxLength', 'format', ...ANNOTATIONS]);
const NUMBER_KEYWORDS = new Set(['type', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', ...ANNOTATIONS]);

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const num = (x: unknown, fallback: number): number | undefined => (x === undefined ? fallback : typeof x === 'number' && Number.isFinite(x) ? x : undefined);

/**
 * The reader for rows of columns (each a property of schema, by name), or undefined when the schema has anything
 * it cannot decide exactly.
 */
export function compileJsonRows(schema: unknown, columns: readonly string[], format: FormatCheck): JsonRows | undefined {
  if (!isRecord(schema) || schema.type !== 'object' || !isRecord(schema.properties)) return undefined;
  if (Object.keys(schema).some((k) => !OBJECT_KEYWORDS.has(k))) return undefined;
  const required = schema.required ?? [];
  if (!Array.isArray(required) || required.some((r) => typeof r !== 'string')) return undefined;
  const properties: Property[] = [];
  for (const [name, p] of Object.entries(schema.properties)) {
    if (!isRecord(p) || !/^[\x20-\x7e]*$/.test(name) || name.includes('"') || name.includes('\\')) return undefined;
    const column = columns.indexOf(name);
    if (p.type === 'string') {
      if (Object.keys(p).some((k) => !STRING_KEYWORDS.has(k))) return undefined;
      const minLength = num(p.minLength, 0);
      const maxLength = num(p.maxLength, Infinity);
      const check = p.format === undefined ? undefined : typeof p.format === 'string' ? format(p.format) : undefined;
      if (minLength === undefined || maxLength === undefined || (p.format !== undefined && !check)) return undefined;
      properties.push({ name: Buffer.from(name, 'latin1'), kind: Kind.String, column, minLength, maxLength, format: check,
        minimum: -Infinity, maximum: Infinity, exclusiveMinimum: -Infinity, exclusiveMaximum: Infinity, multipleOf: undefined });
    } else if (p.type === 'integer' || p.type === 'number') {
      if (Object.keys(p).some((k) => !NUMBER_KEYWORDS.has(k))) return undefined;
      const bounds = [num(p.minimum, -Infinity), num(p.maximum, Infinity), num(p.exclusiveMinimum, -Infinity), num(p.exclusiveMaximum, Infinity)];
      const multipleOf = p.multipleOf === undefined ? undefined : num(p.multipleOf, 0);
      if (bounds.some((b) => b === undefined) || (p.multipleOf !== undefined && !(multipleOf! > 0))) return undefined;
      const [minimum, maximum, exclusiveMinimum, exclusiveMaximum] = bounds as number[];
      properties.push({ name: Buffer.from(name, 'latin1'), kind: p.type === 'integer' ? Kind.Integer : Kind.Number, column,
        minLength: 0, maxLength: Infinity, format: undefined, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf });
    } else return undefined;
  }
  const index = (name: string) => properties.findIndex((p) => p.name.toString('latin1') === name);
  if (columns.some((c) => index(c) < 0)) return undefined;
  // Present in every record it reads: the required properties and the columns.
  const needed = [...new Set([...required.map(index), ...columns.map(index)])];
  if (needed.includes(-1)) return undefined; // a required property the schema does not describe: never read
  const kinds = columns.map((c): JsonKind => (properties[index(c)].kind === Kind.String ? 'string' : 'number'));
  return new FlatJsonRows(properties, needed, kinds);
}

const POW10 = Array.from({ length: 16 }, (_, k) => 10 ** k);

/** JSON's whitespace: space, tab, newline, carriage return. */
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

class FlatJsonRows implements JsonRows {
  /** Record number of the last read() in which each property was seen: a duplicate key gives up. */
  private readonly seen: Float64Array;
  private reads = 0;
  /** Where each column's COPY text is in the bytes last read. */
  private readonly starts: Int32Array;
  private readonly ends: Int32Array;

  constructor(private readonly properties: Property[], private readonly needed: number[], readonly columnKinds: readonly JsonKind[]) {
    this.seen = new Float64Array(properties.length);
    this.starts = new Int32Array(columnKinds.length);
    this.ends = new Int32Array(columnKinds.length);
  }

  read(b: Uint8Array, start: number, end: number): boolean {
    const read = ++this.reads;
    let i = skip(b, start, end);
    if (i >= end || b[i] !== 0x7b) return false; // {
    i = skip(b, i + 1, end);
    let expect = 0; // properties usually come in the schema's order: try the next one first
    for (;;) {
      if (i >= end || b[i] !== 0x22) return false; // "
      const p = this.key(b, i + 1, end, expect);
      if (p < 0 || this.seen[p] === read) return false;
      this.seen[p] = read;
      expect = p + 1;
      const prop = this.properties[p];
      i = skip(b, i + 2 + prop.name.length, end);
      if (i >= end || b[i] !== 0x3a) return false; // :
      i = skip(b, i + 1, end);
      i = prop.kind === Kind.String ? this.string(prop, b, i, end) : this.number(prop, b, i, end);
      if (i < 0) return false;
      i = skip(b, i, end);
      if (i >= end) return false;
      if (b[i] === 0x2c) { // ,
        i = skip(b, i + 1, end);
        continue;
      }
      if (b[i] !== 0x7d) return false; // }
      break;
    }
    if (skip(b, i + 1, end) !== end) return false;
    for (let n = 0; n < this.needed.length; n++) if (this.seen[this.needed[n]] !== read) return false;
    return true;
  }

  write(b: Uint8Array, rows: CopyRowsBuilder): void {
    rows.appendFields(b, this.starts, this.ends);
  }

  writeBinary(b: Uint8Array, rows: CopyRowsBuilder, encoders: readonly ColumnEncoder[]): boolean {
    return rows.appendBinary(b, this.starts, this.ends, encoders);
  }

  /** The property whose name is the key at b[start] (up to its closing quote), or -1. */
  private key(b: Uint8Array, start: number, end: number, expect: number): number {
    const ps = this.properties;
    if (expect < ps.length && named(ps[expect].name, b, start, end)) return expect;
    for (let p = 0; p < ps.length; p++) if (p !== expect && named(ps[p].name, b, start, end)) return p;
    return -1; // unknown, or escaped (no name has a backslash or a quote)
  }

  /** A string of printable ASCII without escapes; where it ends, or -1. */
  private string(p: Property, b: Uint8Array, i: number, end: number): number {
    if (i >= end || b[i] !== 0x22) return -1;
    const from = i + 1;
    let j = from;
    for (; j < end; j++) {
      const c = b[j];
      if (c === 0x22) break;
      if (c < 0x20 || c > 0x7f || c === 0x5c) return -1;
    }
    if (j >= end) return -1;
    const length = j - from;
    if (length < p.minLength || length > p.maxLength) return -1;
    if (p.format && !p.format(b, from, j)) return -1;
    if (p.column >= 0) {
      this.starts[p.column] = from;
      this.ends[p.column] = j;
    }
    return j + 1;
  }

  /** An integer or decimal that prints back as its own bytes; where it ends, or -1. */
  private number(p: Property, b: Uint8Array, i: number, end: number): number {
    const from = i;
    const negative = i < end && b[i] === 0x2d; // -
    if (negative) i++;
    if (i >= end) return -1;
    let digits = 0;
    let mantissa = 0;
    if (b[i] === 0x30) i++; // a leading 0 stands alone
    else {
      for (; i < end && isDigit(b[i]); i++, digits++) mantissa = mantissa * 10 + (b[i] - 0x30);
      if (digits === 0) return -1;
    }
    let fraction = 0;
    if (i < end && b[i] === 0x2e) { // .
      if (p.kind === Kind.Integer) return -1; // 1.0 is an integer to ajv; the generic path decides it
      for (i++; i < end && isDigit(b[i]); i++, fraction++) mantissa = mantissa * 10 + (b[i] - 0x30);
      if (fraction === 0 || b[i - 1] === 0x30) return -1; // "1." is not JSON; "1.50" prints as 1.5
      if (digits === 0 && fraction > 6) return -1; // below 1e-6 prints with an exponent
    }
    if (i < end && (b[i] === 0x65 || b[i] === 0x45)) return -1; // e E
    if (digits + fraction > 15) return -1;
    if (negative && mantissa === 0) return -1; // -0 prints as 0
    const value = (negative ? -mantissa : mantissa) / POW10[fraction];
    if (value < p.minimum || value > p.maximum || value <= p.exclusiveMinimum || value >= p.exclusiveMaximum) return -1;
    if (p.multipleOf !== undefined && !isMultipleOf(value, p.multipleOf)) return -1;
    if (p.column >= 0) {
      this.starts[p.column] = from;
      this.ends[p.column] = i;
    }
    return i;
  }
}

function skip(b: Uint8Array, i: number, end: number): number {
  while (i < end && isSpace(b[i])) i++;
  return i;
}

/** Whether b holds name and its closing quote from start on. */
function named(name: Buffer, b: Uint8Array, start: number, end: number): boolean {
  const n = name.length;
  if (start + n >= end || b[start + n] !== 0x22) return false;
  for (let k = 0; k < n; k++) if (name[k] !== b[start + k]) return false;
  return true;
}

/**
 * PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format") for the
 * rows the direct reader (json-rows.ts) reads: each value encoded straight from its JSON bytes. Postgres' binary input
 * functions cost it less CPU than the text ones for uuid, numeric and timestamptz (docs/performance.md), and Postgres
 * was half of the ingest's CPU.
 *
 * An encoder only writes a value whose meaning it knows exactly, the one Postgres' text input would give the same
 * bytes; for anything else it gives -1 and the row is written as text instead, which Postgres decides as before
 * (test/integration/copy-binary.test.ts holds the two to the same table and the same dead letters):
 * - uuid: 8-4-4-4-12 lowercase hex digits (as it prints back); not the other spellings uuid_in accepts.
 * - int2, int4, int8: an integer within the type's range.
 * - numeric: any number the reader reads (at most 15 digits, no exponent), as base-10000 digits with its scale; the
 *   column's typmod rounds and checks it on the server as it does text.
 * - float8: the double JSON.parse gives, which strtod gives for the same digits.
 * - text, varchar: the bytes (the reader only reads printable ASCII without escapes).
 * - timestamptz: YYYY-MM-DDTHH:MM:SS, up to six fraction digits, Z or ±HH:MM; a real date, year 1 to 9999, no leap
 *   second, offset under 15 hours.
 * A table with any other column type is written as text.
 */

/** Writes the value in src[start, end) (a JSON string's content or a number's bytes) at out[at]: length, then bytes. */
export type ColumnEncoder = (src: Uint8Array, start: number, end: number, out: Buffer, at: number) => number;

/** What the direct reader finds in a column: a JSON string or a JSON number. */
export type JsonKind = 'string' | 'number';

/** The 11-byte signature, flags and header extension length: what a binary COPY starts with. */
export const BINARY_HEADER = Buffer.from('PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0', 'latin1');
/** A field count of -1: what a binary COPY ends with. */
export const BINARY_TRAILER = Buffer.from([0xff, 0xff]);

/** Bytes one encoded value can take, besides a string's own bytes: its length and a numeric's 8-byte header and 8 digits. */
export const MAX_VALUE_BYTES = 4 + 24;

/**
 * An encoder for each column (Postgres type name from pg_type, JSON kind from the reader), or undefined when some
 * column has a type or kind binary is not written for.
 */
export function binaryEncoders(types: readonly string[], kinds: readonly JsonKind[]): ColumnEncoder[] | undefined {
  if (types.length !== kinds.length) return undefined;
  const out: ColumnEncoder[] = [];
  for (let c = 0; c < types.length; c++) {
    const e = ENCODERS[`${types[c]}:${kinds[c]}`];
    if (!e) return undefined;
    out.push(e);
  }
  return out;
}

const HEX = '0123456789abcdef';
const HEX_VALUE = new Int8Array(256).fill(-1);
for (let d = 0; d < 16; d++) HEX_VALUE[HEX.charCodeAt(d)] = d;

function uuid(b: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
  if (end - start !== 36 || b[start + 8] !== 0x2d || b[start + 13] !== 0x2d || b[start + 18] !== 0x2d || b[start + 23] !== 0x2d) return -1;
  put32(out, at, 16);
  let o = at + 4;
  let bad = 0;
  for (let i = start; i < end;) {
    if (b[i] === 0x2d) i++;
    const hi = HEX_VALUE[b[i]];
    const lo = HEX_VALUE[b[i + 1]];
    bad |= hi | lo;
    out[o++] = (hi << 4) | (lo & 15);
    i += 2;
  }
  return bad < 0 ? -1 : o;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

// Big-endian integers written byte by byte: Buffer's writeInt32BE and friends check their arguments on every call,
// a third of an encoder's time. A Uint8Array keeps the low 8 bits of what is stored, so either sign works.
function put16(out: Uint8Array, at: number, v: number): number {
  out[at] = v >>> 8;
  out[at + 1] = v;
  return at + 2;
}

function put32(out: Uint8Array, at: number, v: number): number {
  out[at] = v >>> 24;
  out[at + 1] = v >>> 16;
  out[at + 2] = v >>> 8;
  out[at + 3] = v;
  return at + 4;
}

/** A JSON integer (the reader's: at most 15 digits, so exact as a double), or NaN when it has a fraction. */
function integer(b: Uint8Array, start: number, end: number): number {
  const negative = b[start] === 0x2d;
  let v = 0;
  for (let i = negative ? start + 1 : start; i < end; i++) {
    const c = b[i];
    if (!isDigit(c)) return NaN;
    v = v * 10 + (c - 0x30);
  }
  return negative ? -v : v;
}

const int = (bytes: 2 | 4, min: number, max: number): ColumnEncoder => (b, start, end, out, at) => {
  const v = integer(b, start, end);
  if (!(v >= min && v <= max)) return -1;
  put32(out, at, bytes);
  return bytes === 2 ? put16(out, at + 4, v) : put32(out, at + 4, v);
};

const TWO_32 = 2 ** 32;

/** v (an integer below 2^53 in magnitude) as a big-endian int64 at out[at]. */
function int64(v: number, out: Buffer, at: number): number {
  const hi = Math.floor(v / TWO_32);
  put32(out, at, hi);
  return put32(out, at + 4, v - hi * TWO_32);
}

function int8(b: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
  const v = integer(b, start, end);
  if (Number.isNaN(v)) return -1;
  put32(out, at, 8);
  return int64(v, out, at + 4);
}

const POW10 = Array.from({ length: 16 }, (_, k) => 10 ** k);

/** The double a JSON number of the reader's (at most 15 digits, no exponent) parses to: digits / 10^k, one rounding. */
function double(b: Uint8Array, start: number, end: number): number {
  const negative = b[start] === 0x2d;
  let mantissa = 0;
  let fraction = -1;
  for (let i = negative ? start + 1 : start; i < end; i++) {
    const c = b[i];
    if (c === 0x2e) fraction = 0;
    else {
      mantissa = mantissa * 10 + (c - 0x30);
      if (fraction >= 0) fraction++;
    }
  }
  const v = mantissa / POW10[Math.max(fraction, 0)];
  return negative ? -v : v;
}

function float8(b: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
  put32(out, at, 8);
  return out.writeDoubleBE(double(b, start, end), at + 4);
}

/**
 * numeric's binary form: ndigits, weight (of the first base-10000 digit), sign, dscale (digits after the point), then
 * the base-10000 digits, leading and trailing zero digits left out. Groups of four decimal digits are aligned on the
 * point: leftwards for the integer part, rightwards for the fraction.
 */
function numeric(b: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
  const negative = b[start] === 0x2d;
  let i = negative ? start + 1 : start;
  let point = i;
  while (point < end && b[point] !== 0x2e) point++;
  const fractionDigits = point < end ? end - point - 1 : 0;
  // Decimal digit k counts from the point: k < 0 is the integer part (k = -1 the units), k >= 0 the fraction.
  const firstGroup = Math.floor((i - point) / 4); // the group of the integer part's first digit (groups of 4 from the point)
  const lastGroup = fractionDigits ? Math.ceil(fractionDigits / 4) - 1 : -1;
  let o = at + 12;
  let weight = 0;
  let n = 0;
  let trailing = 0; // digits written since the last non-zero one
  for (let g = firstGroup; g <= lastGroup; g++) {
    let d = 0;
    for (let j = 0; j < 4; j++) {
      const k = g * 4 + j; // decimal position from the point
      const p = k < 0 ? point + k : point + 1 + k;
      const c = (k < 0 ? p >= i : k < fractionDigits) ? b[p] - 0x30 : 0;
      d = d * 10 + c;
    }
    if (n === 0 && d === 0) continue; // a leading zero digit
    if (n === 0) weight = -g - 1;
    o = put16(out, o, d);
    n++;
    trailing = d === 0 ? trailing + 1 : 0;
  }
  n -= trailing;
  o -= 2 * trailing;
  if (n === 0) weight = 0;
  put32(out, at, 8 + 2 * n);
  put16(out, at + 4, n);
  put16(out, at + 6, weight);
  put16(out, at + 8, negative && n ? 0x4000 : 0);
  put16(out, at + 10, fractionDigits);
  return o;
}

function bytes(b: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
  put32(out, at, end - start);
  let o = at + 4;
  for (let k = start; k < end; k++) out[o++] = b[k];
  return o;
}

const DAYS_TO_2000 = 10957; // 1970-01-01 to 2000-01-01, Postgres' epoch
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (as Postgres counts them). */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** n decimal digits at b[k], or -1. */
function digitsAt(b: Uint8Array, k: number, n: number): number {
  let v = 0;
  for (let j = k; j < k + n; j++) {
    const c = b[j];
    if (!isDigit(c)) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v;
}

/** timestamptz: microseconds since 2000-01-01 UTC, as an int64. */
function timestamptz(b: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
  const s = start;
  if (end - s < 20 || b[s + 4] !== 0x2d || b[s + 7] !== 0x2d || b[s + 10] !== 0x54 || b[s + 13] !== 0x3a || b[s + 16] !== 0x3a) return -1; // - - T : :
  const year = digitsAt(b, s, 4);
  const month = digitsAt(b, s + 5, 2);
  const day = digitsAt(b, s + 8, 2);
  const hour = digitsAt(b, s + 11, 2);
  const minute = digitsAt(b, s + 14, 2);
  const second = digitsAt(b, s + 17, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) return -1;
  const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > MONTH_DAYS[month - 1] + (leap ? 1 : 0)) return -1;
  let k = s + 19;
  let micros = 0;
  if (b[k] === 0x2e) { // .
    let n = 0;
    for (k++; k < end && isDigit(b[k]); k++, n++) micros = micros * 10 + (b[k] - 0x30);
    if (n === 0 || n > 6) return -1;
    micros *= POW10[6 - n];
  }
  let offset = 0; // minutes east of UTC
  if (b[k] === 0x5a) k++; // Z
  else if ((b[k] === 0x2b || b[k] === 0x2d) && b[k + 3] === 0x3a) { // + - and :
    const h = digitsAt(b, k + 1, 2);
    const m = digitsAt(b, k + 4, 2);
    if (h < 0 || h > 14 || m < 0 || m > 59) return -1;
    offset = (b[k] === 0x2d ? -1 : 1) * (h * 60 + m);
    k += 6;
  } else return -1;
  if (k !== end) return -1;
  const seconds = (daysFromCivil(year, month, day) - DAYS_TO_2000) * 86400 + hour * 3600 + (minute - offset) * 60 + second;
  // seconds * 10^6 + micros passes 2^53; seconds * 15625 (= 10^6 / 64) does not: the int64 is that times 64, plus micros.
  const a = seconds * 15625;
  let hi = Math.floor(a / 2 ** 26);
  let lo = (a - hi * 2 ** 26) * 64 + micros;
  if (lo >= TWO_32) {
    lo -= TWO_32;
    hi++;
  }
  put32(out, at, 8);
  put32(out, at + 4, hi);
  return put32(out, at + 8, lo);
}

const ENCODERS: Record<string, ColumnEncoder> = {
  'uuid:string': uuid,
  'int2:number': int(2, -32768, 32767),
  'int4:number': int(4, -(2 ** 31), 2 ** 31 - 1),
  'int8:number': int8,
  'numeric:number': numeric,
  'float8:number': float8,
  'text:string': bytes,
  'text:number': bytes,
  'varchar:string': bytes,
  'varchar:number': bytes,
  'timestamptz:string': timestamptz,
};

/** Key column types whose binary value binaryKeyText prints back as the COPY text the row would have had. */
const KEY_TYPES = new Set(['uuid', 'int2', 'int4', 'int8', 'text', 'varchar']);

/** Whether a sink whose key is these column types can be written in binary (see binaryKeyText). */
export const binaryKeyTypes = (types: readonly string[]): boolean => types.every((t) => KEY_TYPES.has(t));

/**
 * A binary row's key as the COPY text its text row would have: the fields keyAt .. keyAt + types.length - 1 of the
 * tuple at data[rowStart] (a 2-byte field count, then each field's 4-byte length and bytes), tabs between them. The
 * encoders take only the spellings that print back as themselves (lowercase uuids, plain integers), so a key
 * compares the same whichever way its row was written.
 */
export function binaryKeyText(data: Buffer, rowStart: number, keyAt: number, types: readonly string[]): Buffer {
  let k = rowStart + 2;
  for (let f = 0; f < keyAt; f++) k += 4 + data.readInt32BE(k);
  const parts: string[] = [];
  for (const type of types) {
    const n = data.readInt32BE(k);
    const at = k + 4;
    if (type === 'uuid') {
      const hex = data.toString('hex', at, at + 16);
      parts.push(`${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`);
    } else if (type === 'int2') parts.push(String(data.readInt16BE(at)));
    else if (type === 'int4') parts.push(String(data.readInt32BE(at)));
    else if (type === 'int8') parts.push(String(data.readBigInt64BE(at)));
    else parts.push(data.toString('latin1', at, at + n));
    k = at + n;
  }
  return Buffer.from(parts.join('\t'), 'latin1');
}

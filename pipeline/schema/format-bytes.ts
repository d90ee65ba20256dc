/**
 * Format checks on ASCII bytes in place, for the direct reader (codec/json-rows.ts): each the same grammar as the
 * check ajv runs on the string (validator.ts decides which applies), without making the string, which was a large
 * part of the reader's time (docs/performance.md).
 * test/unit/schema/format-bytes.test.ts holds each to its string form on generated and mutated values.
 */

/** A format check over b[start, end). */
export type BytesCheck = (b: Uint8Array, start: number, end: number) => boolean;

export const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
/** The character, lower-cased when it is an ASCII letter. */
const lower = (c: number) => (c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
const URN = Buffer.from('urn:uuid:', 'latin1');

/** 1 for the bytes of 0-9 a-f A-F, else 0: a load per character instead of three range tests. */
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1;

/**
 * isUuid (validator.ts) on bytes: /^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i. The four dashes
 * first, then the 32 hex digits through HEX with no branch per character: ~45 against ~235 ns a uuid with a range
 * test and a dash test per character, which a profile of the stage worker had at 0.42 CPU s per 1M orders.
 */
export function uuidBytes(b: Uint8Array, start: number, end: number): boolean {
  let s = start;
  if (end - start === 45) {
    for (let k = 0; k < 9; k++) if (lower(b[start + k]) !== URN[k]) return false;
    s += 9;
  } else if (end - start !== 36) return false;
  if (b[s + 8] !== 0x2d || b[s + 13] !== 0x2d || b[s + 18] !== 0x2d || b[s + 23] !== 0x2d) return false; // '-'
  let ok = 1;
  for (let i = 0; i < 8; i++) ok &= HEX[b[s + i]];
  for (let i = 9; i < 13; i++) ok &= HEX[b[s + i]];
  for (let i = 14; i < 18; i++) ok &= HEX[b[s + i]];
  for (let i = 19; i < 23; i++) ok &= HEX[b[s + i]];
  for (let i = 24; i < 36; i++) ok &= HEX[b[s + i]];
  return ok === 1;
}

/** The date-time regex of ajv-formats' fast mode, which validator.ts confirms is the one ajv runs. */
export const FAST_DATE_TIME = /^\d\d\d\d-[0-1]\d-[0-3]\dt(?:[0-2]\d:[0-5]\d:[0-5]\d|23:59:60)(?:\.\d+)?(?:z|[+-]\d\d(?::?\d\d)?)$/i;

/** FAST_DATE_TIME on bytes. */
export function dateTimeBytes(b: Uint8Array, start: number, end: number): boolean {
  const n = end - start;
  if (n < 20) return false; // yyyy-mm-ddThh:mm:ssZ at least
  const s = start;
  // yyyy-mm-dd t
  if (!digits(b, s, s + 4) || b[s + 4] !== 0x2d || !within(b[s + 5], 0x30, 0x31) || !isDigit(b[s + 6]) || b[s + 7] !== 0x2d
    || !within(b[s + 8], 0x30, 0x33) || !isDigit(b[s + 9]) || lower(b[s + 10]) !== 0x74) return false;
  // hh:mm:ss, or the leap second 23:59:60
  if (b[s + 13] !== 0x3a || b[s + 16] !== 0x3a) return false;
  const time = within(b[s + 11], 0x30, 0x32) && isDigit(b[s + 12]) && within(b[s + 14], 0x30, 0x35) && isDigit(b[s + 15]) && within(b[s + 17], 0x30, 0x35) && isDigit(b[s + 18]);
  const leap = b[s + 11] === 0x32 && b[s + 12] === 0x33 && b[s + 14] === 0x35 && b[s + 15] === 0x39 && b[s + 17] === 0x36 && b[s + 18] === 0x30;
  if (!time && !leap) return false;
  let k = s + 19;
  if (b[k] === 0x2e) { // .digits
    k++;
    if (k >= end || !isDigit(b[k])) return false;
    while (k < end && isDigit(b[k])) k++;
  }
  if (k >= end) return false;
  if (lower(b[k]) === 0x7a) return k + 1 === end; // z
  if (b[k] !== 0x2b && b[k] !== 0x2d) return false; // + -
  if (k + 3 > end || !digits(b, k + 1, k + 3)) return false;
  k += 3;
  if (k === end) return true;
  if (b[k] === 0x3a) k++;
  return k + 2 === end && digits(b, k, k + 2);
}

const within = (c: number, lo: number, hi: number) => c >= lo && c <= hi;

function digits(b: Uint8Array, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (!isDigit(b[k])) return false;
  return true;
}

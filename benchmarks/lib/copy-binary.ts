import type { Order } from '../../pipeline/index.ts';

/**
 * PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4) for the
 * rows of orders_data, to measure what the binary input functions save Postgres against the text ones (the
 * performance issue's first lever). The bench encodes every row before it times anything, as it does the text.
 *
 * A batch is the 19-byte header, then per row a field count and each field's length and bytes, then -1.
 * uuid: its 16 bytes. bigint, integer: big-endian. text: UTF-8. numeric: ndigits, weight, sign, dscale and base-10000
 * digits. timestamptz: microseconds since 2000-01-01 UTC as a big-endian int64.
 */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

export class BinaryCopyWriter {
  private buf = Buffer.allocUnsafe(1 << 20);
  private at = 0;

  constructor() {
    this.room(SIGNATURE.length + 8);
    SIGNATURE.copy(this.buf, 0);
    this.at = SIGNATURE.length;
    this.int32(0); // flags: no OIDs
    this.int32(0); // header extension length
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  private int16(v: number): void {
    this.room(2);
    this.at = this.buf.writeInt16BE(v, this.at);
  }

  private int32(v: number): void {
    this.room(4);
    this.at = this.buf.writeInt32BE(v, this.at);
  }

  fields(n: number): void {
    this.int16(n);
  }

  uuid(text: string): void {
    this.int32(16);
    this.room(16);
    this.at += this.buf.write(text.replace(/-/g, ''), this.at, 'hex');
  }

  int8(v: number): void {
    this.int32(8);
    this.room(8);
    this.at = this.buf.writeBigInt64BE(BigInt(v), this.at);
  }

  int4(v: number): void {
    this.int32(4);
    this.int32(v);
  }

  text(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.int32(n);
    this.room(n);
    this.at += this.buf.write(s, this.at, 'utf8');
  }

  /** A decimal given as its text (digits, an optional point and fraction, an optional leading minus). */
  numeric(text: string): void {
    const negative = text.startsWith('-');
    const [intPart, frac = ''] = (negative ? text.slice(1) : text).split('.');
    const dscale = frac.length;
    // Base-10000 digits: the integer part grouped from the point leftwards, the fraction rightwards.
    const ip = intPart.replace(/^0+/, '');
    const padInt = ip.padStart(Math.ceil(ip.length / 4) * 4, '0');
    const padFrac = frac.padEnd(Math.ceil(frac.length / 4) * 4, '0');
    const digits: number[] = [];
    for (let i = 0; i < padInt.length; i += 4) digits.push(Number(padInt.slice(i, i + 4)));
    for (let i = 0; i < padFrac.length; i += 4) digits.push(Number(padFrac.slice(i, i + 4)));
    let weight = padInt.length / 4 - 1;
    while (digits.length && digits[0] === 0) {
      digits.shift();
      weight--;
    }
    while (digits.length && digits[digits.length - 1] === 0) digits.pop();
    if (!digits.length) weight = 0;
    this.int32(8 + 2 * digits.length);
    this.int16(digits.length);
    this.int16(weight);
    this.int16(negative && digits.length ? 0x4000 : 0);
    this.int16(dscale);
    for (const d of digits) this.int16(d);
  }

  timestamptz(iso: string): void {
    const ms = Date.parse(iso);
    if (!Number.isFinite(ms)) throw new Error(`not a timestamp: ${iso}`);
    const micros = /\.\d{3}(\d{1,3})/.exec(iso)?.[1]?.padEnd(3, '0') ?? '000';
    this.int32(8);
    this.room(8);
    this.at = this.buf.writeBigInt64BE(BigInt(ms - PG_EPOCH_MS) * 1000n + BigInt(micros), this.at);
  }

  /** The batch with its trailer; the writer is done. */
  end(): Buffer {
    this.int16(-1);
    return this.buf.subarray(0, this.at);
  }
}

/** One orders_data row (ORDER_COLUMNS) in binary. */
export function writeOrderBinary(w: BinaryCopyWriter, o: Order): void {
  w.fields(6);
  w.uuid(o.order_id);
  w.int8(o.order_number);
  w.text(o.product);
  w.int4(o.quantity);
  w.numeric(String(o.price));
  w.timestamptz(o.ordered_at);
}

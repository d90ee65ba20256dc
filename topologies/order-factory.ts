import crypto from 'node:crypto';
import { prng } from '../pipeline/builder.ts';

export { prng };

// The order factory alone, apart from the topology that sends its orders: the generator's worker thread imports this
// module, and a worker must not load node-rdkafka (it cannot run in a worker thread).

/** The products orders are for, in the order products-generator publishes them. */
export const PRODUCTS = ['Laptop', 'Phone', 'Headphones', 'Monitor', 'Keyboard', 'Mouse', 'Webcam', 'Desk Lamp', 'Chair', 'Backpack',
  'Tablet', 'Charger', 'Speaker', 'Router', 'SSD 1TB', 'Coffee Grinder', 'Kettle', 'Notebook', 'Pen Set', 'Water Bottle'];

export const INVALID_KINDS = ['malformed-json', 'missing-field', 'wrong-type', 'negative-quantity'] as const;
export type InvalidKind = (typeof INVALID_KINDS)[number];

/**
 * UUIDv7 (RFC 9562 section 5.7): 48-bit Unix milliseconds, version 7, a 12-bit counter that keeps ids of the same
 * millisecond increasing (method 1 of section 6.2), the variant, and 62 random bits.
 */
export class UuidV7 {
  private lastMs = 0;
  private counter = 0;
  private pool = Buffer.alloc(8 * 4096);
  private poolAt = this.pool.length;
  private readonly bytes = Buffer.alloc(16);

  next(now = Date.now()): string {
    if (now > this.lastMs) {
      this.lastMs = now;
      this.counter = 0;
    } else if (++this.counter > 0xfff) {
      this.lastMs++; // counter exhausted: borrow the next millisecond, as RFC 9562 allows
      this.counter = 0;
    }
    if (this.poolAt >= this.pool.length) {
      crypto.randomFillSync(this.pool);
      this.poolAt = 0;
    }
    const b = this.bytes;
    b.writeUIntBE(this.lastMs, 0, 6);
    b[6] = 0x70 | (this.counter >> 8);
    b[7] = this.counter & 0xff;
    this.pool.copy(b, 8, this.poolAt, this.poolAt + 8);
    this.poolAt += 8;
    b[8] = 0x80 | (b[8] & 0x3f);
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

export interface GeneratedOrder {
  key: string;
  value: string;
  invalid: InvalidKind | undefined;
  /** Deliberately older than the window and grace it belongs to (--late-ratio). */
  late: boolean;
}

/**
 * Event time of the generated orders. By default the wall clock; with eventTimeStart, simulated time that advances
 * stepMs per record, so a fast run spans many windows. outOfOrderMs jitters each time back by up to that much;
 * a lateRatio share is pushed back by lateByMs, past its window's grace period.
 */
export interface EventTimeOptions {
  eventTimeStart?: number;
  stepMs?: number;
  outOfOrderMs?: number;
  lateRatio?: number;
  lateByMs?: number;
}

/** Makes the orders: valid ones per schemas/order.schema.json, and a share of deliberately invalid ones. */
export class OrderFactory {
  private readonly rand: () => number;
  private readonly ids = new UuidV7();
  private orderNumber = 0;
  private simulated: number | undefined;
  constructor(seed: number, private readonly invalidRatio: number, private readonly time: EventTimeOptions = {}) {
    this.rand = prng(seed);
    this.simulated = time.eventTimeStart;
  }

  private eventTime(now: number): { at: number; late: boolean } {
    const t = this.time;
    let at = now;
    if (this.simulated !== undefined) {
      at = this.simulated;
      this.simulated += t.stepMs ?? 1;
    }
    if (t.outOfOrderMs) at -= Math.floor(this.rand() * (t.outOfOrderMs + 1));
    const late = t.lateRatio !== undefined && t.lateRatio > 0 && this.rand() < t.lateRatio;
    if (late) at -= t.lateByMs ?? 120_000;
    return { at, late };
  }

  /** toISOString of the last event time: at a full rate some hundreds of orders share each millisecond. */
  private iso = { at: NaN, text: '' };

  next(now = Date.now()): GeneratedOrder {
    const r = this.rand;
    const time = this.eventTime(now);
    if (time.at !== this.iso.at) this.iso = { at: time.at, text: new Date(time.at).toISOString() };
    const order = {
      order_id: this.ids.next(now),
      order_number: ++this.orderNumber,
      product: PRODUCTS[Math.floor(r() * PRODUCTS.length)],
      quantity: 1 + Math.floor(r() * 10),
      price: Math.floor(r() * 100_000 + 1) / 100,
      ordered_at: this.iso.text,
    };
    const invalid = this.invalidRatio > 0 && r() < this.invalidRatio ? INVALID_KINDS[Math.floor(r() * INVALID_KINDS.length)] : undefined;
    let value: string;
    switch (invalid) {
      case undefined:
        // JSON.stringify(order), written out: nothing here needs escaping (uuid, ASCII product names, an ISO time) and
        // a number prints as JSON prints it. Twice as fast; a unit test holds it to JSON.stringify.
        value = `{"order_id":"${order.order_id}","order_number":${order.order_number},"product":"${order.product}","quantity":${order.quantity},"price":${order.price},"ordered_at":"${order.ordered_at}"}`;
        break;
      case 'malformed-json':
        value = JSON.stringify(order).slice(0, 20 + Math.floor(r() * 40));
        break;
      case 'missing-field': {
        const { product: _, ...rest } = order;
        value = JSON.stringify(rest);
        break;
      }
      case 'wrong-type':
        value = JSON.stringify({ ...order, quantity: String(order.quantity) });
        break;
      case 'negative-quantity':
        value = JSON.stringify({ ...order, quantity: -order.quantity });
        break;
    }
    return { key: order.order_id, value, invalid, late: time.late };
  }
}

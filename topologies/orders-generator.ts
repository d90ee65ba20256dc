import crypto from 'node:crypto';
import fs from 'node:fs';
import { ensureTopics, topicName } from '../pipeline/kafka/admin.ts';
import { KafkaProducer } from '../pipeline/kafka/producer.ts';
import { Progress } from '../pipeline/runtime/progress.ts';
import { retry, sleep } from '../pipeline/runtime/retry.ts';
import { registryFromEnv, valueSerializer } from '../pipeline/schema/registry.ts';
import { orderSchema } from '../pipeline/schema/validator.ts';
import type { Topology } from '../pipeline/topology.ts';
import { ConfigError } from '../pipeline/errors.ts';

const PRODUCTS = ['Laptop', 'Phone', 'Headphones', 'Monitor', 'Keyboard', 'Mouse', 'Webcam', 'Desk Lamp', 'Chair', 'Backpack',
  'Tablet', 'Charger', 'Speaker', 'Router', 'SSD 1TB', 'Coffee Grinder', 'Kettle', 'Notebook', 'Pen Set', 'Water Bottle'];

export const INVALID_KINDS = ['malformed-json', 'missing-field', 'wrong-type', 'negative-quantity'] as const;
export type InvalidKind = (typeof INVALID_KINDS)[number];

/** A small seeded PRNG (mulberry32): the same seed gives the same sequence of products, prices and invalid kinds. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

  next(now = Date.now()): GeneratedOrder {
    const r = this.rand;
    const time = this.eventTime(now);
    const order = {
      order_id: this.ids.next(now),
      order_number: ++this.orderNumber,
      product: PRODUCTS[Math.floor(r() * PRODUCTS.length)],
      quantity: 1 + Math.floor(r() * 10),
      price: Math.floor(r() * 100_000 + 1) / 100,
      ordered_at: new Date(time.at).toISOString(),
    };
    const invalid = this.invalidRatio > 0 && r() < this.invalidRatio ? INVALID_KINDS[Math.floor(r() * INVALID_KINDS.length)] : undefined;
    let value: string;
    switch (invalid) {
      case undefined:
        value = JSON.stringify(order);
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

export const ordersGenerator: Topology = {
  name: 'orders-generator',
  description: 'Produces synthetic orders to Kafka, forever or --count of them, at --rate per second (0 = as fast as possible).',
  uses: { kafka: true, postgres: false },
  options: [
    { name: 'rate', type: 'int', min: 0, default: 1000, help: 'records per second, 0 = as fast as possible' },
    { name: 'count', type: 'int', min: 1, help: 'stop after this many records (default: never)' },
    { name: 'invalid-ratio', type: 'number', min: 0, max: 1, default: 0, help: 'share of deliberately invalid records' },
    { name: 'seed', type: 'int', help: 'seed for reproducible products, prices and invalid kinds (default: random)' },
    { name: 'topic', type: 'string', default: 'orders', help: 'topic to produce to, or read from' },
    { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic when it is created' },
    { name: 'event-time-start', type: 'string', help: 'simulated event time of the first order (ISO 8601); default: the wall clock' },
    { name: 'event-time-step-ms', type: 'int', min: 0, default: 1, help: 'simulated event time advances this much per order (with --event-time-start)' },
    { name: 'out-of-order-ms', type: 'int', min: 0, default: 0, help: 'jitter each event time back by up to this many ms' },
    { name: 'late-ratio', type: 'number', min: 0, max: 1, default: 0, help: 'share of orders older than their window plus grace (late records)' },
    { name: 'late-by-ms', type: 'int', min: 1, default: 120_000, help: 'how far back a late order is pushed' },
    { name: 'report', type: 'string', help: 'write the keys (order ids) of the valid and invalid records sent to this JSON file at the end, for checks by id' },
  ],
  validate(v) {
    if (v['event-time-start'] !== undefined && !Number.isFinite(Date.parse(v['event-time-start'] as string))) {
      throw new ConfigError(`--event-time-start: expected an ISO 8601 time such as 2026-01-01T00:00:00Z, got "${v['event-time-start']}"`);
    }
    topicName(v.topic as string);
  },
  describe(v) {
    return [
      `Topology orders-generator`,
      `  source  synthetic orders (UUIDv7 keys, ${v.rate === 0 ? 'as fast as possible' : `${v.rate}/s`}, invalid ratio ${v['invalid-ratio']})`,
      `  sink    topic ${v.topic} (idempotent producer, key = order_id)`,
    ].join('\n');
  },
  async run(ctx, v) {
    const topic = v.topic as string;
    const rate = v.rate as number;
    const count = v.count as number | undefined;
    const seed = (v.seed as number | undefined) ?? crypto.randomInt(2 ** 31);
    await retry('creating topics', () => ensureTopics(ctx.kafka, [{ name: topic, partitions: v.partitions as number }]), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    // With SCHEMA_REGISTRY_URL: the order schema registered as <topic>-value, every value in the Confluent wire format.
    const serializer = await retry('registering the order schema', () => valueSerializer(topic, orderSchema(), registryFromEnv()), ctx.log, ctx.signal).catch(() => undefined);
    if (!serializer) return;
    const producer = new KafkaProducer(ctx.kafka, { 'client.id': 'orders-generator' });
    await retry('connecting to Kafka', () => producer.connect(), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    ctx.setReady(true);
    const progress = new Progress('orders-generator', 'rec');
    const produced = ctx.metrics.produced.labels({ topology: 'orders-generator', topic });
    producer.onDelivery = () => {
      progress.total++;
    };
    progress.start();
    const factory = new OrderFactory(seed, v['invalid-ratio'] as number, {
      eventTimeStart: v['event-time-start'] === undefined ? undefined : Date.parse(v['event-time-start'] as string),
      stepMs: v['event-time-step-ms'] as number,
      outOfOrderMs: v['out-of-order-ms'] as number,
      lateRatio: v['late-ratio'] as number,
      lateByMs: v['late-by-ms'] as number,
    });
    let late = 0;
    // Only with --report: the keys sent, valid and invalid, for a check by order_id (scripts/chaos.ts).
    const report = v.report === undefined ? undefined : { valid: [] as string[], invalid: [] as string[] };
    const invalidByKind: Record<string, number> = {};
    let sent = 0;
    const startedAt = Date.now();
    let lastMetric = 0;
    try {
      while (!ctx.signal.aborted && (count === undefined || sent < count)) {
        // How many may go now: everything (rate 0) or what the rate allows since the start, in slices of 10 ms.
        let allowed = rate === 0 ? 10_000 : Math.floor(((Date.now() - startedAt) * rate) / 1000) - sent;
        if (count !== undefined) allowed = Math.min(allowed, count - sent);
        if (allowed <= 0) {
          await sleep(Math.max(1, Math.min(10, 1000 / rate)), ctx.signal);
          continue;
        }
        const now = Date.now();
        for (let i = 0; i < allowed; i++) {
          const o = factory.next(now);
          const message = { topic, key: o.key, value: serializer.encode(o.value), timestamp: now };
          if (!producer.tryProduce(message)) {
            await producer.waitForRoom();
            await producer.produce(message);
          }
          sent++;
          if (report) (o.invalid ? report.invalid : report.valid).push(o.key);
          if (o.late) late++;
          if (o.invalid) {
            invalidByKind[o.invalid] = (invalidByKind[o.invalid] ?? 0) + 1;
            progress.invalid++;
          }
        }
        if (producer.delivered !== lastMetric) {
          produced.inc(producer.delivered - lastMetric);
          lastMetric = producer.delivered;
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await producer.flush(120_000);
    } finally {
      produced.inc(producer.delivered - lastMetric);
      progress.stop();
      await producer.disconnect();
    }
    const invalid = Object.values(invalidByKind).reduce((a, b) => a + b, 0);
    const kinds = Object.entries(invalidByKind).map(([k, n]) => `${k} ${n}`).join(', ');
    if (report) {
      // Written only when every record was acknowledged or failed for good (flush above), so the keys are what Kafka holds.
      fs.writeFileSync(v.report as string, JSON.stringify({ topic, produced: producer.delivered, failed: producer.failed, valid: report.valid, invalid: report.invalid }));
    }
    ctx.log(`produced ${producer.delivered} records to ${topic} (valid ${sent - invalid}, invalid ${invalid}${kinds ? `: ${kinds}` : ''}), late ${late}, seed ${seed}`);
    if (producer.failed) throw new Error(`${producer.failed} records were not acknowledged by Kafka`);
  },
};

import {
  type Database, encodeCopyRow, ensureTopics, type KafkaConnection, KafkaProducer, type Order,
} from '../../pipeline/index.ts';
import { orderRow, ORDERS_TABLE_SQL } from '../../topologies/orders-ingest-plan.ts';
import { OrderFactory, type EventTimeOptions } from '../../topologies/orders-generator.ts';
import { BinaryCopyWriter, writeOrderBinary } from './copy-binary.ts';

/** The columns orders-ingest writes, and the table it creates (kept identical here so every comparator writes the same). */
export const ORDER_COLUMNS = ['order_id', 'order_number', 'product', 'quantity', 'price', 'ordered_at'];

export async function createOrdersTable(db: Database, table: string): Promise<void> {
  await db.none(ORDERS_TABLE_SQL.replace('$TABLE', table));
}

export interface Prefill {
  produced: number;
  valid: number;
  seconds: number;
  /** COPY text of the valid rows, one string per `batch` rows, for the COPY ceiling (none with `copy: 'none'`). */
  copyBatches: string[];
  /** The same batches in binary COPY format, with `copy: 'text+binary'`. */
  binaryBatches: Buffer[];
}

/**
 * Fills a fresh topic with N orders made by the generator's own OrderFactory (UUIDv7 keys, seeded products and
 * prices), produced with the pipeline's producer, and keeps the valid rows' COPY text for the COPY ceiling.
 */
export async function prefillOrders(kafka: KafkaConnection, topic: string, o: { count: number; partitions: number; invalidRatio: number; seed: number; batch: number; time?: EventTimeOptions; copy?: 'text' | 'text+binary' | 'none' }): Promise<Prefill> {
  const copy = o.copy ?? 'text';
  await ensureTopics(kafka, [{ name: topic, partitions: o.partitions }]);
  const producer = new KafkaProducer(kafka, { 'client.id': 'bench-prefill' });
  await producer.connect();
  const factory = new OrderFactory(o.seed, o.invalidRatio, o.time);
  const copyBatches: string[] = [];
  const binaryBatches: Buffer[] = [];
  let lines: string[] = [];
  let binary = copy === 'text+binary' ? new BinaryCopyWriter() : undefined;
  let valid = 0;
  const started = performance.now();
  try {
    for (let i = 0; i < o.count; i++) {
      const now = Date.now();
      const g = factory.next(now);
      const m = { topic, key: g.key, value: Buffer.from(g.value), timestamp: now };
      if (!producer.tryProduce(m)) await producer.produce(m);
      if (!g.invalid) {
        valid++;
        if (copy !== 'none') {
          const order = JSON.parse(g.value) as Order;
          lines.push(encodeCopyRow(orderRow(order)));
          if (binary) writeOrderBinary(binary, order);
          if (lines.length === o.batch) {
            copyBatches.push(lines.join(''));
            lines = [];
            if (binary) {
              binaryBatches.push(binary.end());
              binary = new BinaryCopyWriter();
            }
          }
        }
      }
      if ((i & 4095) === 4095) await new Promise<void>((r) => setImmediate(r));
    }
    if (lines.length) {
      copyBatches.push(lines.join(''));
      if (binary) binaryBatches.push(binary.end());
    }
    await producer.flush(300_000);
  } finally {
    await producer.disconnect();
  }
  return { produced: o.count, valid, seconds: (performance.now() - started) / 1000, copyBatches, binaryBatches };
}

import {
  compileSchema, defineTopology, ensureTopics, KafkaProducer, loadSchema, prng, retry, sleep, topicName, type Validator,
} from '../pipeline/index.ts';
import crypto from 'node:crypto';
import { PRODUCTS } from './order-factory.ts';

/** A product as the compacted topic `products` holds it (schemas/product.schema.json), keyed by its name. */
export interface Product {
  product: string;
  category: string;
  unit_cost: number;
}

export const validateProduct = (): Validator<Product> => compileSchema<Product>(loadSchema('product'));

const CATEGORY: Record<string, string> = {
  Laptop: 'electronics', Phone: 'electronics', Tablet: 'electronics', Monitor: 'electronics', Webcam: 'electronics',
  Router: 'electronics', 'SSD 1TB': 'electronics', Speaker: 'electronics',
  Headphones: 'accessories', Keyboard: 'accessories', Mouse: 'accessories', Charger: 'accessories', Backpack: 'accessories',
  'Desk Lamp': 'office', Chair: 'office', Notebook: 'office', 'Pen Set': 'office',
  'Coffee Grinder': 'kitchen', Kettle: 'kitchen', 'Water Bottle': 'kitchen',
};

/** A cost in whole cents, from 1.00 to 500.00. */
const cost = (rand: () => number) => (100 + Math.floor(rand() * 49_901)) / 100;

export const productsGenerator = defineTopology({
  name: 'products-generator',
  description: 'Writes the product catalogue (product, category, unit_cost) to the compacted topic products, keyed by the product names orders use; --updates N re-publishes changed costs.',
  uses: { kafka: true, postgres: false },
  options: [
    { name: 'topic', type: 'string', default: 'products', help: 'compacted topic of the catalogue' },
    { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic when it is created' },
    { name: 'products', type: 'int', min: 0, max: PRODUCTS.length, default: PRODUCTS.length, help: 'publish the first N products only (orders for the others find no product: category unknown)' },
    { name: 'updates', type: 'int', min: 0, default: 0, help: 'after the catalogue, re-publish this many changed costs, one every --update-interval-ms' },
    { name: 'update-interval-ms', type: 'int', min: 0, default: 1000, help: 'time between two cost updates' },
    { name: 'seed', type: 'int', help: 'seed for reproducible costs (default: random)' },
  ],
  topics: (v) => ({ reads: [], writes: [v.topic] }),
  validate(v) {
    topicName(v.topic);
  },
  describe(v) {
    return [
      'Topology products-generator',
      `  source  the first ${v.products} of ${PRODUCTS.length} products, then ${v.updates} cost updates every ${v['update-interval-ms']} ms`,
      `  sink    topic ${v.topic} (compacted, key = product name, value {"product", "category", "unit_cost"})`,
    ].join('\n');
  },
  async run(ctx, v) {
    const topic = v.topic;
    await retry('creating topics', () => ensureTopics(ctx.kafka, [{ name: topic, partitions: v.partitions, config: { 'cleanup.policy': 'compact' } }]), ctx.log, ctx.signal)
      .catch(() => undefined);
    if (ctx.signal.aborted) return;
    const producer = new KafkaProducer(ctx.kafka, { 'client.id': 'products-generator' });
    await retry('connecting to Kafka', () => producer.connect(), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    ctx.setReady(true);
    const seed = v.seed ?? crypto.randomInt(2 ** 31);
    const rand = prng(seed);
    const catalogue = PRODUCTS.slice(0, v.products).map((product): Product => ({ product, category: CATEGORY[product] ?? 'other', unit_cost: cost(rand) }));
    const send = (p: Product) => producer.produce({ topic, key: p.product, value: Buffer.from(JSON.stringify(p)) });
    let sent = 0;
    try {
      for (const p of catalogue) await send(p);
      sent += catalogue.length;
      await producer.flush(60_000);
      for (let u = 0; u < v.updates && catalogue.length && !ctx.signal.aborted; u++) {
        // With no interval the updates go as fast as the producer takes them, acknowledged at the end.
        const paced = v['update-interval-ms'] > 0;
        if (paced) await sleep(v['update-interval-ms'], ctx.signal).catch(() => undefined);
        if (ctx.signal.aborted) break;
        const p = catalogue[Math.floor(rand() * catalogue.length)];
        p.unit_cost = cost(rand);
        await send(p);
        if (paced) await producer.flush(60_000);
        sent++;
      }
      await producer.flush(60_000);
    } finally {
      ctx.metrics.produced.labels({ topology: 'products-generator', topic }).inc(producer.delivered);
      await producer.disconnect();
    }
    ctx.log(`produced ${producer.delivered} product records to ${topic} (${catalogue.length} products, ${sent - catalogue.length} cost updates), seed ${seed}`);
    if (producer.delivered !== sent) throw new Error(`${sent - producer.delivered} of ${sent} product records were not acknowledged by Kafka`);
  },
});

/**
 * A topology of a user's own, outside the engine's repository: it imports only the package's public API.
 *
 *   npm run topology -- ./examples/producer.ts --example customers --count 100000
 *
 * produces the records the example connectors (examples/customers.json, examples/page-views.yaml) move into Postgres:
 * customers as a CDC-like stream (new customers, updates of earlier ones, and tombstones that delete them, each keyed
 * by customer_id), or page views.
 */
import { writeFileSync } from 'node:fs';
import { defineTopology, ensureTopics, KafkaProducer, prng, Progress, topicName } from 'orders-stream-pipeline';

const CITIES = ['Lisbon', 'Oslo', 'Kyoto', 'Lagos', 'Lima', 'Perth', 'Quebec', 'Zürich'];
const TIERS = ['free', 'pro', 'enterprise'];

export interface ExampleRecord {
  key: string;
  value: Record<string, unknown> | null;
}

/**
 * Customers: a new customer, or (updateRatio) a new version of a live one, or (deleteRatio) a tombstone for a live
 * one. `live` ends as the fold of what was produced: each live customer's last value.
 */
export function* customers(count: number, seed: number, updateRatio: number, deleteRatio: number, live = new Map<number, Record<string, unknown>>()): Generator<ExampleRecord> {
  const rnd = prng(seed);
  const ids: number[] = [];
  let next = 1;
  for (let i = 0; i < count; i++) {
    const r = rnd();
    const pick = () => {
      const at = Math.floor(rnd() * ids.length);
      const id = ids[at];
      ids[at] = ids[ids.length - 1];
      ids.pop();
      return id;
    };
    if (ids.length && r < deleteRatio) {
      const id = pick();
      live.delete(id);
      yield { key: String(id), value: null };
      continue;
    }
    const id = ids.length && r < deleteRatio + updateRatio ? pick() : next++;
    ids.push(id);
    const value = {
      customer_id: id, name: `Customer ${id}`, email: `c${id}@example.com`, tier: TIERS[Math.floor(rnd() * TIERS.length)],
      credit: Math.round(rnd() * 1_000_000) / 100, address: { street: `${1 + Math.floor(rnd() * 200)} Main St`, city: CITIES[Math.floor(rnd() * CITIES.length)] },
      updated_at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    };
    live.set(id, value);
    yield { key: String(id), value };
  }
}

export function* pageViews(count: number, seed: number): Generator<ExampleRecord> {
  const rnd = prng(seed);
  for (let i = 0; i < count; i++) {
    const hex = (n: number) => Math.floor(rnd() * 16 ** n).toString(16).padStart(n, '0');
    const id = `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
    yield {
      key: id,
      value: {
        view_id: id, url: `https://shop.example/p/${Math.floor(rnd() * 1000)}`, user_id: 1 + Math.floor(rnd() * 5000),
        ...(rnd() < 0.5 ? { referrer: 'https://search.example/' } : {}),
        viewed_at: new Date(Date.UTC(2026, 0, 1) + i * 10).toISOString(), duration_ms: Math.floor(rnd() * 60_000),
      },
    };
  }
}

export default defineTopology({
  name: 'example-producer',
  description: 'Produces the example connectors\' records: customers (upserts and deletes) or page views.',
  uses: { kafka: true, postgres: false },
  options: [
    { name: 'example', type: 'string', choices: ['customers', 'page-views'], default: 'customers', help: 'which records' },
    { name: 'count', type: 'int', min: 1, default: 100_000, help: 'records to produce' },
    { name: 'topic', type: 'string', help: 'topic (default: customers, or page_views)' },
    { name: 'partitions', type: 'int', min: 1, max: 1000, default: 3, help: 'partitions of the topic when it is created' },
    { name: 'seed', type: 'int', default: 1, help: 'seed: the same seed gives the same records' },
    { name: 'update-ratio', type: 'number', min: 0, max: 1, default: 0.2, help: 'customers: share of records that update a live customer' },
    { name: 'delete-ratio', type: 'number', min: 0, max: 1, default: 0.02, help: 'customers: share of records that delete one (a tombstone)' },
    { name: 'report', type: 'string', help: 'customers: write the fold of what was produced (each live customer\'s last value) to this JSON file' },
  ],
  validate: (v) => { topicName(v.topic ?? 'x'); },
  topics: (v) => ({ reads: [], writes: [v.topic ?? (v.example === 'customers' ? 'customers' : 'page_views')] }),
  describe: (v) => `Topology example-producer\n  source  ${v.count} ${v.example}\n  sink    topic ${v.topic ?? (v.example === 'customers' ? 'customers' : 'page_views')}`,
  async run(ctx, v) {
    const topic = v.topic ?? (v.example === 'customers' ? 'customers' : 'page_views');
    await ensureTopics(ctx.kafka, [{ name: topic, partitions: v.partitions }]);
    const producer = new KafkaProducer(ctx.kafka);
    await producer.connect();
    const live = new Map<number, Record<string, unknown>>();
    const records = v.example === 'customers' ? customers(v.count, v.seed, v['update-ratio'], v['delete-ratio'], live) : pageViews(v.count, v.seed);
    const progress = new Progress('example-producer', 'rec');
    progress.start();
    let n = 0;
    try {
      for (const r of records) {
        if (ctx.signal.aborted) break;
        await producer.produce({ topic, key: r.key, value: r.value === null ? null : Buffer.from(JSON.stringify(r.value)) });
        progress.total = ++n;
        // produce() resolves at once while librdkafka's queue has room: let timers and signals in now and then.
        if (n % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await producer.flush();
    } finally {
      progress.stop();
      await producer.disconnect();
    }
    ctx.log(`produced ${n} records to ${topic}`);
    if (v.report) writeFileSync(v.report, JSON.stringify({ produced: n, live: Object.fromEntries(live) }));
  },
});

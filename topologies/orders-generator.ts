import {
  Aborted, ConfigError, ensureTopics, KafkaProducer, orderSchema, Progress, registryFromEnv, retry, sleep, topicName, defineTopology, valueSerializer,
} from '../pipeline/index.ts';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { invalidKindOf, OrderBatches, type OrderBatch } from './order-batches.ts';
import { prng } from './order-factory.ts';
import { paymentsOf } from './payments.ts';

export { INVALID_KINDS, OrderFactory, prng, UuidV7, type EventTimeOptions, type GeneratedOrder, type InvalidKind } from './order-factory.ts';

/** --value-schema: a JSON Schema file, read and parsed at start. */
function valueSchemaOf(file: string): object {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`--value-schema: cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const schema = JSON.parse(text) as unknown;
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error('not a JSON object');
    return schema;
  } catch (err) {
    throw new ConfigError(`--value-schema: ${file} is not a JSON Schema: ${(err as Error).message}`);
  }
}

export const ordersGenerator = defineTopology({
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
    { name: 'value-schema', type: 'string', help: 'JSON Schema file registered as <topic>-value when SCHEMA_REGISTRY_URL is set (default: schemas/order.schema.json); a new version, such as one with another optional property' },
    { name: 'report', type: 'string', help: 'write the keys (order ids) of the valid and invalid records sent to this JSON file at the end, for checks by id' },
    { name: 'payments-ratio', type: 'number', min: 0, max: 1, default: 0, help: 'share of valid orders that also get a payment on --payments-topic (for orders-paid)' },
    { name: 'payment-delay-ms', type: 'int', min: 0, default: 30_000, help: 'a payment is paid up to this long after its order, in event time' },
    { name: 'payments-topic', type: 'string', default: 'payments', help: 'topic of the payments, keyed by order_id like the orders (co-partitioned with them)' },
  ],
  topics: (v) => ({ reads: [], writes: v['payments-ratio'] > 0 ? [v.topic, v['payments-topic']] : [v.topic] }),
  validate(v) {
    if (v['event-time-start'] !== undefined && !Number.isFinite(Date.parse(v['event-time-start']))) {
      throw new ConfigError(`--event-time-start: expected an ISO 8601 time such as 2026-01-01T00:00:00Z, got "${v['event-time-start']}"`);
    }
    topicName(v.topic);
    topicName(v['payments-topic'], '--payments-topic');
    if (v['value-schema'] !== undefined) valueSchemaOf(v['value-schema']);
  },
  describe(v) {
    return [
      `Topology orders-generator`,
      `  source  synthetic orders (UUIDv7 keys, ${v.rate === 0 ? 'as fast as possible' : `${v.rate}/s`}, invalid ratio ${v['invalid-ratio']})`,
      `  sink    topic ${v.topic} (idempotent producer, key = order_id)`,
      ...(v['payments-ratio'] > 0 ? [`  sink    topic ${v['payments-topic']} (payments of ${v['payments-ratio'] * 100}% of valid orders, up to ${v['payment-delay-ms']} ms after them, key = order_id)`] : []),
    ].join('\n');
  },
  async run(ctx, v) {
    const topic = v.topic;
    const rate = v.rate;
    const count = v.count;
    const seed = v.seed ?? crypto.randomInt(2 ** 31);
    const paymentsTopic = v['payments-ratio'] > 0 ? v['payments-topic'] : undefined;
    const topics = [topic, ...(paymentsTopic ? [paymentsTopic] : [])].map((name) => ({ name, partitions: v.partitions }));
    await retry('creating topics', () => ensureTopics(ctx.kafka, topics), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    // With SCHEMA_REGISTRY_URL: the order schema registered as <topic>-value, every value in the Confluent wire format.
    // A schema the registry refuses (incompatible with the subject's versions) stops the generator before it sends.
    const schema = v['value-schema'] === undefined ? orderSchema() : valueSchemaOf(v['value-schema']);
    const serializer = await retry('registering the order schema', () => valueSerializer(topic, schema, registryFromEnv()), ctx.log, ctx.signal)
      .catch((err: unknown) => { if (err instanceof Aborted) return undefined; throw err; });
    if (!serializer) return;
    const producer = new KafkaProducer(ctx.kafka, { 'client.id': 'orders-generator' });
    await retry('connecting to Kafka', () => producer.connect(), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    ctx.setReady(true);
    const progress = new Progress('orders-generator', 'rec');
    const produced = ctx.metrics.produced.labels({ topology: 'orders-generator', topic });
    producer.onDelivery = (n) => {
      progress.total += n;
    };
    progress.start();
    const batches = new OrderBatches({
      seed, invalidRatio: v['invalid-ratio'], schemaId: serializer.schemaId,
      time: {
        eventTimeStart: v['event-time-start'] === undefined ? undefined : Date.parse(v['event-time-start']),
        stepMs: v['event-time-step-ms'],
        outOfOrderMs: v['out-of-order-ms'],
        lateRatio: v['late-ratio'],
        lateByMs: v['late-by-ms'],
      },
    });
    let late = 0;
    let payments = 0;
    const paymentRand = prng(seed ^ 0x5eed);
    // Only with --report: the keys sent, valid and invalid, for a check by order_id (scripts/chaos.ts).
    const report = v.report === undefined ? undefined : { file: v.report, valid: [] as string[], invalid: [] as string[] };
    const invalidByKind: Record<string, number> = {};
    let sent = 0;
    const startedAt = Date.now();
    let lastMetric = 0;
    // As fast as possible: the worker makes the next batch while this one is produced.
    let ahead: Promise<OrderBatch> | undefined;
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
        const batch = await (ahead ?? batches.next(allowed, now));
        ahead = undefined;
        const after = count === undefined ? 10_000 : Math.min(10_000, count - sent - batch.keys.length);
        if (rate === 0 && after > 0) ahead = batches.next(after, Date.now());
        // The whole batch in one call to the binding, its delivery reports counted there (not an event each).
        await producer.producePacked(topic, { values: batch.values, valueEnds: batch.valueEnds, keys: batch.keyBytes, keyEnds: batch.keyEnds });
        sent += batch.keys.length;
        if (paymentsTopic) {
          const p = paymentsOf(batch, { ratio: v['payments-ratio'], delayMs: v['payment-delay-ms'], rand: paymentRand, wireHeader: serializer.schemaId !== undefined });
          if (p.count) await producer.producePacked(paymentsTopic, { values: p.values, valueEnds: p.valueEnds, keys: p.keyBytes, keyEnds: p.keyEnds });
          payments += p.count;
        }
        for (let i = 0; i < batch.keys.length; i++) {
          const invalid = invalidKindOf(batch.invalid[i]);
          if (report) (invalid ? report.invalid : report.valid).push(batch.keys[i]);
          if (batch.late[i]) late++;
          if (invalid) {
            invalidByKind[invalid] = (invalidByKind[invalid] ?? 0) + 1;
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
      ahead?.catch(() => undefined);
      await batches.close();
      produced.inc(producer.delivered - lastMetric);
      progress.stop();
      await producer.disconnect();
    }
    const invalid = Object.values(invalidByKind).reduce((a, b) => a + b, 0);
    const kinds = Object.entries(invalidByKind).map(([k, n]) => `${k} ${n}`).join(', ');
    if (report) {
      // Written only when every record was acknowledged or failed for good (flush above), so the keys are what Kafka holds.
      fs.writeFileSync(report.file, JSON.stringify({ topic, produced: producer.delivered - payments, failed: producer.failed, valid: report.valid, invalid: report.invalid }));
    }
    const paid = paymentsTopic ? `, and ${payments} payments to ${paymentsTopic}` : '';
    ctx.log(`produced ${producer.delivered - payments} records to ${topic} (valid ${sent - invalid}, invalid ${invalid}${kinds ? `: ${kinds}` : ''}), late ${late}, seed ${seed}${paid}`);
    if (producer.failed) throw new Error(`${producer.failed} records were not acknowledged by Kafka`);
  },
});

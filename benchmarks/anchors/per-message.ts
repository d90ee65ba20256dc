/**
 * The anchor the project started from: the original system's consumer, one message at a time. node-rdkafka reads,
 * JSON.parse and ajv check each order against schemas/order.schema.json (the project's compiled validator, so both
 * accept the same orders), and each valid order is one INSERT in its own transaction (autocommit); an invalid one
 * is skipped. Offsets are committed by the client every 5 s
 * (enable.auto.commit), as that consumer did. It runs until stopped (SIGTERM); the bench times the table.
 *
 * Usage: node --import tsx benchmarks/anchors/per-message.ts <topic> <table> <group>
 */
import Kafka from 'node-rdkafka';
import pgPromise from 'pg-promise';
import { validateOrder } from '../../pipeline/index.ts';

const [topic, table, group] = process.argv.slice(2);
const validate = validateOrder();
const pgp = pgPromise();
const db = pgp({ connectionString: process.env.DATABASE_URL!, max: 1 });
const insert = new pgp.helpers.ColumnSet(['order_id', 'order_number', 'product', 'quantity', 'price', 'ordered_at'], { table });

const consumer = new Kafka.KafkaConsumer({
  'bootstrap.servers': process.env.KAFKA_BROKERS!, 'group.id': group, 'enable.auto.commit': true,
}, { 'auto.offset.reset': 'earliest' });

let stopping = false;
process.on('SIGTERM', () => { stopping = true; });

consumer.connect({}, async (err) => {
  if (err) throw err;
  consumer.subscribe([topic]);
  while (!stopping) {
    const messages = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(100, (e, m) => (e ? reject(e) : resolve(m))));
    for (const m of messages) {
      let order: unknown;
      try {
        order = JSON.parse(m.value!.toString());
      } catch {
        continue;
      }
      if (!validate(order)) continue;
      await db.none(pgp.helpers.insert(order as unknown as Record<string, unknown>, insert));
    }
  }
  consumer.disconnect(() => process.exit(0));
});

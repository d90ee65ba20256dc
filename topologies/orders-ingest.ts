import { ensureTopics, topicName } from '../pipeline/kafka/admin.ts';
import { tableName, withSetupLock, type Database } from '../pipeline/postgres/db.ts';
import { DeadLetterRelay, ensureDeadLetterTable } from '../pipeline/postgres/dead-letters.ts';
import { ensureOffsetsTable } from '../pipeline/postgres/offsets.ts';
import { Progress } from '../pipeline/runtime/progress.ts';
import { retry } from '../pipeline/runtime/retry.ts';
import { StreamTask } from '../pipeline/runtime/stream-task.ts';
import { copyRow, PostgresCopySink, type CopyRow } from '../pipeline/sinks/postgres-copy.ts';
import { mapValues } from '../pipeline/stages/map.ts';
import { parseJson } from '../pipeline/stages/parse-json.ts';
import { validate } from '../pipeline/stages/validate.ts';
import { validateOrder, type Order } from '../pipeline/schema/validator.ts';
import type { Topology } from '../pipeline/topology.ts';

export const ORDER_COLUMNS = ['order_id', 'order_number', 'product', 'quantity', 'price', 'ordered_at'];

export async function ensureOrdersTable(db: Database, table: string): Promise<void> {
  await withSetupLock(db, async (t) => {
    await t.none(`CREATE TABLE IF NOT EXISTS ${table} (
      order_id uuid PRIMARY KEY,
      order_number bigint NOT NULL,
      product text NOT NULL,
      quantity integer NOT NULL,
      price numeric(12,2) NOT NULL,
      ordered_at timestamptz NOT NULL,
      ingested_at timestamptz NOT NULL DEFAULT now())`);
  });
}

export function orderToRow(o: Order): CopyRow {
  return copyRow([o.order_id, o.order_number, o.product, o.quantity, o.price, o.ordered_at], 0);
}

export const ordersIngest: Topology = {
  name: 'orders-ingest',
  description: 'Consumes orders, validates them against schemas/order.schema.json and writes them to Postgres with COPY, exactly once.',
  uses: { kafka: true, postgres: true },
  options: [
    { name: 'topic', type: 'string', default: 'orders', help: 'topic to produce to, or read from' },
    { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic when it is created' },
    { name: 'table', type: 'string', default: 'orders_data', help: 'Postgres table the orders go to' },
    { name: 'dlq-topic', type: 'string', help: 'dead-letter topic (default: <topic>.dlq)' },
    { name: 'group-id', type: 'string', default: 'orders-ingest', help: 'Kafka consumer group, also the key of the offsets in Postgres' },
    { name: 'batch-size', type: 'int', min: 1, max: 1_000_000, default: 10_000, help: 'records per flush (one transaction)' },
    { name: 'batch-wait-ms', type: 'int', min: 1, max: 600_000, default: 500, help: 'longest time a record waits for its flush' },
    { name: 'stop-when-idle', type: 'number', min: 0, help: 'exit 0 once everything read is committed and nothing new came for this many seconds' },
  ],
  validate(v) {
    topicName(v.topic as string);
    if (v['dlq-topic'] !== undefined) topicName(v['dlq-topic'] as string, '--dlq-topic');
    tableName(v.table as string);
  },
  describe(v) {
    const topic = v.topic as string;
    return [
      `Topology orders-ingest (group ${v['group-id']})`,
      `  source  topic ${topic} (node-rdkafka, offsets from Postgres table pipeline_offsets)`,
      `  stage   parse-json -> validate (schemas/order.schema.json) -> map (order -> COPY row)`,
      `  sink    Postgres table ${v.table} (COPY, rows + offsets in one transaction, batch ${v['batch-size']} / ${v['batch-wait-ms']} ms)`,
      `  dlq     topic ${(v['dlq-topic'] as string | undefined) ?? `${topic}.dlq`} (through outbox table pipeline_dead_letters)`,
    ].join('\n');
  },
  async run(ctx, v) {
    const topic = v.topic as string;
    const dlqTopic = (v['dlq-topic'] as string | undefined) ?? `${topic}.dlq`;
    const table = tableName(v.table as string);
    const groupId = v['group-id'] as string;
    const db = ctx.database();
    const setup = async () => {
      await ensureTopics(ctx.kafka, [{ name: topic, partitions: v.partitions as number }, { name: dlqTopic, partitions: v.partitions as number }]);
      await ensureOffsetsTable(db);
      await ensureDeadLetterTable(db);
      await ensureOrdersTable(db, table);
    };
    try {
      await retry('preparing topics and tables', setup, ctx.log, ctx.signal);
    } catch {
      return; // stopped while waiting
    }
    const metrics = ctx.metrics;
    const log = (line: string) => ctx.log(line);
    const task = new StreamTask({
      topology: 'orders-ingest',
      conn: ctx.kafka,
      db,
      topic,
      groupId,
      dlqTopic,
      stages: [parseJson(), validate(validateOrder()), mapValues<Order, CopyRow>('map', orderToRow)],
      sink: new PostgresCopySink({ db, table, columns: ORDER_COLUMNS, groupId, dlqTopic }),
      table: v.table as string,
      relay: new DeadLetterRelay(db, ctx.kafka, metrics, log),
      batch: { maxRecords: v['batch-size'] as number, maxWaitMs: v['batch-wait-ms'] as number },
      stopWhenIdleMs: v['stop-when-idle'] === undefined ? undefined : (v['stop-when-idle'] as number) * 1000,
      metrics,
      progress: new Progress('orders-ingest', 'rec'),
      log,
      signal: ctx.signal,
    });
    const readiness = setInterval(() => ctx.setReady(task.ready), 500);
    readiness.unref();
    try {
      await task.run();
    } finally {
      clearInterval(readiness);
    }
  },
};

import { defineTopology, sibling } from '../pipeline/index.ts';
import { ordersIngestPlan } from './orders-ingest-plan.ts';
import { consumerOptions, describePlan, dlqTopicOf, genericJsonOption, runWithFlags, stageThreadsOption, textCopyOption, validateNames } from './run-plan.ts';

export { ORDER_COLUMNS, orderRow, ORDERS_TABLE_SQL, ordersIngestPlan } from './orders-ingest-plan.ts';

/**
 * Records per flush, and flushes written at once, by default. The flush is what bounds the ingest once records are
 * read straight into rows: each waits on a few round trips and on the stage worker besides its COPY. Two lanes of
 * 10,000 (each its own connection, transaction and offsets, for half the partitions) keep Postgres busier than one
 * of 20,000, for the same memory (`npm run bench -- ingest --compare "..."`; docs/performance.md).
 */
export const INGEST_BATCH_SIZE = 10_000;
export const INGEST_SINK_CONNECTIONS = 2;

export const ordersIngest = defineTopology({
  name: 'orders-ingest',
  description: 'Consumes orders, validates them against schemas/order.schema.json and writes them to Postgres with COPY, exactly once.',
  uses: { kafka: true, postgres: true },
  options: [
    ...consumerOptions({ group: 'orders-ingest', batch: INGEST_BATCH_SIZE, lanes: INGEST_SINK_CONNECTIONS }),
    stageThreadsOption(1),
    genericJsonOption,
    textCopyOption,
    { name: 'table', type: 'string', default: 'orders_data', help: 'Postgres table the orders go to' },
  ],
  validate: validateNames,
  topics: (v) => ({ reads: [v.topic], writes: [dlqTopicOf(v)] }),
  describe: (v) => describePlan(ordersIngestPlan(v.topic, v.table), v),
  run: (ctx, v) => runWithFlags('orders-ingest', ordersIngestPlan(v.topic, v.table), ctx, v,
    { module: sibling('./orders-ingest-plan.ts', import.meta.url), export: 'ordersIngestPlan', args: [v.topic, v.table] }),
});

import type { Topology } from '../pipeline/topology.ts';
import { ordersIngestPlan } from './orders-ingest-plan.ts';
import { consumerOptions, describePlan, genericJsonOption, runPlan, stageThreadsOption, validateNames } from './run-plan.ts';

export { ORDER_COLUMNS, orderRow, ORDERS_TABLE_SQL, ordersIngestPlan } from './orders-ingest-plan.ts';

/**
 * Records per flush by default. The flush is what bounds the ingest once records are read straight into rows: each
 * waits on a few round trips besides its COPY, and 20,000 rows a transaction instead of 10,000 went from ~116k to
 * ~146k records/s in the same minutes (`npm run bench -- ingest --compare "--batch-size 20000"`).
 */
export const INGEST_BATCH_SIZE = 20_000;

export const ordersIngest: Topology = {
  name: 'orders-ingest',
  description: 'Consumes orders, validates them against schemas/order.schema.json and writes them to Postgres with COPY, exactly once.',
  uses: { kafka: true, postgres: true },
  options: [
    ...consumerOptions({ group: 'orders-ingest', batch: INGEST_BATCH_SIZE }),
    stageThreadsOption(1),
    genericJsonOption,
    { name: 'table', type: 'string', default: 'orders_data', help: 'Postgres table the orders go to' },
  ],
  validate: validateNames,
  describe: (v) => describePlan(ordersIngestPlan(v.topic as string, v.table as string), v),
  run: (ctx, v) => runPlan('orders-ingest', ordersIngestPlan(v.topic as string, v.table as string), ctx, v,
    { module: new URL('./orders-ingest-plan.ts', import.meta.url).href, export: 'ordersIngestPlan', args: [v.topic, v.table] }),
};

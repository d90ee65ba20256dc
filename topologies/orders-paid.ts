import {
  defineTopology, JoinWindows, type Order, StreamsBuilder, tableName, topicName, type TopologyPlan, validateOrder,
} from '../pipeline/index.ts';
import { validatePayment, type Payment } from './payments.ts';
import { consumerOptions, copartitionedInputs, describePlan, runWithFlags, validateNames } from './run-plan.ts';

/** How far apart in event time an order and its payment may be: ten minutes either way. */
export const PAID_WITHIN_MS = 10 * 60_000;

export interface PaidRow {
  order_id: string;
  paid: boolean;
  amount: number | null;
  paid_at: string | null;
}

/**
 * Orders left-joined with their payments within ten minutes of event time (ordered_at, paid_at): a paid row for each
 * order with a payment, and an unpaid row for one whose window closed without (the payments' stream time has passed
 * it by the grace). Rows are upserted into orders_paid, keyed by order_id, exactly once.
 */
export function ordersPaidPlan(o: { ordersTopic: string; paymentsTopic: string; table: string; graceMs: number; applicationId?: string }): TopologyPlan {
  const b = new StreamsBuilder(o.applicationId ?? 'orders-paid');
  const orders = b.stream<Order>(o.ordersTopic, { schema: validateOrder(), schemaName: 'schemas/order.schema.json', timestamp: (order) => Date.parse(order.ordered_at) });
  const payments = b.stream<Payment>(o.paymentsTopic, { schema: validatePayment(), schemaName: 'schemas/payment.schema.json', timestamp: (p) => Date.parse(p.paid_at) });
  orders
    .leftJoin(payments, (order, payment): PaidRow => ({
      order_id: order.order_id, paid: payment !== null, amount: payment?.amount ?? null, paid_at: payment?.paid_at ?? null,
    }), JoinWindows.ofTimeDifferenceAndGrace(PAID_WITHIN_MS, o.graceMs), { store: 'payments-join' })
    .toPostgres({
      table: o.table,
      columns: ['order_id', 'paid', 'amount', 'paid_at'],
      keyColumns: ['order_id'],
      mode: 'upsert',
      createSql: 'CREATE TABLE IF NOT EXISTS $TABLE (order_id uuid PRIMARY KEY, paid boolean NOT NULL, amount numeric(18,2), paid_at timestamptz)',
    });
  return b.build();
}

const plan = (v: { topic: string; 'payments-topic': string; table: string; grace: number; 'group-id': string }) =>
  ordersPaidPlan({ ordersTopic: v.topic, paymentsTopic: v['payments-topic'], table: v.table, graceMs: v.grace * 1000, applicationId: v['group-id'] });

const dlq = (v: { 'dlq-topic': string | undefined; 'group-id': string }) => v['dlq-topic'] ?? `${v['group-id']}.dlq`;

export const ordersPaid = defineTopology({
  name: 'orders-paid',
  description: 'Orders left-joined with their payments within 10 minutes of event time into orders_paid (paid, or unpaid once the window closes), exactly once.',
  uses: { kafka: true, postgres: true },
  options: [
    ...consumerOptions({ group: 'orders-paid', batch: 5_000 }),
    { name: 'payments-topic', type: 'string', default: 'payments', help: 'topic of the payments, keyed by order_id and co-partitioned with --topic' },
    { name: 'table', type: 'string', default: 'orders_paid', help: 'Postgres table the rows go to' },
    { name: 'grace', type: 'number', min: 0, default: 60, help: 'grace period in seconds: how far behind its own partition an order or payment may come and still join' },
  ],
  topics: (v) => ({ reads: [v.topic, v['payments-topic']], writes: [dlq(v)] }),
  validate(v) {
    validateNames({ ...v, 'dlq-topic': dlq(v) });
    topicName(v['payments-topic'], '--payments-topic');
    tableName(v.table);
  },
  copartitioned: (v) => copartitionedInputs(plan(v)),
  describe: (v) => describePlan(plan(v), { ...v, 'dlq-topic': dlq(v) }),
  run: (ctx, v) => runWithFlags('orders-paid', plan(v), ctx, { ...v, 'dlq-topic': dlq(v) }),
});

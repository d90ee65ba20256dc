import {
  defineTopology, type Order, registryFromEnv, StreamsBuilder, tableName, TimeWindows, type TopologyPlan, validateOrder,
} from '../pipeline/index.ts';
import { consumerOptions, describePlan, dlqTopicOf, runWithFlags, validateNames } from './run-plan.ts';

/** Money in integer cents: a price has at most two decimals (the schema decides that exactly), so this is exact. */
export const toCents = (price: number): number => Math.round(price * 100);

export function centsToDecimal(cents: number): string {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

export interface Revenue {
  orders: number;
  quantity: number;
  cents: number;
}

/**
 * Revenue per product per minute: one-minute tumbling windows on event time (ordered_at) with a grace period,
 * emitted when final into orders_revenue_1m.
 */
export function ordersRevenuePlan(o: { topic: string; table: string; graceMs: number; windowMs?: number; applicationId?: string }): TopologyPlan {
  const b = new StreamsBuilder(o.applicationId ?? 'orders-revenue');
  b.stream<Order>(o.topic, {
    schema: validateOrder(), schemaName: 'schemas/order.schema.json', registry: registryFromEnv(), timestamp: (order) => Date.parse(order.ordered_at),
  })
    .groupBy((order) => order.product, 'groupBy product')
    .windowedBy(TimeWindows.tumbling(o.windowMs ?? 60_000, o.graceMs))
    .aggregate<Revenue>(
      () => ({ orders: 0, quantity: 0, cents: 0 }),
      (a, order) => {
        a.orders += 1;
        a.quantity += order.quantity;
        a.cents += toCents(order.price) * order.quantity;
        return a;
      },
      { store: 'revenue-store' },
    )
    .toPostgres({
      table: o.table,
      windowStart: 'window_start',
      windowEnd: 'window_end',
      keyColumn: 'product',
      keyType: 'text',
      columns: {
        orders: { type: 'bigint', combine: 'sum' },
        quantity: { type: 'bigint', combine: 'sum' },
        revenue: { type: 'numeric(18,2)', combine: 'sum' },
      },
      row: (_w, a) => ({ orders: a.orders, quantity: a.quantity, revenue: centsToDecimal(a.cents) }),
    });
  return b.build();
}

const plan = (v: { topic: string; table: string; grace: number; 'group-id': string }) =>
  ordersRevenuePlan({ topic: v.topic, table: v.table, graceMs: v.grace * 1000, applicationId: v['group-id'] });

export const ordersRevenue = defineTopology({
  name: 'orders-revenue',
  description: 'Revenue per product per minute (tumbling event-time windows, grace, emit-final) into orders_revenue_1m, exactly once.',
  uses: { kafka: true, postgres: true },
  options: [
    ...consumerOptions({ group: 'orders-revenue', batch: 10_000 }),
    { name: 'table', type: 'string', default: 'orders_revenue_1m', help: 'Postgres table the window results go to' },
    { name: 'grace', type: 'number', min: 0, default: 10, help: 'grace period in seconds: how late a record may come for its window' },
  ],
  topics: (v) => ({ reads: [v.topic], writes: [dlqTopicOf(v)] }),
  validate(v) {
    validateNames(v);
    tableName(`${v.table}_partials`);
  },
  describe: (v) => describePlan(plan(v), v),
  run: (ctx, v) => runWithFlags('orders-revenue', plan(v), ctx, v),
});

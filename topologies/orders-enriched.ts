import {
  defineTopology, type Order, registryFromEnv, StreamsBuilder, tableName, TimeWindows, topicName, type TopologyPlan, validateOrder,
} from '../pipeline/index.ts';
import { centsToDecimal, toCents } from './orders-revenue.ts';
import { validateProduct, type Product } from './products-generator.ts';
import { consumerOptions, copartitionedInputs, describePlan, dlqTopicOf, runWithFlags, validateNames } from './run-plan.ts';

export interface CategoryMinute {
  orders: number;
  cents: number;
  costCents: number;
}

/**
 * Orders enriched with their product (a left join with the global table of `products`: an unknown product has
 * category `unknown` and no cost), then one-minute tumbling windows per category on event time with a grace period,
 * emitted when final into orders_category_1m: orders, revenue, and cost = the sum of unit_cost × quantity.
 */
export function ordersEnrichedPlan(o: { topic: string; productsTopic: string; table: string; graceMs: number; applicationId?: string; join?: 'global' | 'table' }): TopologyPlan {
  const b = new StreamsBuilder(o.applicationId ?? 'orders-enriched');
  const orders = b.stream<Order>(o.topic, {
    schema: validateOrder(), schemaName: 'schemas/order.schema.json', registry: registryFromEnv(), timestamp: (order) => Date.parse(order.ordered_at),
  });
  const enrich = (order: Order, product: Product | null) => ({
    category: product?.category ?? 'unknown',
    cents: toCents(order.price) * order.quantity,
    costCents: product ? toCents(product.unit_cost) * order.quantity : 0,
  });
  // global: every instance reads all of products. table: orders re-keyed by product through a repartition topic,
  // joined with the co-partitioned table of products, as Kafka Streams' KStream#join(KTable) after selectKey.
  const enriched = o.join === 'table'
    ? orders.selectKey((order): string | null => order.product, 'selectKey product').leftJoin(b.table<Product>(o.productsTopic, { schema: validateProduct() }), enrich, { store: 'products-join' })
    : orders.leftJoin(b.globalTable<Product>(o.productsTopic, { schema: validateProduct() }), (_key, order) => order.product, enrich);
  enriched
    .groupBy((e) => e.category, 'groupBy category')
    .windowedBy(TimeWindows.tumbling(60_000, o.graceMs))
    .aggregate<CategoryMinute>(
      () => ({ orders: 0, cents: 0, costCents: 0 }),
      (a, e) => {
        a.orders += 1;
        a.cents += e.cents;
        a.costCents += e.costCents;
        return a;
      },
      { store: 'category-store' },
    )
    .toPostgres({
      table: o.table,
      windowStart: 'window_start',
      windowEnd: 'window_end',
      keyColumn: 'category',
      keyType: 'text',
      columns: {
        orders: { type: 'bigint', combine: 'sum' },
        revenue: { type: 'numeric(18,2)', combine: 'sum' },
        cost: { type: 'numeric(18,2)', combine: 'sum' },
      },
      row: (_w, a) => ({ orders: a.orders, revenue: centsToDecimal(a.cents), cost: centsToDecimal(a.costCents) }),
    });
  return b.build();
}

const plan = (v: { topic: string; 'products-topic': string; table: string; grace: number; 'group-id': string; 'products-join': 'global' | 'table' }) =>
  ordersEnrichedPlan({ topic: v.topic, productsTopic: v['products-topic'], table: v.table, graceMs: v.grace * 1000, applicationId: v['group-id'], join: v['products-join'] });

export const ordersEnriched = defineTopology({
  name: 'orders-enriched',
  description: 'Orders joined with their product (category, unit cost) from the products table, then orders, revenue and cost per category per minute into orders_category_1m, exactly once.',
  uses: { kafka: true, postgres: true },
  options: [
    ...consumerOptions({ group: 'orders-enriched', batch: 10_000 }),
    { name: 'products-topic', type: 'string', default: 'products', help: 'compacted topic of the products (products-generator), read whole as a global table' },
    { name: 'table', type: 'string', default: 'orders_category_1m', help: 'Postgres table the window results go to' },
    { name: 'grace', type: 'number', min: 0, default: 10, help: 'grace period in seconds: how late a record may come for its window' },
    { name: 'products-join', type: 'string', choices: ['global', 'table'], default: 'global', help: 'global: products as a global table in every instance; table: orders re-keyed by product through a repartition topic and joined with the co-partitioned table of products' },
  ],
  topics: (v) => ({ reads: [v.topic, v['products-topic']], writes: [dlqTopicOf(v)] }),
  validate(v) {
    validateNames(v);
    topicName(v['products-topic'], '--products-topic');
    tableName(`${v.table}_partials`);
  },
  copartitioned: (v) => copartitionedInputs(plan(v)),
  describe: (v) => describePlan(plan(v), v),
  run: (ctx, v) => runWithFlags('orders-enriched', plan(v), ctx, v),
});

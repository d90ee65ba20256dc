import {
  type CopyValue, type Order, registryFromEnv, StreamsBuilder, type TopologyPlan, validateOrder,
} from '../pipeline/builder.ts';

// The plan alone, apart from the topology that runs it: stage workers import this module to build their own copy,
// and a worker must not load node-rdkafka (it cannot run in a worker thread).

export const ORDER_COLUMNS = ['order_id', 'order_number', 'product', 'quantity', 'price', 'ordered_at'];

export const ORDERS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS $TABLE (
  order_id uuid PRIMARY KEY,
  order_number bigint NOT NULL,
  product text NOT NULL,
  quantity integer NOT NULL,
  price numeric(12,2) NOT NULL,
  ordered_at timestamptz NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now())`;

/** An order as the values of its row in orders_data, in ORDER_COLUMNS order. */
export const orderRow = (o: Order): CopyValue[] => [o.order_id, o.order_number, o.product, o.quantity, o.price, o.ordered_at];

/** orders -> validate -> COPY into orders_data, rows and offsets in one transaction. */
export function ordersIngestPlan(topic: string, table: string, registry = registryFromEnv()): TopologyPlan {
  const b = new StreamsBuilder('orders-ingest');
  b.stream<Order>(topic, { schema: validateOrder(), schemaName: 'schemas/order.schema.json', registry })
    .toPostgres({
      table,
      columns: ORDER_COLUMNS, // each the order's property of that name
      keyColumns: ['order_id'],
      createSql: ORDERS_TABLE_SQL,
    });
  return b.build();
}

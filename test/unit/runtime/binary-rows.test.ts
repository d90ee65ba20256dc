import assert from 'node:assert/strict';
import type Kafka from 'node-rdkafka';
import { PlanExecutor } from '../../../pipeline/dsl/executor.ts';
import { optimize } from '../../../pipeline/dsl/optimize.ts';
import type { StageContext } from '../../../pipeline/records.ts';
import { copyTargets, runBatch, useBinaryCopy, type BatchRows } from '../../../pipeline/runtime/batch.ts';
import { validateOrder } from '../../../pipeline/schema/validator.ts';
import { keyField } from '../../../pipeline/sinks/copy-segment.ts';
import { packMessages } from '../../../pipeline/sources/packed-batch.ts';
import { OrderFactory } from '../../../topologies/order-factory.ts';
import { ordersIngestPlan } from '../../../topologies/orders-ingest-plan.ts';

validateOrder(); // the process's ajv, with its formats

/** orders_data's column types, as PostgresCopySink reads them from pg_type. */
const ORDER_TYPES = ['uuid', 'int8', 'text', 'int4', 'numeric', 'timestamptz'];
const SINK = 'to-orders_data';

function rowsOf(values: Buffer[], binary: boolean): { rows: BatchRows; dead: string[] } {
  const messages = values.map((value, i) => ({ topic: 'orders', partition: 0, offset: i, timestamp: 0, key: null, value, size: value.length }) as Kafka.Message);
  const executor = new PlanExecutor(optimize(ordersIngestPlan('orders', 'orders_data'), { directJson: true }));
  const targets = copyTargets(executor);
  if (binary) assert.equal(useBinaryCopy(targets, SINK, ORDER_TYPES), true);
  const dead: string[] = [];
  const ctx: StageContext = { deadLetter: (r, reason) => dead.push(`${r.offset} ${reason}`), late: () => undefined };
  return { rows: runBatch(executor, packMessages('orders', messages), ctx, targets).copy.get(SINK)!, dead };
}

function orders(n: number): Buffer[] {
  const factory = new OrderFactory(3, 0);
  return Array.from({ length: n }, () => Buffer.from(factory.next().value));
}

const keys = (r: BatchRows) => Array.from(r.src, (_, i) => keyField(r, r.keyAt, i, r.keyFields).toString('latin1'));

describe('binary COPY rows from the direct reader', () => {
  it('writes a batch of orders in binary, with the keys, key hashes and sources text would give', () => {
    const values = orders(500);
    const binary = rowsOf(values, true).rows;
    const text = rowsOf(values, false).rows;
    assert.deepEqual(binary.binary, { types: ORDER_TYPES });
    assert.equal(text.binary, undefined);
    assert.equal(binary.ends.length, 500);
    assert.deepEqual([...binary.src], [...text.src]);
    assert.deepEqual([...binary.keyHashes!], [...text.keyHashes!]);
    assert.deepEqual(keys(binary), keys(text));
    assert.notEqual(binary.text.toString('latin1'), text.text.toString('latin1'));
  });

  it('writes the whole batch as text when one row has a value binary does not take, or went through the stages', () => {
    const upper = orders(300);
    const o = JSON.parse(upper[200].toString());
    upper[200] = Buffer.from(JSON.stringify({ ...o, order_id: o.order_id.toUpperCase() })); // read directly, left by the uuid encoder
    const escaped = orders(300);
    escaped[7] = Buffer.from(escaped[7].toString().replace(/"product":"./, '"product":"\\u00e9')); // not read directly: the stages make its row
    for (const values of [upper, escaped]) {
      const binary = rowsOf(values, true);
      const text = rowsOf(values, false);
      assert.equal(binary.rows.binary, undefined);
      assert.equal(binary.rows.text.toString('latin1'), text.rows.text.toString('latin1'));
      assert.deepEqual([...binary.rows.ends], [...text.rows.ends]);
      assert.deepEqual([...binary.rows.src], [...text.rows.src]);
      assert.deepEqual([...binary.rows.keyHashes!], [...text.rows.keyHashes!]);
      assert.equal(binary.rows.ends.length, 300);
    }
  });

  it('stays binary when a record is a dead letter', () => {
    const values = orders(100);
    values[50] = Buffer.from('{"order_id": not json');
    const { rows, dead } = rowsOf(values, true);
    assert.deepEqual(rows.binary, { types: ORDER_TYPES });
    assert.equal(rows.ends.length, 99);
    assert.deepEqual(dead, ['50 malformed-json']);
    assert.ok(!rows.src.includes(50));
  });

  it('is not used for a table with a column type it has no encoder for, or a key it cannot print back', () => {
    const executor = new PlanExecutor(optimize(ordersIngestPlan('orders', 'orders_data'), { directJson: true }));
    assert.equal(useBinaryCopy(copyTargets(executor), SINK, ['uuid', 'int8', 'text', 'int4', 'numeric', 'timestamp']), false);
    assert.equal(useBinaryCopy(copyTargets(executor), SINK, ['varchar', 'int8', 'text', 'int4', 'numeric', 'timestamptz']), true);
    assert.equal(useBinaryCopy(copyTargets(executor), SINK, ['numeric', 'int8', 'text', 'int4', 'numeric', 'timestamptz']), false);
    assert.equal(useBinaryCopy(copyTargets(executor), SINK, ORDER_TYPES.slice(1)), false);
    const generic = new PlanExecutor(optimize(ordersIngestPlan('orders', 'orders_data'), { directJson: false }));
    assert.equal(useBinaryCopy(copyTargets(generic), SINK, ORDER_TYPES), false);
  });
});

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { orderSchema, type Order } from '../../pipeline/schema/validator.ts';
import { encodeWireFormat } from '../../pipeline/schema/wire-format.ts';
import { startRegistry } from '../helpers/schema-registry.ts';
import { createTopic, db, dropAll, header, produce, readTopic, runTopology, unique } from '../helpers/infra.ts';

describe('orders-ingest with a schema registry (the real one)', () => {
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  after(() => dropAll([topic, `${topic}.dlq`], [table], [group]));

  it('validates each message against the schema its id names, and dead-letters unknown ids', async () => {
    const registry = await startRegistry();
    try {
      // Another producer registered a stricter version of the order schema: at most 5 items an order.
      const strict = { ...orderSchema(), $id: undefined, properties: { ...(orderSchema() as { properties: object }).properties, quantity: { type: 'integer', minimum: 1, maximum: 5 } } };
      const strictId = await registry.register(`${topic}-value`, strict);
      const order = (quantity: number): Order => ({
        order_id: randomUUID(), order_number: 1, product: 'Lamp', quantity, price: 1.5, ordered_at: '2026-11-28T10:00:00Z',
      });
      const ok = order(3);
      const tooMany = order(7); // valid for the local schema, not for the one its message names
      const unknownId = order(2);
      await createTopic(topic, 1);
      await produce([
        { topic, key: 'ok', value: encodeWireFormat(strictId, Buffer.from(JSON.stringify(ok))) },
        { topic, key: 'too-many', value: encodeWireFormat(strictId, Buffer.from(JSON.stringify(tooMany))) },
        { topic, key: 'unknown-id', value: encodeWireFormat(2_000_000_000, Buffer.from(JSON.stringify(unknownId))) },
      ]);
      const r = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '1', '--stop-when-idle', '2'],
        { SCHEMA_REGISTRY_URL: registry.url });
      assert.equal(r.code, 0, r.stderr);
      const rows = await db().any<{ order_id: string }>('SELECT order_id FROM $1:name', [table]);
      assert.deepEqual(rows.map((x) => x.order_id), [ok.order_id]);
      const dead = new Map((await readTopic(`${topic}.dlq`)).map((m) => [m.key!.toString(), header(m, 'error.reason')]));
      assert.deepEqual(Object.fromEntries(dead), { 'too-many': 'schema', 'unknown-id': 'unknown-schema' });
      assert.equal(registry.requests.filter((q) => q === `GET /schemas/ids/${strictId}`).length, 1, 'the schema is fetched once');
    } finally {
      await registry.close();
    }
  });
});

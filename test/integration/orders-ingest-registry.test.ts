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

describe('orders-ingest when the registry is wrong or goes away', () => {
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  after(() => dropAll([topic, `${topic}.dlq`], [table], [group]));
  const order = (): Order => ({ order_id: randomUUID(), order_number: 1, product: 'Lamp', quantity: 1, price: 2.5, ordered_at: '2026-12-01T10:00:00Z' });
  const args = ['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '1', '--stop-when-idle', '2'];
  const committed = async () => Number((await db().oneOrNone<{ n: string }>(
    'SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint AS n FROM pipeline_offsets WHERE group_id = $1', [group]))?.n ?? 0);

  it('a wrong URL (a 404 without the registry\'s code) stops it with one clear line; nothing is dead-lettered or committed', async () => {
    const registry = await startRegistry();
    try {
      const id = await registry.register(`${topic}-value`, { ...orderSchema(), $id: undefined, description: topic });
      await createTopic(topic, 1);
      const orders = [order(), order()];
      await produce(orders.map((o) => ({ topic, key: o.order_id, value: encodeWireFormat(id, Buffer.from(JSON.stringify(o))) })));
      const wrong = await runTopology(args, { SCHEMA_REGISTRY_URL: `${registry.url}/not-the-api` });
      assert.notEqual(wrong.code, 0, 'it stops');
      assert.match(wrong.stderr, /failed: .*HTTP 404 without a registry error code \(40403\): is SCHEMA_REGISTRY_URL the registry's Confluent-compatible API/);
      assert.equal(await committed(), 0, 'nothing committed');
      assert.equal((await readTopic(`${topic}.dlq`)).length, 0, 'nothing dead-lettered');
      // With the right URL the same records go in, each once.
      const right = await runTopology(args, { SCHEMA_REGISTRY_URL: registry.url });
      assert.equal(right.code, 0, right.stderr);
      const rows = (await db().any<{ id: string }>('SELECT order_id::text AS id FROM $1:name', [table])).map((r) => r.id);
      assert.deepEqual(rows.sort(), orders.map((o) => o.order_id).sort());
    } finally {
      await registry.close();
    }
  });

  it('a registry that goes away mid-stream: retries, then stops with a clear error; once it is back a restart has each order once', async () => {
    const registry = await startRegistry();
    const before = await committed();
    // A version the ingest has not fetched yet: with the registry gone it cannot validate these records.
    const id = await registry.register(`${topic}-value`, { ...orderSchema(), $id: undefined, description: `${topic} v2` });
    await registry.close();
    const orders = [order(), order(), order()];
    await produce(orders.map((o) => ({ topic, key: o.order_id, value: encodeWireFormat(id, Buffer.from(JSON.stringify(o))) })));
    const gone = await runTopology(args, { SCHEMA_REGISTRY_URL: registry.url, SCHEMA_REGISTRY_RETRY_MS: '4000' });
    assert.notEqual(gone.code, 0, 'it stops');
    assert.match(gone.stderr, /preparing the batch failed \(attempt 1, retrying with backoff\)/, 'it retried first');
    assert.match(gone.stderr, /preparing the batch failed for \d+ s \(\d+ attempts\), giving up: fetching schema \d+ from http:\/\/127\.0\.0\.1:\d+ failed/);
    assert.equal(await committed(), before, 'nothing committed past the records it could not validate');
    assert.equal((await readTopic(`${topic}.dlq`)).length, 0, 'nothing dead-lettered');
    const back = await startRegistry();
    try {
      const r = await runTopology(args, { SCHEMA_REGISTRY_URL: back.url });
      assert.equal(r.code, 0, r.stderr);
      const rows = (await db().any<{ id: string }>('SELECT order_id::text AS id FROM $1:name WHERE order_id = ANY($2::uuid[])', [table, orders.map((o) => o.order_id)])).map((x) => x.id);
      assert.deepEqual(rows.sort(), orders.map((o) => o.order_id).sort());
      assert.equal((await readTopic(`${topic}.dlq`)).length, 0);
    } finally {
      await back.close();
    }
  });
});

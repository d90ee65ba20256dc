import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { orderSchema } from '../../pipeline/schema/validator.ts';
import { decodeWireFormat, encodeWireFormat } from '../../pipeline/schema/wire-format.ts';
import { db, dropAll, header, produce, readTopic, runTopology, unique } from '../helpers/infra.ts';
import { startRegistry, type Registry } from '../helpers/schema-registry.ts';

/** The order schema with more properties; `required` ones make a change BACKWARD compatibility refuses. */
function orderSchemaWith(extra: Record<string, object>, required: string[] = []): object {
  const base = orderSchema() as { properties: object; required: string[] };
  return { ...base, properties: { ...base.properties, ...extra }, required: [...base.required, ...required] };
}

describe('schema evolution on a real registry (BACKWARD)', () => {
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
  let registry: Registry;
  before(async () => { registry = await startRegistry(); });
  after(async () => {
    await registry.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await dropAll([topic, `${topic}.dlq`], [table], [group]);
  });
  const file = (name: string, schema: object) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, JSON.stringify(schema));
    return f;
  };
  const env = () => ({ SCHEMA_REGISTRY_URL: registry.url });
  const generate = (...extra: string[]) => runTopology(['orders-generator', '--count', '300', '--rate', '0', '--topic', topic, '--partitions', '2', ...extra], env());

  it('version 2 adds an optional property; old and new messages are each validated by the schema their id names; an incompatible version stops the producer', async () => {
    const v1 = await generate();
    assert.equal(v1.code, 0, v1.stderr);
    await registry.setCompatibility(`${topic}-value`, 'BACKWARD');
    const coupon = { coupon: { type: 'string', maxLength: 12 } };
    const v2 = await generate('--value-schema', file('v2.json', orderSchemaWith(coupon)));
    assert.equal(v2.code, 0, v2.stderr);
    assert.equal(registry.requests.filter((r) => r === `POST /subjects/${topic}-value/versions`).length, 2, 'each run registered its schema');

    const sent = await readTopic(topic);
    const idOf = (m: { value?: Buffer | null }) => decodeWireFormat(m.value!)!.schemaId;
    const ids = [...new Set(sent.map(idOf))];
    assert.equal(ids.length, 2, `two schema ids in the topic: ${ids.join(',')}`);
    const [id1, id2] = ids[0] === idOf(sent.find((m) => m.offset === 0)!) ? ids : [ids[1], ids[0]];
    // An order with a coupon: valid under version 2 only (version 1 allows no other properties).
    const order = () => ({ order_id: randomUUID(), order_number: 7, product: 'Lamp', quantity: 1, price: 9.5, ordered_at: '2026-12-01T10:00:00Z', coupon: 'WINTER' });
    const underV1 = order();
    const underV2 = order();
    await produce([
      { topic, partition: 0, key: underV1.order_id, value: encodeWireFormat(id1, Buffer.from(JSON.stringify(underV1))) },
      { topic, partition: 1, key: underV2.order_id, value: encodeWireFormat(id2, Buffer.from(JSON.stringify(underV2))) },
    ]);

    const ingest = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '2', '--stop-when-idle', '3'], env());
    assert.equal(ingest.code, 0, ingest.stderr);
    const rows = (await db().any<{ order_id: string }>('SELECT order_id FROM $1:name', [table])).map((r) => r.order_id).sort();
    assert.deepEqual(rows, [...sent.map((m) => m.key!.toString()), underV2.order_id].sort(), 'every generated order, and the coupon order under version 2');
    const dead = await readTopic(`${topic}.dlq`);
    assert.deepEqual(dead.map((m) => [m.key!.toString(), header(m, 'error.reason')]), [[underV1.order_id, 'schema']], 'the coupon order under version 1 is invalid');
    assert.equal(registry.requests.filter((r) => r === `GET /schemas/ids/${id1}`).length, 1, 'version 1 fetched once');
    assert.equal(registry.requests.filter((r) => r === `GET /schemas/ids/${id2}`).length, 1, 'version 2 fetched once');

    // Version 3 makes a new property required: old messages would not validate, so BACKWARD refuses it.
    const v3 = await generate('--value-schema', file('v3.json', orderSchemaWith({ ...coupon, channel: { type: 'string' } }, ['channel'])));
    assert.notEqual(v3.code, 0, 'the producer stops');
    const failed = v3.stderr.split('\n').filter((l) => /failed:/.test(l));
    assert.equal(failed.length, 1, v3.stderr);
    assert.match(failed[0], new RegExp(`registering the schema under ${topic}-value .*refused it as incompatible .*HTTP 409`));
    assert.equal((await readTopic(topic)).length, sent.length + 2, 'nothing was sent under the refused version');
  });
});

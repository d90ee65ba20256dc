import assert from 'node:assert/strict';
import type Kafka from 'node-rdkafka';
import { batchBuffers, batchSize, packMessages, recordOf, selectBatch } from '../../../pipeline/sources/packed-batch.ts';

function message(i: number, value: Buffer | null, key: Buffer | string | null | undefined, headers?: Kafka.MessageHeader[]): Kafka.Message {
  return { topic: 'orders', partition: i % 4, offset: 1000 + i * 3, timestamp: i === 5 ? -1 : 1_700_000_000_000 + i, key, value, size: value?.length ?? 0, headers } as Kafka.Message;
}

/** Values of every shape: empty, null, multi-byte, large; keys as Buffer, string, null and absent; some headers. */
function messages(): Kafka.Message[] {
  return [
    message(0, Buffer.from('{"a":1}'), Buffer.from('k0')),
    message(1, null, 'k1'),
    message(2, Buffer.alloc(0), null),
    message(3, Buffer.from('Crème brûlée 🍮'), undefined, [{ 'trace-id': Buffer.from('t3') }]),
    message(4, Buffer.alloc(70_000, 0x61), Buffer.alloc(0)),
    message(5, Buffer.from([0xff, 0x00, 0xfe]), 'k5'),
  ];
}

function plain(m: { partition: number; offset: number; timestamp?: number; key?: Buffer | string | null; value: Buffer | null; headers?: unknown }) {
  const key = m.key === null || m.key === undefined ? null : Buffer.from(m.key);
  return { partition: m.partition, offset: m.offset, timestamp: m.timestamp === undefined || m.timestamp < 0 ? undefined : m.timestamp, key: key?.toString('hex') ?? null, value: m.value?.toString('hex') ?? null, headers: m.headers };
}

describe('packed batches', () => {
  it('hold every message as it was: bytes, nulls, keys, offsets, timestamps and headers', () => {
    const ms = messages();
    const b = packMessages('orders', ms);
    assert.equal(batchSize(b), ms.length);
    const back = Array.from({ length: ms.length }, (_, i) => recordOf(b, i));
    assert.deepEqual(back.map((r) => plain({ ...r, key: r.rawKey, value: r.raw })), ms.map(plain));
    assert.equal(back[3].key, null);
    assert.equal(back[4].key, '', 'an empty key is not a missing key');
    assert.equal(back[2].raw?.length, 0, 'an empty value is not a tombstone');
    assert.equal(back[1].raw, null);
    assert.ok(back.every((r) => r.topic === 'orders'));
  });

  it('live in one ArrayBuffer, transferred once', () => {
    const b = packMessages('orders', messages());
    assert.equal(batchBuffers(b).length, 1);
  });

  it('select a subset, in the order asked, into buffers of their own', () => {
    const ms = messages();
    const b = packMessages('orders', ms);
    const picked = [4, 0, 3, 1];
    const s = selectBatch(b, picked);
    assert.notEqual(s.values.buffer, b.values.buffer);
    assert.deepEqual(Array.from({ length: picked.length }, (_, i) => plain({ ...recordOf(s, i), key: recordOf(s, i).rawKey, value: recordOf(s, i).raw })),
      picked.map((i) => plain(ms[i])));
    assert.equal(selectBatch(b, []).partitions.length, 0);
    assert.equal(selectBatch(packMessages('orders', ms.filter((m) => !m.headers)), [0, 1]).headers, undefined);
  });

  it('refuse a message of another topic', () => {
    assert.throws(() => packMessages('orders', [{ ...messages()[0], topic: 'cars' }]), /a message of cars in a batch of orders/);
  });
});

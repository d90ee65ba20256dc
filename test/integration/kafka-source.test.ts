import assert from 'node:assert/strict';
import type Kafka from 'node-rdkafka';
import type { OutgoingMessage } from '../../pipeline/kafka/producer.ts';
import { KafkaSource } from '../../pipeline/sources/kafka-source.ts';
import { batchSize, recordOf } from '../../pipeline/sources/packed-batch.ts';
import { createTopic, dropAll, kafka, produce, readTopic, unique } from '../helpers/infra.ts';

/** What a message is, however it was read: compared field by field between the two reads. */
function plain(m: { partition: number; offset: number; timestamp?: number; key?: Buffer | string | null; value: Buffer | null; headers?: Kafka.MessageHeader[] }) {
  const key = m.key === null || m.key === undefined ? null : Buffer.from(m.key);
  const headers = m.headers?.length ? m.headers.map((h) => Object.entries(h).map(([k, v]) => [k, Buffer.from(v as Buffer).toString('hex')])) : undefined;
  return { at: `${m.partition}:${m.offset}`, timestamp: m.timestamp, key: key?.toString('hex') ?? null, value: m.value?.toString('hex') ?? null, headers };
}

describe('KafkaSource on the real broker', function () {
  this.timeout(120_000);
  const topic = unique('packed');

  after(async () => {
    await dropAll([topic], [], []);
  });

  it('reads packed (consumePacked, on the consume thread) exactly what node-rdkafka\'s consume reads', async () => {
    await createTopic(topic, 3);
    const messages: OutgoingMessage[] = [];
    for (let i = 0; i < 3000; i++) {
      const kind = i % 7;
      messages.push({
        topic, partition: i % 3,
        key: kind === 0 ? null : kind === 1 ? Buffer.alloc(0) : Buffer.from(`key-${i}-ключ`),
        value: kind === 2 ? null : kind === 3 ? Buffer.alloc(0) : kind === 4 ? Buffer.alloc(50_000 + i, i % 251) : Buffer.from(JSON.stringify({ i, text: 'Crème brûlée 🍮' })),
        headers: kind === 5 ? [{ 'trace-id': Buffer.from(`t${i}`) }, { empty: Buffer.alloc(0) }] : undefined,
      });
    }
    await produce(messages);
    const expected = (await readTopic(topic)).map(plain);
    assert.equal(expected.length, messages.length);

    const source = new KafkaSource(kafka(), topic, unique('packed_group'), { onAssign: async () => new Map(), onRevoke: async () => undefined });
    await source.connect();
    const got: ReturnType<typeof plain>[] = [];
    let polls = 0;
    try {
      const deadline = Date.now() + 60_000;
      while (got.length < expected.length && Date.now() < deadline) {
        const { batch } = await source.poll(500);
        if (batchSize(batch)) polls++;
        assert.ok(batchSize(batch) <= 500);
        for (let i = 0; i < batchSize(batch); i++) {
          const r = recordOf(batch, i);
          assert.equal(r.topic, topic);
          got.push(plain({ ...r, key: r.rawKey, value: r.raw }));
        }
      }
    } finally {
      await source.disconnect();
    }
    const byPlace = (a: { at: string }, b: { at: string }) => a.at.localeCompare(b.at);
    assert.deepEqual(got.sort(byPlace), expected.sort(byPlace));
    assert.ok(polls >= 6, `${polls} polls of at most 500`);
  });

  it('says what is wrong when it cannot read (not connected)', async () => {
    const source = new KafkaSource(kafka(), topic, unique('packed_group'), { onAssign: async () => new Map(), onRevoke: async () => undefined });
    await assert.rejects(source.poll(10), /KafkaConsumer is not connected/);
  });
});

import assert from 'node:assert/strict';
import type Kafka from 'node-rdkafka';
import type { OutgoingMessage } from '../../pipeline/kafka/producer.ts';
import { KafkaProducer } from '../../pipeline/kafka/producer.ts';
import { KafkaSource } from '../../pipeline/sources/kafka-source.ts';
import { batchSize, recordOf } from '../../pipeline/sources/packed-batch.ts';
import { createTopic, dropAll, kafka, produce, readTopic, unique } from '../helpers/infra.ts';

/** What a message is, however it was read: compared field by field between the two reads. */
function plain(m: { partition: number; offset: number; timestamp?: number; key?: Buffer | string | null; value: Buffer | null; headers?: Kafka.MessageHeader[] }) {
  const key = m.key === null || m.key === undefined ? null : Buffer.from(m.key);
  const headers = m.headers?.length ? m.headers.map((h) => Object.entries(h).map(([k, v]) => [k, Buffer.from(v as Buffer).toString('hex')])) : undefined;
  return { at: `${m.partition}:${m.offset}`, timestamp: m.timestamp, key: key?.toString('hex') ?? null, value: m.value?.toString('hex') ?? null, headers };
}

/** Values and keys back to back with their end offsets, as producePacked takes them. */
function packed(values: Buffer[], keys: Buffer[]) {
  const ends = (xs: Buffer[]) => {
    const out = new Uint32Array(xs.length);
    for (let i = 0, at = 0; i < xs.length; i++) out[i] = at += xs[i].length;
    return out;
  };
  return { values: Buffer.concat(values), valueEnds: ends(values), keys: Buffer.concat(keys), keyEnds: ends(keys) };
}

describe('packed reads and writes on the real broker (patches/node-rdkafka-packed.patch)', function () {
  this.timeout(120_000);
  const topic = unique('packed');
  const produced = unique('packed_produce');

  after(async () => {
    await dropAll([topic, produced], [], []);
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

  it('a poll that reaches the end of the topic returns what it has, not waiting to fill the batch', async () => {
    const slow = unique('packed_slow');
    await createTopic(slow, 1);
    const source = new KafkaSource(kafka(), slow, unique('packed_group'), { onAssign: async () => new Map(), onRevoke: async () => undefined });
    await source.connect();
    try {
      const until = async (n: number, waitMs: number) => {
        let got = 0;
        while (got < n) got += batchSize((await source.poll(1000, waitMs)).batch);
        return got;
      };
      await produce([{ topic: slow, partition: 0, key: null, value: Buffer.from('first') }]);
      assert.equal(await until(1, 1000), 1); // joined, assigned, reading
      await produce([1, 2, 3, 4, 5].map((i) => ({ topic: slow, partition: 0, key: null, value: Buffer.from(`m${i}`) })));
      const started = Date.now();
      assert.equal(await until(5, 30_000), 5);
      // Waiting to fill the batch of 1,000 would have taken the whole 30 s of the first poll (without enable.partition.eof).
      assert.ok(Date.now() - started < 15_000, `5 messages took ${Date.now() - started} ms to read`);
    } finally {
      await source.disconnect();
      await dropAll([slow], [], []);
    }
  });

  it('says what is wrong when it cannot read (not connected)', async () => {
    const source = new KafkaSource(kafka(), topic, unique('packed_group'), { onAssign: async () => new Map(), onRevoke: async () => undefined });
    await assert.rejects(source.poll(10), /KafkaConsumer is not connected/);
  });

  it('producePacked sends every message once, keys and bytes as given, and counts their deliveries', async () => {
    await createTopic(produced, 3);
    const values: Buffer[] = [];
    const keys: Buffer[] = [];
    for (let i = 0; i < 25_000; i++) {
      values.push(i % 11 === 0 ? Buffer.alloc(0) : Buffer.from(JSON.stringify({ i, text: 'Crème brûlée 🍮' })));
      keys.push(i % 13 === 0 && i % 11 !== 0 ? Buffer.alloc(0) : Buffer.from(`key-${i}`)); // empty values keep their key, to be told apart
    }
    // A small librdkafka queue, so that the batch does not fit at once and the rest is enqueued as room is made.
    const producer = new KafkaProducer(kafka(), { 'queue.buffering.max.messages': 5000 });
    await producer.connect();
    let reported = 0;
    producer.onDelivery = (n) => { reported += n; };
    try {
      await producer.producePacked(produced, packed(values.slice(0, 20_000), keys.slice(0, 20_000)));
      await producer.producePacked(produced, packed(values.slice(20_000), keys.slice(20_000)), 2);
      await producer.flush();
      assert.equal(producer.delivered, values.length);
      assert.equal(producer.failed, 0);
      assert.equal(producer.inFlight, 0);
      assert.equal(reported, values.length);
    } finally {
      await producer.disconnect();
    }
    const read = await readTopic(produced);
    assert.equal(read.length, values.length);
    const seen = new Map<string, number>();
    for (const m of read) {
      const body = m.value!.length ? (JSON.parse(m.value!.toString()) as { i: number; text: string }) : undefined;
      const key = m.key === null || m.key === undefined ? null : m.key.toString();
      if (body) {
        assert.equal(body.text, 'Crème brûlée 🍮');
        assert.equal(key, body.i % 13 === 0 ? null : `key-${body.i}`, 'a key of zero bytes is no key');
        if (body.i >= 20_000) assert.equal(m.partition, 2, 'the partition asked for');
        seen.set(`v${body.i}`, (seen.get(`v${body.i}`) ?? 0) + 1);
      } else {
        assert.match(String(key), /^key-\d+$/);
        assert.equal(Number(key!.slice(4)) % 11, 0, 'an empty value is one of those sent empty');
        seen.set(`v${key!.slice(4)}`, (seen.get(`v${key!.slice(4)}`) ?? 0) + 1);
      }
    }
    assert.equal(seen.size, read.length, 'no message twice');
  });

  it('producePacked refuses ends past the buffer and says what is wrong when not connected', async () => {
    const producer = new KafkaProducer(kafka());
    const b = packed([Buffer.from('x')], [Buffer.from('k')]);
    await assert.rejects(producer.producePacked(produced, b), /not connected/);
    await producer.connect();
    try {
      await assert.rejects(producer.producePacked(produced, { ...b, valueEnds: Uint32Array.of(99) }), /past its buffer/);
      await assert.rejects(producer.producePacked(produced, { ...b, keyEnds: Uint32Array.of() }), /as many key ends as value ends/);
      await assert.rejects(producer.producePacked(produced, b, 7), /Unknown partition/, 'the topic has 3');
      assert.equal(producer.inFlight, 0);
    } finally {
      await producer.disconnect();
    }
  });

  it('producePacked counts messages Kafka did not take, and flush fails with the reason', async () => {
    // Messages for a topic that does not exist (the broker does not create topics), given 1 ms: each one fails.
    const producer = new KafkaProducer(kafka(), { 'enable.idempotence': false, 'message.timeout.ms': 1, 'topic.metadata.propagation.max.ms': 10 });
    await producer.connect();
    try {
      await producer.producePacked(unique('no_such_topic'), packed([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], [Buffer.from('1'), Buffer.from('2'), Buffer.from('3')]));
      await assert.rejects(producer.flush(), /delivery failed: /);
      assert.equal(producer.failed, 3);
      assert.equal(producer.delivered, 0);
      assert.equal(producer.inFlight, 0);
    } finally {
      await producer.disconnect();
    }
  });
});

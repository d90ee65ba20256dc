import assert from 'node:assert/strict';
import Kafka from 'node-rdkafka';
import { OrderFactory } from '../../topologies/order-factory.ts';
import { createTopic, db, dropAll, readTopic, runTopology, unique } from '../helpers/infra.ts';
import { CODEC_NAMES, javaProduce, storedBatches } from '../helpers/kafka-log.ts';

describe('every compression codec, written by another client', () => {
  const topic = unique('codecs');
  const table = unique('orders_data');
  const group = unique('ingest');
  after(() => dropAll([topic, `${topic}.dlq`], [table], [group]));

  it('this build of librdkafka has every codec, SSL and SASL/SCRAM', () => {
    for (const f of ['gzip', 'snappy', 'lz4', 'zstd', 'ssl', 'sasl_scram']) assert.ok(Kafka.features.includes(f), `${f} in ${Kafka.features.join(',')}`);
  });

  it('orders-ingest reads batches of none, gzip, snappy, lz4 and zstd from the Java producer, null keys included, each record once', async () => {
    const partitions = 6;
    await createTopic(topic, partitions);
    const factory = new OrderFactory(11, 0);
    const ids: string[] = [];
    const lines: string[] = [];
    let i = 0;
    for (const codec of CODEC_NAMES) {
      for (let k = 0; k < 1000; k++, i++) {
        const order = factory.next();
        ids.push(order.key);
        // Every other record without a key; partitions taken in turn, so each codec reaches every partition.
        lines.push(`${codec}\t${i % partitions}\t${k % 2 ? '\\N' : order.key}\t${order.value}`);
      }
      lines.push('flush');
    }
    assert.equal(await javaProduce(topic, lines), ids.length);
    // What the broker stored: batches of each codec in each partition.
    for (let p = 0; p < partitions; p++) {
      const codecs = new Set(storedBatches(topic, p).map((b) => b.codec));
      assert.deepEqual([...codecs].sort(), [...CODEC_NAMES].sort(), `codecs stored in partition ${p}`);
    }
    const r = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', String(partitions), '--stop-when-idle', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /cannot read|Not implemented/);
    const rows = await db().any<{ order_id: string }>('SELECT order_id FROM $1:name', [table]);
    assert.equal(rows.length, ids.length, 'one row per record');
    assert.deepEqual(rows.map((x) => x.order_id).sort(), [...ids].sort(), 'the rows are exactly the records written');
    assert.equal((await readTopic(`${topic}.dlq`)).length, 0, 'no dead letters');
  });
});

import Kafka from 'node-rdkafka';
import { clientConfig, type KafkaConnection } from '../kafka/client-config.ts';
import { readRange } from '../kafka/read-range.ts';
import type { ChangelogEntry } from './store.ts';

/** Reads one changelog partition from the beginning to its end, for restoring a state store. */
export async function readChangelog(conn: KafkaConnection, topic: string, partition: number): Promise<ChangelogEntry[]> {
  const consumer = new Kafka.KafkaConsumer(clientConfig(conn, {
    'group.id': `${topic}-restore`, 'enable.auto.commit': false, 'client.id': 'pipeline-restore',
  }) as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (err) => (err ? reject(err) : resolve())));
  try {
    const wm = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) =>
      consumer.queryWatermarkOffsets(topic, partition, 10_000, (err, o) => (err ? reject(err) : resolve(o))));
    const out: ChangelogEntry[] = [];
    await readRange(consumer, topic, partition, wm.lowOffset, wm.highOffset, (m) => {
      if (m.key) out.push({ key: m.key.toString(), value: m.value ? (JSON.parse(m.value.toString()) as ChangelogEntry['value']) : null });
    });
    return out;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

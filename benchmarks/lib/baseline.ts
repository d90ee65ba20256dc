import { KafkaSource, type KafkaConnection } from '../../pipeline/index.ts';

type ConsumerConfig = ConstructorParameters<typeof KafkaSource>[4];

/**
 * A consumer that a ceiling or a baseline reads with: a KafkaSource of its own group from the start of the topic,
 * connected, and the moment its partitions were first assigned (where its timing starts).
 */
export async function timedSource(kafka: KafkaConnection, topic: string, group: string, config?: ConsumerConfig): Promise<{ source: KafkaSource; startedAt: () => number }> {
  let started = 0;
  const source = new KafkaSource(kafka, topic, group, {
    onAssign: async () => {
      started ||= performance.now();
      return new Map();
    },
    onRevoke: async () => undefined,
  }, config);
  await source.connect();
  return { source, startedAt: () => started };
}

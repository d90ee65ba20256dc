import type { TopicSinkSpec } from '../dsl/plan.ts';
import { ensureTopics } from '../kafka/admin.ts';
import type { KafkaProducer } from '../kafka/producer.ts';
import type { StreamRecord } from '../records.ts';
import type { Sink, SinkSetup } from './sink.ts';

/**
 * Records into a Kafka topic (toTopic), produced before the flush's transaction and acknowledged: the commit of
 * the source offsets after them is what makes them count. A flush that fails after producing is produced again,
 * so a record can reach the topic twice (at least once, as Kafka Streams without exactly-once processing).
 */
export class TopicSink implements Sink<StreamRecord> {
  readonly name: string;
  readonly label: string;

  constructor(private readonly spec: TopicSinkSpec) {
    this.name = spec.name;
    this.label = spec.topic;
  }

  describe(): string {
    return `topic ${this.spec.topic} (produced and acknowledged before the flush's transaction)`;
  }

  async setup({ kafka, partitions }: SinkSetup): Promise<void> {
    await ensureTopics(kafka, [{ name: this.spec.topic, partitions: await partitions() }]);
  }

  without(records: StreamRecord[], partitions: ReadonlySet<number>): StreamRecord[] {
    return records.filter((r) => !partitions.has(r.partition));
  }

  async produce(records: StreamRecord[], producer: KafkaProducer): Promise<void> {
    const { spec } = this;
    for (const r of records) {
      const m = spec.serialize(r.value, r.key);
      await producer.produce({ topic: spec.topic, key: m.key, value: m.value, headers: r.headers });
    }
  }
}

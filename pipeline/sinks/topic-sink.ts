import { UPSTREAM_COUNT_HEADER, UPSTREAM_HEADER, type TopicSinkSpec } from '../dsl/plan.ts';
import { ensureTopics } from '../kafka/admin.ts';
import type { Headers, KafkaProducer } from '../kafka/producer.ts';
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
    return `topic ${this.spec.topic}${this.spec.repartition ? ' (repartition)' : ''} (produced with the flush)`;
  }

  /** The source's partition count (a repartition topic's records say how many upstream partitions there are). */
  private upstreams = 0;

  async setup({ kafka, partitions }: SinkSetup): Promise<void> {
    this.upstreams = await partitions();
    if (!this.spec.repartition) await ensureTopics(kafka, [{ name: this.spec.topic, partitions: this.upstreams }]);
  }

  without(records: StreamRecord[], partitions: ReadonlySet<number>): StreamRecord[] {
    return records.filter((r) => !partitions.has(r.partition));
  }

  async produce(records: StreamRecord[], producer: KafkaProducer): Promise<void> {
    const { spec } = this;
    for (const r of records) {
      const m = spec.serialize(r.value, r.key);
      if (!spec.repartition) {
        await producer.produce({ topic: spec.topic, key: m.key, value: m.value, headers: r.headers });
        continue;
      }
      await producer.produce({ topic: spec.topic, key: m.key, value: m.value, headers: repartitionHeaders(r, this.upstreams), timestamp: r.timestamp });
    }
  }
}

/** A repartitioned record's headers: its own, and the partition it came from of how many. */
export function repartitionHeaders(r: StreamRecord, upstreams: number): Headers {
  return [...(r.headers ?? []).filter((h) => !(UPSTREAM_HEADER in h) && !(UPSTREAM_COUNT_HEADER in h)),
    { [UPSTREAM_HEADER]: String(r.partition) }, { [UPSTREAM_COUNT_HEADER]: String(upstreams) }];
}

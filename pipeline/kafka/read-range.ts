import type Kafka from 'node-rdkafka';

/**
 * Reads offsets [from, end) of one partition with a consumer of its own (assigned, not in a group), handing each
 * message to onMessage. The end is reached when a message at end - 1 came, or when the consumer's position is at
 * or past end (offsets that are not messages, transaction markers, are never delivered). A read that makes no
 * progress for stallMs throws, naming where it stopped: a range not read whole is never taken for read.
 */
export async function readRange(consumer: Kafka.KafkaConsumer, topic: string, partition: number, from: number, end: number,
  onMessage: (m: Kafka.Message) => void, stallMs = 30_000): Promise<void> {
  if (from >= end) return;
  consumer.assign([{ topic, partition, offset: from }]);
  let next = from;
  let progressAt = Date.now();
  try {
    while (next < end) {
      const msgs = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(1000, (err, m) => (err ? reject(err) : resolve(m))));
      for (const m of msgs) {
        if (m.offset < next || m.offset >= end) continue;
        next = m.offset + 1;
        progressAt = Date.now();
        onMessage(m);
      }
      if (next >= end) break;
      const position = consumer.position([{ topic, partition }])[0]?.offset;
      if (typeof position === 'number' && position >= end) break;
      if (Date.now() - progressAt >= stallMs) throw new Error(`reading ${topic}[${partition}] stopped at offset ${next} of ${end}`);
    }
  } finally {
    consumer.unassign();
  }
}

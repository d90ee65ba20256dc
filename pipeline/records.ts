import type { Headers } from './kafka/producer.ts';
import type { DeadLetter } from './postgres/dead-letters.ts';

/** A record as it moves through a topology: what Kafka gave, and the value as the stages have made it so far. */
export interface StreamRecord<V = unknown> {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number | undefined;
  /** The key as the stages have made it (selectKey, groupBy); from Kafka: the key bytes as a string, or null. */
  key: unknown;
  /** The message key exactly as it came from Kafka: what a dead letter carries. */
  rawKey: Buffer | null;
  headers: Headers | undefined;
  /** The message value exactly as it came from Kafka (null for a tombstone): what a dead letter carries. */
  raw: Buffer | null;
  value: V;
}

/** What a stage sees besides the batch: a way to reject a record to the dead-letter topic. */
export interface StageContext {
  deadLetter(record: StreamRecord, reason: string, message: string): void;
}

/**
 * A stage transforms a batch synchronously and returns the records that go on (the same objects, changed, or
 * fewer of them). It never commits: the runtime owns offsets. Rejected records go through ctx.deadLetter.
 */
export interface Stage<I = unknown, O = unknown> {
  readonly name: string;
  process(batch: StreamRecord<I>[], ctx: StageContext): StreamRecord<O>[];
}

/** The dead letter of a record: its original key, bytes and headers, the reason, and where it came from. */
export function deadLetterOf(r: StreamRecord, dlqTopic: string, reason: string, message: string): DeadLetter {
  return {
    dlqTopic, key: r.rawKey, value: r.raw, headers: r.headers, reason, message,
    sourceTopic: r.topic, sourcePartition: r.partition, sourceOffset: r.offset, sourceTimestamp: r.timestamp,
  };
}

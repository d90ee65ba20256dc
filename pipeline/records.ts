import type { DeadLetterReason } from './errors.ts';
import type { Headers } from './kafka/producer.ts';
import type { DeadLetter } from './postgres/dead-letters.ts';
import type { ChangelogEntry, StorePosition } from './state/store.ts';

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
  deadLetter(record: StreamRecord, reason: DeadLetterReason, message: string): void;
  /** A record that came after its window closed: dropped, and counted by the runtime. */
  late(record: StreamRecord, stage: string): void;
}

/**
 * A stage transforms a batch synchronously and returns the records that go on (the same objects, changed, or
 * fewer of them). It never commits: the runtime owns offsets. Rejected records go through ctx.deadLetter.
 */
export interface Stage<I = unknown, O = unknown> {
  readonly name: string;
  process(batch: StreamRecord<I>[], ctx: StageContext): StreamRecord<O>[];
  /**
   * Work that must wait (fetching a schema), done on the batch as it came from Kafka before any stage processes
   * it, so that process() stays synchronous. May throw a retriable error; the runtime retries.
   */
  prepare?(batch: StreamRecord[]): Promise<void>;
  /** Stateful stages keep a store per partition, backed by a changelog topic. */
  readonly stateful?: StatefulStage;
}

/** What the runtime needs of a stage with state: cut changelog entries, restore, forget a partition. */
export interface StatefulStage {
  readonly storeName: string;
  /** Changelog entries of what changed in the partition since the last cut (see state/store.ts). */
  cut(partition: number, at: StorePosition): ChangelogEntry[];
  restore(partition: number, entries: ChangelogEntry[], committed: StorePosition): void;
  drop(partition: number): void;
  /** Event time up to which windows of the partition are closed (stream time - grace); -Infinity before any record. */
  closedThrough(partition: number): number;
}

/** A record key as text, what stores and tables look keys up by: a string as it is, anything else as JSON. */
export const keyText = (key: unknown): string => (typeof key === 'string' ? key : JSON.stringify(key));

/** The key of a windowed aggregate, as Kafka Streams' Windowed<K>. */
export interface Windowed<K> {
  key: K;
  start: number;
  end: number;
}

/** The dead letter of a record: its original key, bytes and headers, the reason, and where it came from. */
export function deadLetterOf(r: StreamRecord, dlqTopic: string, reason: DeadLetterReason, message: string): DeadLetter {
  return {
    dlqTopic, key: r.rawKey, value: r.raw, headers: r.headers, reason, message,
    sourceTopic: r.topic, sourcePartition: r.partition, sourceOffset: r.offset, sourceTimestamp: r.timestamp,
  };
}

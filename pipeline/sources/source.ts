import type { PackedBatch } from './packed-batch.ts';

/**
 * An error of one partition that the source hands over in place of its messages: a batch it could not decode (a
 * codec the build lacks, a corrupt batch), a message too large for the fetch limits, a fetch error. partition is -1
 * and offset negative when it is not about one partition or position.
 */
export interface PartitionError {
  topic: string;
  partition: number;
  offset: number;
  code: number;
  message: string;
}

/** What a poll gives: messages packed, whether an assignment changed while it ran, and the partitions' errors. */
export interface Polled {
  batch: PackedBatch;
  /**
   * An assignment changed while the poll ran: the batch may mix positions from before the change with positions after
   * it, so the runtime does not take it as it is (it seeks back and reads again).
   */
  straddled: boolean;
  /** After the messages: the runtime stops taking an erroring partition's messages at the error's offset. */
  errors: PartitionError[];
}

/** How a source hands partitions to the runtime and takes them back (a consumer group's rebalance listener). */
export interface PartitionListener {
  /**
   * Returns the offsets to start each partition from (-1: from the beginning): one for each input of the source, in
   * the order of its inputs (a source of one topic uses the first).
   */
  onAssign(partitions: number[]): Promise<Map<number, number[]>>;
  /** Called before the partitions are given up; finish or abandon their work here. */
  onRevoke(partitions: number[]): Promise<void>;
}

/**
 * Where a topology's records come from: partitions of ordered records, each at an offset, read in packed polls.
 * The runtime owns the positions (runtime/ledger.ts) and stores them with the committer; the source only reads,
 * seeks and pauses. Kafka (sources/kafka-source.ts) and a file (sources/file-source.ts) are behind it, and the
 * runtime's unit tests drive it with an in-memory one (testing/memory.ts).
 */
export interface Source {
  /** The name offsets are stored under (a topic, or file:<path>); with several inputs, the first. */
  readonly topic: string;
  /**
   * Every topic read, the first being `topic`, when there are several: co-partitioned topics, whose partition p all
   * go to the instance that is assigned partition p of the first (a task, as Kafka Streams has them). The methods
   * below that take a topic act on that input; without one, on the first.
   */
  readonly inputs?: readonly string[];
  /** What it reads, for log lines: 'kafka', 'file'. */
  readonly kind: string;
  connect(): Promise<void>;
  /** Up to max records; an empty batch when none came within a short wait. */
  poll(max: number): Promise<Polled>;
  seek(partition: number, offset: number, topic?: string): Promise<void>;
  pause(partitions: number[], topic?: string): void;
  resume(partitions: number[], topic?: string): void;
  /** Resolves once no assignment change is being handled. */
  settled(): Promise<void>;
  /** The partition's first offset and the offset after its last record, as of now. */
  watermarks(partition: number, topic?: string): Promise<{ low: number; high: number }>;
  /**
   * Where the consumer reads next in the partition (past what it handed over, and past transaction markers, which are
   * offsets but no messages), when the source knows.
   */
  readPosition?(partition: number, topic?: string): number | undefined;
  /** Progress for outside observers only (Kafka's committed offsets for lag tools); the committer holds the truth. */
  commitForMonitoring(offsets: { topic?: string; partition: number; offset: number }[]): void;
  disconnect(): Promise<void>;
  /** A bounded source (a file without a loop) has given every record: the runtime commits them and stops. */
  finished?(): boolean;
  /** Lag per partition, when the source measures it (librdkafka statistics). */
  onLag?: (lag: Map<number, number>) => void;
  onError?: (err: Error) => void;
}

/** Makes the source once the runtime's listener exists (the listener is called from inside the source's polls). */
export type SourceFactory = (listener: PartitionListener) => Source;

import type { KafkaConnection } from '../kafka/client-config.ts';
import type { KafkaProducer } from '../kafka/producer.ts';
import type { Connection, Database } from '../postgres/db.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';

/** What a sink may create at start: its tables, its topics. */
export interface SinkSetup {
  db: Database;
  kafka: KafkaConnection;
  /** Partitions of the source (asked of Kafka when called): a topic sink gets as many, a window sink waits for all of them. */
  partitions(): Promise<number>;
  /** For what setup changed (a column added). */
  log?(line: string): void;
}

/** What a sink learns of the flush it writes in, besides its own items. */
export interface FlushInfo {
  /** Per partition in the flush: event time up to which its windows are closed (stateful plans). */
  closedThrough: ReadonlyMap<number, number>;
}

/**
 * Where a plan's records end up. A flush hands each sink the items that reached it since the last flush (COPY
 * segments for a Postgres append sink, records for the others) in one of two ways:
 * - `produce` before the flush's transaction, acknowledged (a topic): the transaction's commit is what makes them count,
 *   and a retried flush produces them again (at least once into Kafka, as Kafka Streams without EOS);
 * - `write` inside the transaction that also moves the source offsets (a table): exactly once.
 * The runtime never asks which kind a sink is; it calls what the sink has.
 */
export interface Sink<In = unknown> {
  /** Unique in the plan: what the stages' output is collected under. */
  readonly name: string;
  /** The table or topic, for metric labels. */
  readonly label: string;
  /** One line for --describe and logs. */
  describe(): string;
  setup(s: SinkSetup): Promise<void>;
  /** The items of a pending batch less those of the partitions (given up in a rebalance, or rewound). */
  without(items: In[], partitions: ReadonlySet<number>): In[];
  produce?(items: In[], producer: KafkaProducer): Promise<void>;
  /**
   * Reads the Postgres type (pg_type.typname) of each column now, in the sink's column order (after setup): a sink
   * that gives them takes segments of binary COPY rows (codec/copy-binary.ts) encoded for them, as well as text.
   */
  columnTypes?(): Promise<readonly string[] | undefined>;
  /** Rows Postgres rejects go to rejected; returns the rows written. */
  write?(conn: Connection, items: In[], flush: FlushInfo, rejected: DeadLetter[]): Promise<number>;
}

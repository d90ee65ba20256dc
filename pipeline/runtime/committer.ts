import { changelogTopic } from '../dsl/plan.ts';
import { ensureTopics } from '../kafka/admin.ts';
import type { KafkaConnection } from '../kafka/client-config.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import type { Database } from '../postgres/db.ts';
import { ensureDeadLetterTable, type DeadLetter } from '../postgres/dead-letters.ts';
import { inFlushTransaction } from '../postgres/flush-transaction.ts';
import { ensureOffsetsTable, loadOffsets } from '../postgres/offsets.ts';
import type { Sink } from '../sinks/sink.ts';
import { readChangelog } from '../state/changelog.ts';
import type { ChangelogEntry } from '../state/store.ts';
import type { FlushPlan } from './flush-plan.ts';

export interface CommitResult {
  /** Rows the sinks wrote. */
  written: number;
  /** Rows the sinks rejected (each now a dead letter, committed with the rest). */
  rejected: DeadLetter[];
  /** How long the commit itself took (COMMIT, or the Kafka transaction commits), when the committer measures it. */
  commitSeconds?: number;
}

/**
 * Where flushes are committed, and the truth about positions: the runtime prepares a FlushPlan (what to commit) and
 * the committer commits it as one unit (as Kafka Streams' TaskExecutor commits what StreamTask.prepareCommit gave).
 * A commit either happens whole or throws; after a throw the runtime asks `offsets` where the partitions stand, and
 * a partition's state is restored from its changelog (`changelog`) as of that offset.
 */
export interface Committer {
  /** Where the truth is kept, for log lines: 'Postgres'. */
  readonly kind: string;
  /** The offsets are the consumer group's in Kafka (the source's own commits for lag tools would race them). */
  readonly commitsToKafka?: boolean;
  /** Creates what commits need (tables, topics); called once, retried while it throws retriable errors. */
  setup(): Promise<void>;
  commit(plan: FlushPlan): Promise<CommitResult>;
  /** The next offset the committer holds for each partition of a topic (-1: none yet). */
  offsets(partitions: number[], topic: string): Promise<Map<number, number>>;
  /** A state store's changelog of one partition, from the beginning. */
  changelog(store: string, partition: number): Promise<ChangelogEntry[]>;
  close(): Promise<void>;
}

/** What every committer is given: the plan's sinks and stores, and where they go. */
export interface CommitterOptions {
  kafka: KafkaConnection;
  applicationId: string;
  groupId: string;
  /** The first input (the name the source's offsets are stored under): its partition count is the number of tasks. */
  topic: string;
  sinks: readonly Sink[];
  /** The stores whose changelogs the flushes write. */
  stores: readonly string[];
  /** For what a sink's setup changed. */
  log?: (line: string) => void;
}

export interface PostgresCommitterOptions extends CommitterOptions {
  db: Database;
  /** The source's partition count when it is not a Kafka topic's (asked of Kafka otherwise). */
  partitions?: () => Promise<number>;
}

/**
 * The one transaction of exactly-once (postgres/flush-transaction.ts): first what goes to Kafka is produced and
 * acknowledged (changelog entries, topic sinks), then one Postgres transaction moves the source offsets (fenced),
 * writes every table sink and the dead letters, and commits.
 */
export class PostgresCommitter implements Committer {
  readonly kind = 'Postgres';
  private producer: KafkaProducer | undefined;
  private readonly tableSinks: Sink[];
  private readonly topicSinks: Sink[];

  constructor(private readonly o: PostgresCommitterOptions) {
    this.tableSinks = o.sinks.filter((s) => s.write);
    this.topicSinks = o.sinks.filter((s) => s.produce);
  }

  async setup(): Promise<void> {
    const { o } = this;
    await ensureOffsetsTable(o.db);
    await ensureDeadLetterTable(o.db);
    let producer: KafkaProducer | undefined;
    const connect = async () => {
      if (!producer) {
        producer = new KafkaProducer(o.kafka, { 'client.id': `${o.applicationId}-task` });
        await producer.connect();
      }
      return producer;
    };
    let count: number | undefined;
    // The source's partition count, asked only by what needs it: changelogs and topic sinks get as many partitions,
    // a window sink waits for all of them.
    const partitions = async () => {
      count ??= await (o.partitions ? o.partitions() : (await connect()).partitionCount(o.topic));
      if (!count) throw new Error(`topic ${o.topic} has no partitions`);
      return count;
    };
    try {
      for (const s of o.sinks) await s.setup({ db: o.db, kafka: o.kafka, partitions, log: o.log });
      if (o.stores.length) {
        const n = await partitions();
        await ensureTopics(o.kafka, o.stores.map((s) => ({ name: changelogTopic(o.applicationId, s), partitions: n, config: { 'cleanup.policy': 'compact' } })));
      }
      if (o.stores.length || this.topicSinks.length) this.producer = await connect();
    } finally {
      if (producer && producer !== this.producer) await producer.disconnect();
    }
  }

  async commit(plan: FlushPlan): Promise<CommitResult> {
    const { o, producer } = this;
    // (1) Changelog and topic sinks first, acknowledged: the Postgres commit below is what makes them count.
    if (producer) {
      for (const c of plan.changelog) {
        for (const e of c.entries) {
          await producer.produce({ topic: c.topic, partition: c.partition, key: Buffer.from(e.key), value: e.value === null ? null : Buffer.from(JSON.stringify(e.value)) });
        }
      }
      for (const s of this.topicSinks) await s.produce!(plan.items.get(s.name) ?? [], producer);
      await producer.flush();
    }
    // (2) One transaction: fenced offsets, every table sink, dead letters.
    return inFlushTransaction(o.db, o.groupId, plan.offsets, plan.deadLetters, async (conn, rejected) => {
      let n = 0;
      for (const s of this.tableSinks) n += await s.write!(conn, plan.items.get(s.name) ?? [], plan, rejected);
      return n;
    });
  }

  offsets(partitions: number[], topic: string): Promise<Map<number, number>> {
    return loadOffsets(this.o.db, this.o.groupId, topic, partitions);
  }

  changelog(store: string, partition: number): Promise<ChangelogEntry[]> {
    return readChangelog(this.o.kafka, changelogTopic(this.o.applicationId, store), partition);
  }

  async close(): Promise<void> {
    await this.producer?.disconnect();
  }
}

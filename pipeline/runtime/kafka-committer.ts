import type Kafka from 'node-rdkafka';
import { changelogTopic } from '../dsl/plan.ts';
import { ensureTopics } from '../kafka/admin.ts';
import { KafkaProducer, type Headers } from '../kafka/producer.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import type { StreamRecord } from '../records.ts';
import type { Sink } from '../sinks/sink.ts';
import { readChangelog } from '../state/changelog.ts';
import type { ChangelogEntry } from '../state/store.ts';
import type { CommitResult, Committer, CommitterOptions } from './committer.ts';
import type { FlushPlan } from './flush-plan.ts';

export interface KafkaCommitterOptions extends CommitterOptions {
  /** The group's consumer (KafkaSource.groupConsumer): the offsets are the group's, and a transaction is fenced by its generation. */
  consumer: () => Kafka.KafkaConsumer;
  /** true: Kafka transactions (exactly once); false: produce, then commit the offsets (at least once). */
  transactional: boolean;
}

/**
 * Commits a topology whose sinks are all Kafka topics to Kafka itself, with no database.
 *
 * Exactly once (transactional), as Kafka Streams' exactly_once does with a producer per task: each task (partition p)
 * has a transactional producer whose transactional.id is `<group>-task-<p>`, so whoever owns the task next fences the
 * one before and aborts its open transaction when it takes the task over. A flush commits each of its tasks in one
 * transaction: the task's output records, its changelog entries and its dead letters are produced, its source offsets
 * are sent with sendOffsetsToTransaction, and the transaction commits. A consumer with isolation.level=read_committed
 * (librdkafka's default, and what the changelog restore reads with) sees all of it or none of it, so a crash at any
 * instant gives each output record once.
 *
 * At least once: one producer; a flush produces everything, waits for every acknowledgement, then commits the offsets
 * to the group. A crash after the records and before the offsets produces them again.
 */
export class KafkaCommitter implements Committer {
  readonly kind: string;
  readonly commitsToKafka = true;
  private readonly topicSinks: Sink[];
  private readonly producers = new Map<number, KafkaProducer>();
  private producer: KafkaProducer | undefined;

  constructor(private readonly o: KafkaCommitterOptions) {
    this.kind = o.transactional ? 'Kafka (transactions)' : 'Kafka';
    this.topicSinks = o.sinks.filter((s) => s.produce);
    if (this.topicSinks.length !== o.sinks.length) throw new Error('the Kafka committer commits topologies whose sinks are all Kafka topics');
  }

  async setup(): Promise<void> {
    const { o } = this;
    const producer = new KafkaProducer(o.kafka, { 'client.id': `${o.applicationId}-task` });
    await producer.connect();
    try {
      const n = await producer.partitionCount(o.topic);
      if (!n) throw new Error(`topic ${o.topic} has no partitions`);
      // Topic sinks only (checked in the constructor): none of them uses the database.
      for (const s of o.sinks) await s.setup({ db: undefined as never, kafka: o.kafka, partitions: async () => n, log: o.log });
      if (o.stores.length) {
        await ensureTopics(o.kafka, o.stores.map((s) => ({ name: changelogTopic(o.applicationId, s), partitions: n, config: { 'cleanup.policy': 'compact' } })));
      }
    } catch (err) {
      await producer.disconnect();
      throw err;
    }
    if (o.transactional) await producer.disconnect();
    else this.producer = producer;
  }

  async commit(plan: FlushPlan): Promise<CommitResult> {
    if (!this.o.transactional) return this.commitAtLeastOnce(plan);
    let written = 0;
    let commitSeconds = 0;
    for (const p of [...new Set(plan.offsets.map((m) => m.partition))].sort((a, b) => a - b)) {
      const producer = this.producers.get(p);
      if (!producer) throw new Error(`task ${p} has no transactional producer (its offsets were not read)`);
      try {
        await producer.beginTransaction();
        written += await this.produceAll(producer, plan, (partition) => partition === p);
        await producer.sendOffsetsToTransaction(plan.offsets.filter((m) => m.partition === p).map((m) => ({ topic: m.topic, partition: p, offset: m.next })), this.o.consumer());
        const at = performance.now();
        await producer.commitTransaction();
        commitSeconds += (performance.now() - at) / 1000;
      } catch (err) {
        await producer.abortTransaction(10_000).catch(() => undefined);
        // Whatever state it is in (aborted, fenced, fatal), the next owner of the task makes a producer afresh.
        this.producers.delete(p);
        await producer.disconnect().catch(() => undefined);
        throw err;
      }
    }
    return { written, rejected: [], commitSeconds };
  }

  private async commitAtLeastOnce(plan: FlushPlan): Promise<CommitResult> {
    const producer = this.producer!;
    const written = await this.produceAll(producer, plan, () => true);
    await producer.flush();
    const offsets = plan.offsets.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.next }));
    const at = performance.now();
    if (offsets.length) this.o.consumer().commitSync(offsets);
    return { written, rejected: [], commitSeconds: (performance.now() - at) / 1000 };
  }

  /** The flush's changelog entries, output records and dead letters of the tasks `mine` accepts; returns the records. */
  private async produceAll(producer: KafkaProducer, plan: FlushPlan, mine: (partition: number) => boolean): Promise<number> {
    for (const c of plan.changelog) {
      if (!mine(c.partition)) continue;
      for (const e of c.entries) {
        await producer.produce({ topic: c.topic, partition: c.partition, key: Buffer.from(e.key), value: e.value === null ? null : Buffer.from(JSON.stringify(e.value)) });
      }
    }
    let written = 0;
    for (const s of this.topicSinks) {
      const records = ((plan.items.get(s.name) ?? []) as StreamRecord[]).filter((r) => mine(r.partition));
      await s.produce!(records, producer);
      written += records.length;
    }
    for (const d of plan.deadLetters) if (mine(d.sourcePartition)) await producer.produce(deadLetterMessage(d));
    return written;
  }

  /**
   * The group's committed offsets. Asked first for the first input when tasks are assigned (and after a failed flush):
   * each task then gets a transactional producer of its own, whose initTransactions fences the task's previous owner
   * and aborts what it left open, before the offsets are read.
   */
  async offsets(partitions: number[], topic: string): Promise<Map<number, number>> {
    const { o } = this;
    if (o.transactional && topic === o.topic) {
      for (const p of partitions) {
        await this.producers.get(p)?.disconnect().catch(() => undefined);
        this.producers.delete(p);
        const producer = new KafkaProducer(o.kafka, {
          'client.id': `${o.groupId}-task-${p}`, 'transactional.id': `${o.groupId}-task-${p}`, 'transaction.timeout.ms': 30_000,
        });
        await producer.connect();
        try {
          await producer.initTransactions();
        } catch (err) {
          await producer.disconnect().catch(() => undefined);
          throw err;
        }
        this.producers.set(p, producer);
      }
    }
    const committed = await new Promise<Kafka.TopicPartitionOffset[]>((resolve, reject) =>
      o.consumer().committed(partitions.map((partition) => ({ topic, partition })), 10_000, (err, tp) => (err ? reject(err) : resolve(tp))));
    const out = new Map<number, number>();
    for (const p of partitions) {
      const offset = committed.find((c) => c.topic === topic && c.partition === p)?.offset;
      out.set(p, typeof offset === 'number' && offset >= 0 ? offset : -1);
    }
    return out;
  }

  changelog(store: string, partition: number): Promise<ChangelogEntry[]> {
    return readChangelog(this.o.kafka, changelogTopic(this.o.applicationId, store), partition);
  }

  async close(): Promise<void> {
    for (const p of this.producers.values()) await p.disconnect().catch(() => undefined);
    this.producers.clear();
    await this.producer?.disconnect();
  }
}

/** A dead letter as the relay publishes them (postgres/dead-letters.ts): the original key, value and headers, and why. */
function deadLetterMessage(d: DeadLetter): { topic: string; key: Buffer | null; value: Buffer | null; headers: Headers } {
  const headers: Headers = [...(d.headers ?? []),
    { 'error.reason': d.reason }, { 'error.message': d.message }, { 'source.topic': d.sourceTopic },
    { 'source.partition': String(d.sourcePartition) }, { 'source.offset': String(d.sourceOffset) }];
  if (d.sourceTimestamp !== undefined) headers.push({ 'source.timestamp': String(d.sourceTimestamp) });
  return { topic: d.dlqTopic, key: d.key, value: d.value, headers };
}

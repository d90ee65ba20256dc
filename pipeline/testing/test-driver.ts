import { decodeCopyRow } from '../codec/copy-text.ts';
import { PlanExecutor } from '../dsl/executor.ts';
import type { TopologyPlan } from '../dsl/plan.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import { deadLetterOf, type StreamRecord } from '../records.ts';
import { Dispatcher } from '../runtime/dispatch.ts';
import { PendingBatch, prepareFlush } from '../runtime/flush-plan.ts';
import { PartitionLedger } from '../runtime/ledger.ts';
import { isCopySegment } from '../sinks/copy-segment.ts';
import { packMessages } from '../sources/packed-batch.ts';
import type { ChangelogEntry } from '../state/store.ts';
import { MemoryCommitter, messageOf, type MemoryMessage } from './memory.ts';
import { repartitionHeaders } from '../sinks/topic-sink.ts';

export interface TestInput extends MemoryMessage {
  partition?: number;
  /** Which input topic it goes to (a topology that reads several); the first by default. */
  topic?: string;
}

/**
 * Runs a topology without a broker, like Kafka Streams' TopologyTestDriver, on the runtime's own code: piped records
 * are packed as a poll, taken by the PartitionLedger, run by the Dispatcher into a PendingBatch, and commit()
 * prepares the flush (prepareFlush) and commits it to a MemoryCommitter, as StreamTask does. Read what reached each
 * sink, the dead letters and the late records, look into the state stores, and read the changelog the commits wrote.
 * A driver built with `restoreFrom` is a restarted instance: it shares the other's committer (its offsets and
 * changelog are the truth) and restores its state from it.
 */
export class TopologyTestDriver {
  readonly executor: PlanExecutor;
  readonly committer: MemoryCommitter;
  /** Every dead letter the stages made, committed or not. */
  readonly deadLetters: DeadLetter[] = [];
  readonly lateRecords: StreamRecord[] = [];
  private readonly ledger: PartitionLedger;
  private readonly dispatcher: Dispatcher;
  private pending = new PendingBatch();
  /** How many of each sink's pending items were read (readOutput, readRows). */
  private readonly read = new Map<string, number>();
  private readonly unread = new Map<string, unknown[]>();
  /** The next offset of each input partition, by `${topic}/${partition}`. */
  private readonly nextOffset = new Map<string, number>();
  private wallClock: number;

  /** The partitions of the inputs a test uses (0 to partitions - 1): what repartitioned records say they came from. */
  private readonly partitions: number;

  constructor(readonly plan: TopologyPlan, options: { wallClock?: number; restoreFrom?: TopologyTestDriver; partitions?: number } = {}) {
    this.partitions = options.partitions ?? 1;
    this.executor = new PlanExecutor(plan);
    this.ledger = new PartitionLedger(plan.inputs);
    if (this.executor.needsPrepare) throw new Error('the test driver runs plans whose stages need no preparing; a registry schema does (use a local schema in tests)');
    this.wallClock = options.wallClock ?? Date.UTC(2026, 0, 1);
    const dlqTopic = `${plan.topic}.dlq`;
    this.dispatcher = new Dispatcher({
      executor: this.executor,
      pendingOf: () => this.pending,
      deadLetter: (r, reason, message) => {
        const d = deadLetterOf(r, dlqTopic, reason, message);
        this.pending.deadLetters.push(d);
        this.deadLetters.push(d);
      },
      late: (_stage, _n, r) => { if (r) this.lateRecords.push(r); },
      stages: () => undefined,
      threads: 0,
    });
    this.committer = options.restoreFrom?.committer ?? new MemoryCommitter();
    for (const p of this.committer.storedOf(plan.topic).keys()) this.assign(p);
  }

  /**
   * Pipes records into the source topics, a poll per run of records of one topic (so records of two topics are
   * processed in the order given).
   */
  pipeInput(...inputs: TestInput[]): void {
    for (let i = 0; i < inputs.length; ) {
      const topic = inputs[i].topic ?? this.plan.topic;
      let j = i + 1;
      while (j < inputs.length && (inputs[j].topic ?? this.plan.topic) === topic) j++;
      this.poll(topic, inputs.slice(i, j));
      i = j;
    }
  }

  private poll(topic: string, inputs: TestInput[]): void {
    const input = this.plan.inputs.indexOf(topic);
    if (input < 0) throw new Error(`the topology does not read ${topic}`);
    const messages = inputs.map((i) => {
      const partition = i.partition ?? 0;
      if (!this.ledger.owns(partition)) this.assign(partition);
      const offset = this.nextOffset.get(`${topic}/${partition}`)!;
      this.nextOffset.set(`${topic}/${partition}`, offset + 1);
      return messageOf(topic, partition, offset, { ...i, timestamp: i.timestamp ?? this.wallClock });
    });
    for (const m of messages) {
      this.ledger.position(m.partition, input)!.taken = m.offset;
      this.pending.count++;
    }
    this.dispatcher.dispatch(packMessages(topic, messages));
    this.forwardRepartitioned();
  }

  /** How many records of each repartition sink went on to its topic. */
  private readonly forwarded = new Map<string, number>();

  /**
   * Records that reached a repartition topic are read back from it at once, as the next task would read them: all in
   * partition 0, with the headers the sink gives (the partition each came from, of `partitions` upstream ones).
   */
  private forwardRepartitioned(): void {
    for (const spec of this.executor.sinks) {
      if (spec.kind !== 'topic' || !spec.repartition) continue;
      const items = (this.pending.items.get(spec.name) ?? []) as StreamRecord[];
      const from = this.forwarded.get(spec.name) ?? 0;
      if (items.length <= from) continue;
      this.forwarded.set(spec.name, items.length);
      const inputs = items.slice(from).map((r): TestInput => {
        const m = spec.serialize(r.value, r.key);
        const key = m.key === null ? null : m.key.toString();
        return {
          topic: spec.topic, key, value: m.value, timestamp: r.timestamp, headers: repartitionHeaders(r, this.partitions),
          partition: 0,
        };
      });
      this.pipeInput(...inputs);
    }
  }

  /** Records into a global table's topic: applied to the table at once, as its feed does between polls. */
  pipeGlobal(topic: string, ...records: { key: string | null; value: unknown }[]): void {
    const table = this.executor.globalTables.get(topic);
    if (!table) throw new Error(`the topology has no global table of ${topic}`);
    for (const r of records) {
      const m = messageOf(topic, 0, 0, { key: r.key, value: r.value });
      table.apply(m.key === undefined || m.key === null ? null : Buffer.from(m.key), m.value);
    }
  }

  advanceWallClockTime(ms: number): void {
    this.wallClock += ms;
  }

  /** Takes the records that reached a sink (by name, e.g. `to-orders_revenue_1m`) since the last read. */
  readOutput<V = unknown>(sink: string): StreamRecord<V>[] {
    if (this.isCopySink(sink)) throw new Error(`${sink} is a COPY sink: its rows are read with readRows`);
    return this.take(sink) as StreamRecord<V>[];
  }

  /** Takes the rows a COPY sink (toPostgres) would write since the last read, as the text values Postgres reads. */
  readRows(sink: string): (string | null)[][] {
    if (!this.isCopySink(sink)) throw new Error(`${sink} is not a COPY sink: its records are read with readOutput`);
    return this.take(sink).filter(isCopySegment)
      .flatMap((item) => Array.from(item.ends, (end, i) => decodeCopyRow(item.text.subarray(i === 0 ? 0 : item.ends[i - 1], end).toString())));
  }

  /** What a state store holds for a partition (a join's: each side's records held, and each side's stream time). */
  store(name: string, partition = 0): Map<string, unknown> {
    const stage = this.executor.stateful.find((s) => s.storeName === name);
    if (!stage) throw new Error(`no store named ${name}`);
    const store = (stage as unknown as { store(p: number): { entries(): IterableIterator<[string, unknown]> } }).store(partition);
    return new Map(store.entries());
  }

  /**
   * Commits what was piped so far, as the runtime flushes: the flush is prepared (offsets, each sink's items, the
   * changelog cut as of its end) and committed. crashBeforeCommit writes the changelog and not the rest, a crash
   * between the two; the driver then rewinds as the runtime does, to the committed offsets and the state as of them,
   * and the next piped record takes the first uncommitted offset again.
   */
  commit(options: { crashBeforeCommit?: boolean } = {}): void {
    for (const [sink, items] of this.pending.items) this.unread.set(sink, [...(this.unread.get(sink) ?? []), ...items.slice(this.read.get(sink) ?? 0)]);
    this.read.clear();
    const plan = prepareFlush(0, 1, this.pending, this.ledger, this.executor.stateful, this.plan.applicationId);
    this.pending = new PendingBatch();
    this.forwarded.clear();
    try {
      this.committer.apply(plan, { crashAfterChangelog: options.crashBeforeCommit });
      this.ledger.committed(plan.offsets);
    } catch (err) {
      if (!options.crashBeforeCommit) throw err;
      for (const m of plan.offsets) this.assign(m.partition);
    }
  }

  /** The changelog the commits wrote for a store's partition. */
  changelog(store: string, partition = 0): ChangelogEntry[] {
    return this.committer.changelogOf(store, partition);
  }

  /** Owns the partition from the offset the committer holds, its state restored as of it (StreamTask.onAssign). */
  private assign(partition: number): void {
    const committed = this.plan.inputs.map((t) => this.committer.storedOf(t).get(partition) ?? -1);
    const at = committed.length === 1 ? committed[0] : committed;
    for (const s of this.executor.stateful) s.restore(partition, this.committer.changelogOf(s.storeName, partition), at);
    this.ledger.assign(partition, committed);
    this.plan.inputs.forEach((t, i) => this.nextOffset.set(`${t}/${partition}`, Math.max(0, committed[i])));
  }

  private isCopySink(sink: string): boolean {
    return this.executor.sinks.some((s) => s.name === sink && s.kind === 'postgres');
  }

  private take(sink: string): unknown[] {
    const items = this.pending.items.get(sink) ?? [];
    const out = [...(this.unread.get(sink) ?? []), ...items.slice(this.read.get(sink) ?? 0)];
    this.unread.delete(sink);
    this.read.set(sink, items.length);
    return out;
  }
}

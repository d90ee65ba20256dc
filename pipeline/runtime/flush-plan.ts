import { changelogTopic } from '../dsl/plan.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import type { OffsetMove } from '../postgres/offsets.ts';
import type { StatefulStage } from '../records.ts';
import type { Sink } from '../sinks/sink.ts';
import type { ChangelogEntry } from '../state/store.ts';
import type { PartitionLedger } from './ledger.ts';

/** What one lane gathered since its last flush: each sink's items, the dead letters, and how many records. */
export class PendingBatch {
  /** Each sink's items (COPY segments, records), by sink name. */
  readonly items = new Map<string, unknown[]>();
  deadLetters: DeadLetter[] = [];
  count = 0;
  startedAt = Date.now();

  add(sink: string, item: unknown): void {
    let list = this.items.get(sink);
    if (!list) this.items.set(sink, (list = []));
    list.push(item);
  }

  /** Forgets the records of the partitions (revoked, or rewound). */
  drop(partitions: ReadonlySet<number>, sinks: ReadonlyMap<string, Sink>): void {
    for (const [name, list] of this.items) this.items.set(name, sinks.get(name)!.without(list, partitions));
    this.deadLetters = this.deadLetters.filter((d) => !partitions.has(d.sourcePartition));
  }
}

/** Changelog entries of one store's partition, as of the end of a flush. */
export interface ChangelogCut {
  topic: string;
  partition: number;
  entries: ChangelogEntry[];
}

/**
 * Everything one flush commits, decided before any of it is written (as Kafka Streams' prepareCommit): the source
 * offsets it moves (fenced: each from what the committer holds), each sink's items, the dead letters, the state
 * stores' changelog as of its end, and where each partition's windows are closed. The Committer performs it.
 */
export interface FlushPlan {
  lane: number;
  offsets: OffsetMove[];
  items: ReadonlyMap<string, unknown[]>;
  deadLetters: DeadLetter[];
  changelog: ChangelogCut[];
  closedThrough: Map<number, number>;
  /** Records the flush covers, whatever became of them. */
  records: number;
}

/**
 * The flush of a lane's pending batch: its tasks' offsets from the ledger (a partition of each input), and the state
 * as of now (the next batch is processed while this one is written, so the changelog is cut here).
 */
export function prepareFlush(lane: number, lanes: number, pending: PendingBatch, ledger: PartitionLedger, stateful: readonly StatefulStage[],
  applicationId: string): FlushPlan {
  const offsets = ledger.prepare((p) => p % lanes === lane);
  const changelog: ChangelogCut[] = [];
  const closedThrough = new Map<number, number>();
  const tasks = [...new Set(offsets.map((m) => m.partition))];
  for (const s of stateful) {
    const topic = changelogTopic(applicationId, s.storeName);
    for (const p of tasks) {
      const entries = s.cut(p, ledger.preparedAt(p));
      if (entries.length) changelog.push({ topic, partition: p, entries });
      closedThrough.set(p, Math.min(closedThrough.get(p) ?? Infinity, s.closedThrough(p)));
    }
  }
  return { lane, offsets, items: pending.items, deadLetters: pending.deadLetters, changelog, closedThrough, records: pending.count };
}

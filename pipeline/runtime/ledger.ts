import type { OffsetMove } from '../postgres/offsets.ts';
import type { StorePosition } from '../state/store.ts';

/** Where one input partition of an owned task stands. Offsets are the source's; -1 for "nothing yet". */
export interface PartitionPosition {
  readonly topic: string;
  readonly partition: number;
  /** The next offset the committer holds (what a rewind goes back to): -1 when nothing was committed. */
  committed: number;
  /** The last offset taken into a pending batch, whatever became of the record. */
  taken: number;
  /** The last offset a prepared flush covers: offsets after it and up to `taken` go into the next flush. */
  prepared: number;
}

/**
 * Every task's position, and the only answer to "is this partition ours?". A task is a partition number: with
 * several inputs (co-partitioned topics, as Kafka Streams' tasks), task p reads partition p of each, and owns all of
 * them from its assignment (at the offsets the committer holds) to its revocation. Taking, preparing a flush,
 * committing and rewinding each move one of an input's three marks, always forward except on a rewind.
 */
export class PartitionLedger {
  private readonly positions = new Map<number, PartitionPosition[]>();

  /** The input topics, the first the one whose assignment makes the tasks. */
  constructor(readonly topics: readonly string[] = ['']) {}

  /** Owns the task from what the committer holds: one next offset per input, in the order of `topics`. */
  assign(partition: number, committedNext: number | readonly number[]): void {
    const next = typeof committedNext === 'number' ? [committedNext] : committedNext;
    this.positions.set(partition, this.topics.map((topic, i) => {
      const c = next[i] ?? -1;
      const last = c < 0 ? -1 : c - 1;
      return { topic, partition, committed: c, taken: last, prepared: last };
    }));
  }

  revoke(partition: number): void {
    this.positions.delete(partition);
  }

  owns(partition: number): boolean {
    return this.positions.has(partition);
  }

  /** An input partition's position when owned: the hot loop reads and moves `taken` on it directly. */
  position(partition: number, input = 0): PartitionPosition | undefined {
    return this.positions.get(partition)?.[input];
  }

  /** The owned tasks, in ascending order. */
  partitions(): number[] {
    return [...this.positions.keys()].sort((a, b) => a - b);
  }

  /** The first offset of an input not yet taken, for seeking back to it (undefined when not owned). */
  nextToTake(partition: number, input = 0): number | undefined {
    const p = this.position(partition, input);
    return p === undefined ? undefined : p.taken + 1;
  }

  /**
   * The offset moves of a flush of the tasks that `include` accepts: each input from what the committer holds to
   * just past the last offset taken. They are then prepared: the next flush starts after them.
   */
  prepare(include: (partition: number) => boolean): OffsetMove[] {
    const moves: OffsetMove[] = [];
    for (const [partition, inputs] of this.positions) {
      if (!include(partition)) continue;
      for (const p of inputs) {
        if (p.taken <= p.prepared) continue;
        moves.push({ topic: p.topic, partition, expected: p.committed, next: p.taken + 1 });
        p.prepared = p.taken;
      }
    }
    return moves;
  }

  /**
   * Where a task's state stands once its prepared flush is committed, the position its changelog entries carry: the
   * next offset of its one input, or of each input in order (state/store.ts).
   */
  preparedAt(partition: number): StorePosition {
    const inputs = this.positions.get(partition) ?? [];
    const next = inputs.map((p) => p.prepared + 1);
    return next.length === 1 ? next[0] : next;
  }

  /** Whether any task that `include` accepts has records taken and not yet in a prepared flush. */
  hasUnprepared(include: (partition: number) => boolean): boolean {
    for (const [partition, inputs] of this.positions) {
      if (include(partition) && inputs.some((p) => p.taken > p.prepared)) return true;
    }
    return false;
  }

  /** A flush committed: its input partitions still owned now start from where it ended. */
  committed(moves: readonly OffsetMove[]): void {
    for (const m of moves) {
      const p = this.positions.get(m.partition)?.find((i) => i.topic === m.topic);
      if (p) p.committed = m.next;
    }
  }

  /** Back to what the committer holds (after a failed flush): everything after it is taken again. */
  rewind(partition: number, committedNext: number | readonly number[]): void {
    if (this.positions.has(partition)) this.assign(partition, committedNext);
  }
}

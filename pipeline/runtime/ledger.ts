import type { OffsetMove } from '../postgres/offsets.ts';

/** Where one owned partition stands. Offsets are the source's; -1 for "nothing yet". */
export interface PartitionPosition {
  readonly partition: number;
  /** The next offset the committer holds (what a rewind goes back to): -1 when nothing was committed. */
  committed: number;
  /** The last offset taken into a pending batch, whatever became of the record. */
  taken: number;
  /** The last offset a prepared flush covers: offsets after it and up to `taken` go into the next flush. */
  prepared: number;
}

/**
 * Every partition's position, and the only answer to "is this partition ours?": a partition is owned from its
 * assignment (at the offset the committer holds) to its revocation. Taking, preparing a flush, committing and
 * rewinding each move one of its three marks, always forward except on a rewind.
 */
export class PartitionLedger {
  private readonly positions = new Map<number, PartitionPosition>();

  assign(partition: number, committedNext: number): void {
    const last = committedNext < 0 ? -1 : committedNext - 1;
    this.positions.set(partition, { partition, committed: committedNext, taken: last, prepared: last });
  }

  revoke(partition: number): void {
    this.positions.delete(partition);
  }

  owns(partition: number): boolean {
    return this.positions.has(partition);
  }

  /** The partition's position when owned: the hot loop reads and moves `taken` on it directly. */
  position(partition: number): PartitionPosition | undefined {
    return this.positions.get(partition);
  }

  /** The owned partitions, in ascending order. */
  partitions(): number[] {
    return [...this.positions.keys()].sort((a, b) => a - b);
  }

  /** The first offset not yet taken, for seeking back to it (undefined when not owned). */
  nextToTake(partition: number): number | undefined {
    const p = this.positions.get(partition);
    return p === undefined ? undefined : p.taken + 1;
  }

  /**
   * The offset moves of a flush of the partitions that `include` accepts: each from what the committer holds to just
   * past the last offset taken. They are then prepared: the next flush starts after them.
   */
  prepare(include: (partition: number) => boolean): OffsetMove[] {
    const moves: OffsetMove[] = [];
    for (const p of this.positions.values()) {
      if (p.taken <= p.prepared || !include(p.partition)) continue;
      moves.push({ partition: p.partition, expected: p.committed, next: p.taken + 1 });
      p.prepared = p.taken;
    }
    return moves;
  }

  /** Whether any partition that `include` accepts has records taken and not yet in a prepared flush. */
  hasUnprepared(include: (partition: number) => boolean): boolean {
    for (const p of this.positions.values()) if (p.taken > p.prepared && include(p.partition)) return true;
    return false;
  }

  /** A flush committed: its partitions still owned now start from where it ended. */
  committed(moves: readonly OffsetMove[]): void {
    for (const m of moves) {
      const p = this.positions.get(m.partition);
      if (p) p.committed = m.next;
    }
  }

  /** Back to what the committer holds (after a failed flush): everything after it is taken again. */
  rewind(partition: number, committedNext: number): void {
    if (this.positions.has(partition)) this.assign(partition, committedNext);
  }
}

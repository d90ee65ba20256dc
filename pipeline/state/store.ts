/**
 * A key-value state store for one partition of one stateful stage, in memory, backed by a compacted changelog
 * topic (`<application-id>-<store>-changelog`, partition = source partition).
 *
 * Consistency with Postgres, where the source offsets live: every changelog entry carries the source offset up to
 * which its batch runs (o), the value before the batch (p) and after it (c). The runtime writes a batch's entries
 * before the Postgres transaction that commits the batch, and the next batch's only after that commit, so at most
 * one batch in the changelog can be uncommitted. Restoring with the offset Postgres holds then takes c from
 * committed batches and p from the one that is not: the state is exactly that of the committed offset.
 */
export interface ChangelogEntry {
  key: string;
  /** null: a tombstone, written once the deletion is committed. */
  value: { o: StorePosition; p: unknown; c: unknown } | null;
}

/**
 * Where a task's state stands: the next source offset of its one input, or of each of its inputs in order (a task
 * of co-partitioned topics). An entry's batch is committed when every input's committed offset has reached it.
 */
export type StorePosition = number | readonly number[];

export function covered(at: StorePosition, committed: StorePosition): boolean {
  if (typeof at === 'number') return typeof committed === 'number' ? at <= committed : at <= Math.max(committed[0] ?? -1, 0);
  const c = typeof committed === 'number' ? [committed] : committed;
  return at.every((o, i) => o <= Math.max(c[i] ?? -1, 0));
}

export class StateStore<V> {
  private readonly data = new Map<string, V>();
  /** Value at the last cut of every key changed since then (undefined = absent). */
  private readonly before = new Map<string, V | undefined>();
  /** Keys deleted in the batch cut last: tombstoned with the next cut, once that batch is committed. */
  private deletedAtCut: string[] = [];

  constructor(readonly name: string, readonly partition: number) {}

  /** The value, not to be changed in place (see update and touch). */
  get(key: string): V | undefined {
    return this.data.get(key);
  }

  /**
   * Sets the key to fn(its value), which may change that value in place and return it: the value before the batch
   * is copied first. (Copied in put, after an aggregate had changed it in place, the value before held the batch's
   * first record for that key; a restore took it for an uncommitted batch and the replay counted it again.)
   */
  update(key: string, fn: (current: V | undefined) => V): V {
    this.touch(key);
    const next = fn(this.data.get(key));
    this.data.set(key, next);
    return next;
  }

  put(key: string, value: V): void {
    this.touch(key);
    this.data.set(key, value);
  }

  delete(key: string): void {
    this.touch(key);
    this.data.delete(key);
  }

  entries(): IterableIterator<[string, V]> {
    return this.data.entries();
  }

  get size(): number {
    return this.data.size;
  }

  /**
   * Keeps a copy of the key's value as it was at the last cut, once per cut: call it before changing a value from
   * get() or entries() in place (update, put and delete call it themselves).
   */
  touch(key: string): void {
    if (!this.before.has(key)) {
      const v = this.data.get(key);
      this.before.set(key, v === undefined ? undefined : (structuredClone(v) as V));
    }
  }

  /**
   * The changelog entries of everything changed since the last cut, tagged with the batch's next source offset.
   * Values are deep-copied through JSON so later changes cannot alter them.
   */
  cut(nextOffset: StorePosition): ChangelogEntry[] {
    const out: ChangelogEntry[] = this.deletedAtCut.filter((k) => !this.before.has(k)).map((key) => ({ key, value: null }));
    this.deletedAtCut = [];
    for (const [key, prev] of this.before) {
      const cur = this.data.get(key);
      out.push({ key, value: { o: nextOffset, p: copy(prev), c: copy(cur) } });
      if (cur === undefined) this.deletedAtCut.push(key);
    }
    this.before.clear();
    return out;
  }

  /**
   * Rebuilds the state as of committedOffset (the next offset stored in Postgres, of each input; -1 for none) from a
   * changelog, and marks each key whose latest entry was not committed, for the next cut to write again.
   */
  restore(entries: Iterable<ChangelogEntry>, committedOffset: StorePosition): void {
    this.data.clear();
    this.before.clear();
    this.deletedAtCut = [];
    const latest = new Map<string, ChangelogEntry['value']>();
    for (const e of entries) latest.set(e.key, e.value);
    for (const [key, v] of latest) {
      if (v === null) continue;
      const committed = covered(v.o, committedOffset);
      const value = committed ? v.c : v.p;
      if (value !== null && value !== undefined) this.data.set(key, value as V);
      // The entry's batch was never committed: the next cut writes the key again, as restored, so that this entry is
      // never the latest once later commits cover its position. (Processed again, the batch need not touch the same
      // keys: with two inputs read in another interleaving, an order that was held the first time can be closed on
      // arrival, and the uncommitted "held" entry, covered by the offsets of later commits, came back as a phantom.)
      if (!committed) this.before.set(key, value === null || value === undefined ? undefined : (structuredClone(value) as V));
    }
  }
}

function copy(v: unknown): unknown {
  return v === undefined ? null : JSON.parse(JSON.stringify(v));
}

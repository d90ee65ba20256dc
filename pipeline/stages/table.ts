import { keyText, type Stage, type StageContext, type StatefulStage, type StreamRecord } from '../records.ts';
import { StateStore, type ChangelogEntry, type StorePosition } from '../state/store.ts';

/** A stateful stage with a store per task partition, restored from its changelog. */
abstract class PerPartitionStore implements StatefulStage {
  readonly stateful = this;
  protected readonly stores = new Map<number, StateStore<unknown>>();

  constructor(readonly name: string, readonly storeName: string) {}

  store(partition: number): StateStore<unknown> {
    let s = this.stores.get(partition);
    if (!s) this.stores.set(partition, (s = new StateStore(this.storeName, partition)));
    return s;
  }

  cut(partition: number, at: StorePosition): ChangelogEntry[] {
    return this.stores.get(partition)?.cut(at) ?? [];
  }

  restore(partition: number, entries: ChangelogEntry[], committed: StorePosition): void {
    this.store(partition).restore(entries, committed);
  }

  drop(partition: number): void {
    this.stores.delete(partition);
  }

  /** Tables close no windows of a sink. */
  closedThrough(): number {
    return Infinity;
  }
}

export type TableJoinKind = 'stream-table' | 'stream-table-left' | 'table-table' | 'table-table-left';

/**
 * Joins on tables (Kafka Streams' KStream#join(KTable), KTable#join(KTable) and their left joins), on co-partitioned
 * inputs. Each table side is materialised in the task's store (a key's latest value; a null value deletes), with a
 * changelog. A stream record (left side of a stream-table join) is joined with the table's value for its key as it is
 * processed; table updates emit nothing there. In a table-table join each update of either side emits the join of the
 * key's new values, or a deletion (value null) when the key's result goes away.
 */
export class TableJoin<L, R, O> extends PerPartitionStore implements Stage<unknown, O> {
  constructor(name: string, storeName: string, private readonly kind: TableJoinKind, private readonly joiner: (left: L, right: R | null, key: unknown) => O) {
    super(name, storeName);
  }

  process(batch: StreamRecord[], ctx: StageContext): StreamRecord<O>[] {
    return this.processSide(0, batch, ctx);
  }

  processSide(side: 0 | 1, batch: StreamRecord[], _ctx: StageContext): StreamRecord<O>[] {
    const out: StreamRecord<O>[] = [];
    const left = this.kind.endsWith('-left');
    const streamTable = this.kind.startsWith('stream');
    for (const r of batch) {
      const store = this.store(r.partition);
      const k = keyText(r.key);
      if (streamTable && side === 0) {
        if (r.key === null || r.key === undefined || r.value === null) continue; // no key to join on (Kafka Streams drops these)
        const row = store.get(`1|${k}`) as R | undefined;
        if (row === undefined && !left) continue;
        out.push({ ...r, value: this.joiner(r.value as L, row ?? null, r.key) });
        continue;
      }
      if (r.key === null || r.key === undefined) continue;
      const before = streamTable ? undefined : this.result(store, k);
      if (r.value === null || r.value === undefined) store.delete(`${side}|${k}`);
      else store.put(`${side}|${k}`, r.value);
      if (streamTable) continue; // a table update of a stream-table join emits nothing
      const after = this.result(store, k);
      if (after !== undefined) out.push({ ...r, value: this.joiner(after[0], after[1], r.key) });
      else if (before !== undefined) out.push({ ...r, value: null as O }); // the key's result is gone: a deletion
    }
    return out;
  }

  /** A table-table join's values for a key, when it has a result. */
  private result(store: StateStore<unknown>, k: string): [L, R | null] | undefined {
    const l = store.get(`0|${k}`) as L | undefined;
    const r = store.get(`1|${k}`) as R | undefined;
    if (l === undefined) return undefined;
    if (r === undefined) return this.kind === 'table-table-left' ? [l, null] : undefined;
    return [l, r];
  }
}

/**
 * groupByKey().count() / reduce() / aggregate() without windows (Kafka Streams' KGroupedStream aggregations into a
 * KTable): the aggregate of each key in the task's store, and every update emitted downstream as the key's new value.
 * A record with a null value is skipped, as Kafka Streams skips them.
 */
export class TableAggregate<K, V, A> extends PerPartitionStore implements Stage<V, A> {
  constructor(name: string, storeName: string, private readonly init: () => A, private readonly add: (aggregate: A, value: V, key: K) => A) {
    super(name, storeName);
  }

  process(batch: StreamRecord<V>[]): StreamRecord<A>[] {
    const out: StreamRecord<A>[] = [];
    for (const r of batch) {
      if (r.value === null || r.value === undefined || r.key === null || r.key === undefined) continue;
      const agg = this.store(r.partition).update(keyText(r.key), (cur) => this.add((cur as A | undefined) ?? this.init(), r.value, r.key as K));
      // A copy: the next record of the key may change the aggregate in place while this result waits for its flush.
      out.push({ ...r, value: structuredClone(agg) } as StreamRecord<A>);
    }
    return out;
  }
}

import type { Stage, StageContext, StatefulStage, StreamRecord, Windowed } from '../records.ts';
import { StateStore, type ChangelogEntry, type StorePosition } from '../state/store.ts';
import { upstreamOf } from './stream-join.ts';
import { windowStarts, type SessionWindows, type TimeWindows } from '../windows/windows.ts';

export type EmitMode = 'final' | 'update';

export interface AggregateFns<K, V, A> {
  init: () => A;
  add: (aggregate: A, value: V, key: K) => A;
  /** Session windows only: combines two sessions' aggregates when a record bridges them (Kafka Streams' Merger). */
  merge?: (a: A, b: A, key: K) => A;
}

// Not JSON, so they can never equal a window key (those are JSON arrays).
const STREAM_TIME = '#stream-time';
const UPSTREAMS = '#upstreams';
/** Stream time of one upstream partition (records through a repartition topic); the first one's is STREAM_TIME. */
const streamTimeKey = (upstream: number) => (upstream === 0 ? STREAM_TIME : `${STREAM_TIME}-${upstream}`);

/**
 * Per-partition window state and stream time, shared by the time-window and session-window stages. Stream time is
 * the highest event time seen in the partition (the record timestamp, set by the timestamp extractor) and is kept
 * in the store, so it is restored with it. Records that came through a repartition topic keep a stream time per
 * upstream partition: one is late only behind its own, and windows close at the lowest of them, so a replay that
 * reads one upstream partition ahead of another drops nothing that a live run keeps.
 */
abstract class WindowStage<K, V, A> implements Stage<V, A>, StatefulStage {
  readonly stateful = this;
  protected readonly stores = new Map<number, StateStore<unknown>>();

  constructor(readonly name: string, readonly storeName: string, protected readonly graceMs: number,
    protected readonly fns: AggregateFns<K, V, A>, protected readonly emit: EmitMode) {}

  store(partition: number): StateStore<unknown> {
    let s = this.stores.get(partition);
    if (!s) {
      s = new StateStore(this.storeName, partition);
      this.stores.set(partition, s);
    }
    return s;
  }

  /** The partition's stream time: the lowest of its upstream partitions' (-Infinity until each has a record). */
  streamTime(partition: number): number {
    const store = this.stores.get(partition);
    const n = (store?.get(UPSTREAMS) as number | undefined) ?? 1;
    let low = Infinity;
    for (let u = 0; u < n; u++) low = Math.min(low, (store?.get(streamTimeKey(u)) as number | undefined) ?? -Infinity);
    return low;
  }

  closedThrough(partition: number): number {
    return this.streamTime(partition) - this.graceMs;
  }

  cut(partition: number, at: StorePosition) {
    return this.stores.get(partition)?.cut(at) ?? [];
  }

  restore(partition: number, entries: ChangelogEntry[], committedOffset: StorePosition): void {
    this.store(partition).restore(entries, committedOffset);
    this.restored(partition);
  }

  drop(partition: number): void {
    this.stores.delete(partition);
    this.restored(partition);
  }

  protected restored(_partition: number): void {}

  process(batch: StreamRecord<V>[], ctx: StageContext): StreamRecord<A>[] {
    const out: StreamRecord<A>[] = [];
    const touched = new Map<number, StreamRecord<V>>();
    for (const r of batch) {
      const store = this.store(r.partition);
      const ts = r.timestamp ?? 0;
      const [upstream, upstreams] = upstreamOf(r);
      if (upstreams !== 1 && store.get(UPSTREAMS) !== upstreams) store.put(UPSTREAMS, upstreams);
      const own = (store.get(streamTimeKey(upstream)) as number | undefined) ?? -Infinity;
      const streamTime = Math.max(own, ts);
      if (streamTime !== own) store.put(streamTimeKey(upstream), streamTime);
      this.add(r, ts, streamTime, store, ctx, out);
      touched.set(r.partition, r);
    }
    if (this.emit === 'final') for (const [p, last] of touched) this.emitClosed(p, last, out);
    return out;
  }

  protected abstract add(r: StreamRecord<V>, ts: number, streamTime: number, store: StateStore<unknown>, ctx: StageContext, out: StreamRecord<A>[]): void;
  protected abstract emitClosed(partition: number, last: StreamRecord<V>, out: StreamRecord<A>[]): void;

  protected result(from: StreamRecord<V>, key: Windowed<K>, value: A): StreamRecord<A> {
    return { ...from, key, value: value, timestamp: key.end } as StreamRecord<A>;
  }
}

/** Tumbling and hopping windows: count / reduce / aggregate per key and window. */
export class TimeWindowAggregate<K, V, A> extends WindowStage<K, V, A> {
  constructor(name: string, storeName: string, private readonly windows: TimeWindows, fns: AggregateFns<K, V, A>, emit: EmitMode) {
    super(name, storeName, windows.graceMs, fns, emit);
  }

  protected add(r: StreamRecord<V>, ts: number, streamTime: number, store: StateStore<unknown>, ctx: StageContext, out: StreamRecord<A>[]): void {
    const w = this.windows;
    let accepted = false;
    for (const start of windowStarts(ts, w)) {
      const end = start + w.sizeMs;
      if (end + w.graceMs <= streamTime) continue; // this window has closed
      accepted = true;
      const storeKey = JSON.stringify([r.key, start]);
      // add may change the aggregate in place: update copies the value before the batch first.
      const agg = store.update(storeKey, (cur) => this.fns.add((cur as A | undefined) ?? this.fns.init(), r.value, r.key as K)) as A;
      if (this.emit === 'update') out.push(this.result(r, { key: r.key as K, start, end }, agg));
    }
    if (!accepted) ctx.late(r, this.name);
  }

  protected emitClosed(partition: number, last: StreamRecord<V>, out: StreamRecord<A>[]): void {
    const store = this.store(partition);
    const closed = this.closedThrough(partition);
    const done: { key: Windowed<K>; agg: A; storeKey: string }[] = [];
    for (const [storeKey, agg] of store.entries()) {
      if (storeKey.startsWith('#')) continue;
      const [key, start] = JSON.parse(storeKey) as [K, number];
      if (start + this.windows.sizeMs <= closed) done.push({ key: { key, start, end: start + this.windows.sizeMs }, agg: agg as A, storeKey });
    }
    done.sort((a, b) => a.key.start - b.key.start);
    for (const d of done) {
      out.push(this.result(last, d.key, d.agg));
      store.delete(d.storeKey);
    }
  }
}

interface Session<A> {
  start: number;
  end: number;
  agg: A;
}

/**
 * Session windows: a record within gap of a session of its key joins it; one that bridges two sessions merges them.
 * A session is final when stream time passes its end + gap + grace, since until then a record could still extend it.
 */
export class SessionWindowAggregate<K, V, A> extends WindowStage<K, V, A> {
  constructor(name: string, storeName: string, private readonly windows: SessionWindows, fns: AggregateFns<K, V, A>, emit: EmitMode) {
    super(name, storeName, windows.graceMs, fns, emit);
    if (!fns.merge) throw new TypeError('session windows need a merge function for the aggregate');
  }

  override closedThrough(partition: number): number {
    return this.streamTime(partition) - this.windows.graceMs - this.windows.gapMs;
  }

  protected add(r: StreamRecord<V>, ts: number, streamTime: number, store: StateStore<unknown>, ctx: StageContext, out: StreamRecord<A>[]): void {
    const gap = this.windows.gapMs;
    const prefix = JSON.stringify([r.key]).slice(0, -1);
    const overlapping: [string, Session<A>][] = [];
    for (const [storeKey, s] of store.entries()) {
      if (storeKey.startsWith(prefix + ',')) {
        const session = s as Session<A>;
        if (session.start - gap <= ts && ts <= session.end + gap) overlapping.push([storeKey, session]);
      }
    }
    let start = ts;
    let end = ts;
    for (const [, s] of overlapping) {
      start = Math.min(start, s.start);
      end = Math.max(end, s.end);
    }
    if (end + gap + this.windows.graceMs <= streamTime) {
      ctx.late(r, this.name);
      return;
    }
    // merge and add may change an aggregate in place: only now, for a record that is not late, and after the values
    // before the batch are copied (a late record merged first had changed a stored session for good).
    let agg: A | undefined;
    for (const [storeKey, s] of overlapping) {
      store.touch(storeKey);
      agg = agg === undefined ? s.agg : this.fns.merge!(agg, s.agg, r.key as K);
    }
    for (const [storeKey] of overlapping) store.delete(storeKey);
    const merged: Session<A> = { start, end, agg: this.fns.add(agg ?? this.fns.init(), r.value, r.key as K) };
    store.put(JSON.stringify([r.key, start]), merged);
    if (this.emit === 'update') out.push(this.result(r, { key: r.key as K, start, end }, merged.agg));
  }

  protected emitClosed(partition: number, last: StreamRecord<V>, out: StreamRecord<A>[]): void {
    const store = this.store(partition);
    const closed = this.closedThrough(partition);
    const done: [string, K, Session<A>][] = [];
    for (const [storeKey, s] of store.entries()) {
      if (storeKey.startsWith('#')) continue;
      const session = s as Session<A>;
      if (session.end <= closed) done.push([storeKey, (JSON.parse(storeKey) as [K, number])[0], session]);
    }
    done.sort((a, b) => a[2].start - b[2].start);
    for (const [storeKey, key, s] of done) {
      out.push(this.result(last, { key, start: s.start, end: s.end }, s.agg));
      store.delete(storeKey);
    }
  }
}

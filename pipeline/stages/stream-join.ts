import { UPSTREAM_COUNT_HEADER, UPSTREAM_HEADER } from '../dsl/plan.ts';
import { keyText, type Stage, type StageContext, type StatefulStage, type StreamRecord } from '../records.ts';
import { StateStore, type ChangelogEntry, type StorePosition } from '../state/store.ts';
import type { JoinWindows } from '../windows/windows.ts';

export type JoinKind = 'inner' | 'left';

/** Left is 0 (the stream join was called on), right is 1. */
export type Side = 0 | 1;

/** A record held in the join's store until no record of the other side can join it any more. */
interface Held {
  key: unknown;
  t: number;
  v: unknown;
  /** Left records: joined at least once (a left join then emits no unjoined result for it). */
  m?: boolean;
}

const SIDES = ['left', 'right'];
const timeKey = (side: Side, upstream: number) => `#time-${SIDES[side]}-${upstream}`;
const countKey = (side: Side) => `#upstreams-${SIDES[side]}`;

/**
 * The upstream partition a record came from, and how many there are: from its headers when it came through a
 * repartition topic (sinks/topic-sink.ts), else its own partition, one of one.
 */
export function upstreamOf(r: StreamRecord): [number, number] {
  let u: number | undefined;
  let n: number | undefined;
  for (const h of r.headers ?? []) {
    if (h[UPSTREAM_HEADER] !== undefined) u = Number(h[UPSTREAM_HEADER].toString());
    if (h[UPSTREAM_COUNT_HEADER] !== undefined) n = Number(h[UPSTREAM_COUNT_HEADER].toString());
  }
  return u !== undefined && n !== undefined && Number.isInteger(u) && n > 0 ? [u, n] : [0, 1];
}

/** One task's join state: the store, and indexes into it (by key, by time) rebuilt whenever it is restored. */
class PartitionJoin {
  readonly byKey: [Map<string, Set<string>>, Map<string, Set<string>>] = [new Map(), new Map()];
  /** Held records of each side by time, oldest first, for closing them. */
  readonly byTime: [{ t: number; k: string }[], { t: number; k: string }[]] = [[], []];

  constructor(readonly store: StateStore<unknown>) {
    for (const [k, v] of store.entries()) {
      if (k.startsWith('#')) continue;
      this.index(Number(k[0]) as Side, k, v as Held);
    }
  }

  /** A side's stream time in one of its upstream partitions. */
  time(side: Side, upstream: number): number {
    return (this.store.get(timeKey(side, upstream)) as number | undefined) ?? -Infinity;
  }

  /** How far a side has advanced: the lowest stream time of its upstream partitions (-Infinity until each has a record). */
  low(side: Side): number {
    const n = (this.store.get(countKey(side)) as number | undefined) ?? 1;
    let low = Infinity;
    for (let u = 0; u < n; u++) low = Math.min(low, this.time(side, u));
    return low;
  }

  hold(side: Side, storeKey: string, h: Held): void {
    this.store.put(storeKey, h);
    this.index(side, storeKey, h);
  }

  release(side: Side, storeKey: string): void {
    const h = this.store.get(storeKey) as Held | undefined;
    if (!h) return;
    this.store.delete(storeKey);
    const keys = this.byKey[side].get(keyText(h.key));
    keys?.delete(storeKey);
    if (keys?.size === 0) this.byKey[side].delete(keyText(h.key));
  }

  private index(side: Side, storeKey: string, h: Held): void {
    const k = keyText(h.key);
    let set = this.byKey[side].get(k);
    if (!set) this.byKey[side].set(k, (set = new Set()));
    set.add(storeKey);
    const q = this.byTime[side];
    let at = q.length;
    while (at > 0 && q[at - 1].t > h.t) at--; // records come mostly in time order: a short walk back
    q.splice(at, 0, { t: h.t, k: storeKey });
  }
}

/**
 * A stream-stream join within a time window (Kafka Streams' KStream#join / #leftJoin with JoinWindows), on event
 * time. Each side's records are held in the task's store (with a changelog) until no record of the other side can
 * join them any more; a left join then emits a left record that never joined with a null right value.
 *
 * Stream time is kept per side of each task, and per upstream partition of a side that came through a repartition
 * topic: a record is late only when it is more than grace behind the highest time of its own input partition (its
 * upstream one), and a side's records are closed by the other side's time, the lowest of its upstream partitions.
 * So the results do not depend on how reads of the topics interleave: a replay of a backlog (one topic, or one
 * upstream partition, read far ahead of another) joins and closes exactly as a live run does. Kafka Streams keeps one
 * stream time per task, the highest of all, and so drops as late, on a replay, records that were on time. The price:
 * an upstream partition that sends a side nothing holds that side's closing back.
 */
export class StreamJoin<L, R, O> implements Stage<unknown, O>, StatefulStage {
  readonly stateful = this;
  private readonly parts = new Map<number, PartitionJoin>();

  constructor(readonly name: string, readonly storeName: string, private readonly kind: JoinKind, private readonly windows: JoinWindows,
    private readonly joiner: (left: L, right: R | null, key: unknown) => O) {}

  process(batch: StreamRecord[], ctx: StageContext): StreamRecord<O>[] {
    return this.processSide(0, batch, ctx);
  }

  /** Records of one side (0: left, 1: right), in their order; returns the joined results. */
  processSide(side: Side, batch: StreamRecord[], ctx: StageContext): StreamRecord<O>[] {
    const { beforeMs: before, afterMs: after, graceMs: grace } = this.windows;
    const out: StreamRecord<O>[] = [];
    for (const r of batch) {
      const part = this.part(r.partition);
      const t = r.timestamp ?? 0;
      const [upstream, upstreams] = upstreamOf(r);
      const own = part.time(side, upstream);
      if (t < own - grace) {
        ctx.late(r, this.name);
        continue;
      }
      if (part.store.get(countKey(side)) !== upstreams) part.store.put(countKey(side), upstreams);
      const other = part.low(side === 0 ? 1 : 0);
      const key = keyText(r.key);
      let joined = false;
      // The other side's records in the window: for a left record at t, right ones from t - before to t + after.
      const [lo, hi] = side === 0 ? [t - before, t + after] : [t - after, t + before];
      for (const storeKey of part.byKey[side === 0 ? 1 : 0].get(key) ?? []) {
        const h = part.store.get(storeKey) as Held;
        if (h.t < lo || h.t > hi) continue;
        joined = true;
        if (side === 0) out.push(this.result(r, r.key, r.value as L, h.v as R, Math.max(t, h.t)));
        else {
          out.push(this.result(r, h.key, h.v as L, r.value as R, Math.max(t, h.t)));
          if (!h.m) part.store.update(storeKey, (cur) => ({ ...(cur as Held), m: true }));
        }
      }
      const held: Held = { key: r.key, t, v: r.value };
      if (side === 0) {
        // No right record still to come (on time) can join it: right ones on time are at other - grace or later.
        if (other - grace > t + after) {
          if (!joined && this.kind === 'left') out.push(this.result(r, r.key, r.value as L, null, t));
        } else part.hold(0, `0${r.offset}`, joined ? { ...held, m: true } : held);
      } else if (!(other - grace > t + before)) part.hold(1, `1${r.offset}`, held);
      if (t > own) {
        part.store.put(timeKey(side, upstream), t);
        this.close(part, side === 0 ? 1 : 0, r, out);
      }
    }
    return out;
  }

  /** Releases the records of `side` that the other side's time has closed; a left join emits the unjoined ones. */
  private close(part: PartitionJoin, side: Side, trigger: StreamRecord, out: StreamRecord<O>[]): void {
    const { afterMs: after, beforeMs: before, graceMs: grace } = this.windows;
    const limit = part.low(side === 0 ? 1 : 0) - grace - (side === 0 ? after : before);
    const q = part.byTime[side];
    let n = 0;
    while (n < q.length && q[n].t < limit) {
      const h = part.store.get(q[n].k) as Held | undefined;
      if (h && side === 0 && !h.m && this.kind === 'left') out.push(this.result(trigger, h.key, h.v as L, null, h.t));
      part.release(side, q[n].k);
      n++;
    }
    if (n) q.splice(0, n);
  }

  private result(from: StreamRecord, key: unknown, left: L, right: R | null, timestamp: number): StreamRecord<O> {
    return { ...from, key, value: this.joiner(left, right, key), timestamp };
  }

  private part(partition: number): PartitionJoin {
    let p = this.parts.get(partition);
    if (!p) this.parts.set(partition, (p = new PartitionJoin(new StateStore(this.storeName, partition))));
    return p;
  }

  /** What the store holds for a partition (the test driver looks into it). */
  store(partition: number): StateStore<unknown> {
    return this.part(partition).store;
  }

  cut(partition: number, at: StorePosition): ChangelogEntry[] {
    return this.parts.get(partition)?.store.cut(at) ?? [];
  }

  restore(partition: number, entries: ChangelogEntry[], committed: StorePosition): void {
    const store = new StateStore<unknown>(this.storeName, partition);
    store.restore(entries, committed);
    this.parts.set(partition, new PartitionJoin(store));
  }

  drop(partition: number): void {
    this.parts.delete(partition);
  }

  /** A join closes no windows of a sink. */
  closedThrough(): number {
    return Infinity;
  }
}

import type { FunctionStage } from '../errors.ts';
import { keyText, type Stage, type StreamRecord } from '../records.ts';

/**
 * The stateless operators of the DSL (KStreamFilter, KStreamMap, ... in Kafka Streams), each a small stage.
 * They change records in place and return the ones that go on; a throw from user code rejects that record to the
 * dead-letter topic with reason "<stage>-failed" instead of failing the batch.
 */
function each<I, O>(name: FunctionStage, fn: (r: StreamRecord<I>, out: StreamRecord<O>[]) => void): Stage<I, O> {
  return {
    name,
    process(batch, ctx) {
      const out: StreamRecord<O>[] = [];
      for (const r of batch) {
        try {
          fn(r, out);
        } catch (err) {
          ctx.deadLetter(r, `${name}-failed`, err instanceof Error ? err.message : String(err));
        }
      }
      return out;
    },
  };
}

export const filterStage = <K, V>(pred: (value: V, key: K) => boolean): Stage<V, V> =>
  each<V, V>('filter', (r, out) => {
    if (pred(r.value, r.key as K)) out.push(r);
  });

export const mapValuesStage = <K, V, O>(fn: (value: V, key: K) => O): Stage<V, O> =>
  each<V, O>('mapValues', (r, out) => {
    (r as unknown as StreamRecord<O>).value = fn(r.value, r.key as K);
    out.push(r as unknown as StreamRecord<O>);
  });

export const mapStage = <K, V, K2, O>(fn: (key: K, value: V) => { key: K2; value: O }): Stage<V, O> =>
  each<V, O>('map', (r, out) => {
    const kv = fn(r.key as K, r.value);
    out.push({ ...r, key: kv.key, value: kv.value } as StreamRecord<O>);
  });

export const selectKeyStage = <K, V, K2>(fn: (value: V, key: K) => K2): Stage<V, V> =>
  each<V, V>('selectKey', (r, out) => {
    r.key = fn(r.value, r.key as K);
    out.push(r);
  });

export const flatMapStage = <K, V, K2, O>(fn: (key: K, value: V) => Iterable<{ key: K2; value: O }>): Stage<V, O> =>
  each<V, O>('flatMap', (r, out) => {
    for (const kv of fn(r.key as K, r.value)) out.push({ ...r, key: kv.key, value: kv.value } as StreamRecord<O>);
  });

export const peekStage = <K, V>(fn: (value: V, key: K) => void): Stage<V, V> =>
  each<V, V>('peek', (r, out) => {
    fn(r.value, r.key as K);
    out.push(r);
  });

/** Event time from the value (for orders: ordered_at); the Kafka record timestamp is the default. */
export const timestampStage = <V>(extract: (value: V, record: StreamRecord<V>) => number): Stage<V, V> =>
  each<V, V>('timestamp', (r, out) => {
    const ts = extract(r.value, r);
    if (!Number.isFinite(ts)) throw new Error('the timestamp extractor gave no valid time');
    r.timestamp = ts;
    out.push(r);
  });

/**
 * A stream record joined with the current value of a global table (Kafka Streams' KStream#join(GlobalKTable)): the
 * table key comes from the record, and joiner makes the result; with a left join a record whose key the table lacks
 * is joined with null, with an inner join it is dropped.
 */
export const globalJoinStage = <K, V, T, O>(table: { get(key: string): T | undefined }, left: boolean,
  keyOf: (key: K, value: V) => unknown, joiner: (value: V, row: T | null, key: K) => O): Stage<V, O> =>
  each<V, O>('join', (r, out) => {
    const k = keyOf(r.key as K, r.value);
    const row = k === null || k === undefined ? undefined : table.get(keyText(k));
    if (row === undefined && !left) return;
    (r as unknown as StreamRecord<O>).value = joiner(r.value, row ?? null, r.key as K);
    out.push(r as unknown as StreamRecord<O>);
  });

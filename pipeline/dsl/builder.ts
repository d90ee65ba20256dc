import type { CopyValue } from '../codec/copy-text.ts';
import { keyText, type Stage, type StreamRecord, type Windowed } from '../records.ts';
import { parseJson, type Tombstones } from '../stages/parse-json.ts';
import { filterStage, flatMapStage, globalJoinStage, mapStage, mapValuesStage, peekStage, selectKeyStage, timestampStage } from '../stages/stateless.ts';
import type { GlobalTableSpec } from '../state/global-table.ts';
import { validate } from '../stages/validate.ts';
import { validateWithRegistry } from '../stages/validate-registry.ts';
import type { SchemaRegistryClient } from '../schema/registry.ts';
import type { TableShape } from '../postgres/table-shape.ts';
import { SessionWindowAggregate, TimeWindowAggregate, type AggregateFns, type EmitMode } from '../stages/window-aggregate.ts';
import type { Validator } from '../schema/validator.ts';
import { StreamJoin, type JoinKind } from '../stages/stream-join.ts';
import { TableAggregate, TableJoin, type TableJoinKind } from '../stages/table.ts';
import { describeJoinWindows, describeWindows, type JoinWindows, type Windows } from '../windows/windows.ts';
import { byName, keyPosition, repartitionTopic, type Combine, type PlanNode, type SinkSpec, type StageBuild, type TopologyPlan } from './plan.ts';

/**
 * The DSL, in the spirit of Kafka Streams' StreamsBuilder / KStream: a typed chain of operators that records a plan.
 * Nothing runs here; the runtime (or the test driver) runs the plan.
 *
 *   const b = new StreamsBuilder('orders-revenue');
 *   b.stream('orders', { schema: validateOrder(), timestamp: (o) => Date.parse(o.ordered_at) })
 *     .groupBy((o) => o.product)
 *     .windowedBy(TimeWindows.tumbling(60_000, 10_000))
 *     .aggregate(...)
 *     .toPostgres(...);
 */
export class StreamsBuilder {
  private readonly sources: PlanNode[] = [];
  private readonly globals: GlobalTableSpec[] = [];
  private ids = 0;

  constructor(readonly applicationId: string) {}

  /** @internal */
  node(kind: PlanNode['kind'], label: string, extra: Partial<PlanNode> = {}): PlanNode {
    return { id: `n${this.ids++}`, kind, label, children: [], ...extra };
  }

  /**
   * The records of a topic. With a schema, values are parsed as JSON and validated (invalid ones become dead
   * letters); with a timestamp extractor, event time comes from the value instead of the Kafka record timestamp.
   * A topology may read several topics: they must be co-partitioned (see TopologyPlan.inputs).
   */
  stream<V = Buffer | null>(topic: string, options: {
    schema?: Validator<V>; schemaName?: string; timestamp?: (value: V) => number;
    /** With a registry, each message is validated against the schema its id names (see validate-registry.ts). */
    registry?: SchemaRegistryClient;
    /** With a schema: 'pass' lets tombstones through with value null (for a sink that deletes on them). */
    tombstones?: Tombstones;
  } = {}): KStream<string | null, V> {
    if (this.sources.some((s) => s.sourceTopic === topic)) throw new Error(`topic ${topic} is read twice: read it once and use the stream twice`);
    const source = this.node('source', `topic ${topic}`, { sourceTopic: topic });
    this.sources.push(source);
    let tail = source;
    const add = (label: string, stage: () => Stage, extra: Partial<PlanNode> = {}) => {
      const n = this.node('stage', label, { stage, ...extra });
      tail.children.push(n);
      tail = n;
    };
    if (options.schema) {
      const schema = options.schema;
      const tombstones = options.tombstones;
      const passing = tombstones === 'pass' ? ', tombstones pass' : '';
      add(`parse-json${passing}`, () => parseJson({ tombstones }), { op: 'parse-json' });
      const registry = options.registry;
      if (registry) {
        if (tombstones === 'pass') throw new Error('tombstones: pass is for a local schema');
        add(`validate (schema registry ${registry.url}, subject ${topic}-value)`, () => validateWithRegistry(schema, registry, topic), { op: 'validate' });
      } else add(`validate (${options.schemaName ?? 'JSON Schema'}${passing})`, () => validate(schema, { tombstones }), { op: 'validate', schema: schema.schema });
    }
    if (options.timestamp) {
      const extract = options.timestamp;
      add('timestamp extractor (event time)', () => timestampStage<V>(extract));
    }
    return new KStream<string | null, V>(this, tail);
  }

  /**
   * The latest value of each key of a topic, in every instance (Kafka Streams' GlobalKTable): for enriching a stream
   * with a small table keyed otherwise than the stream (KStream.join(globalTable, keyOf, joiner)). The table is read
   * whole before any record is processed, then kept up to date as the topic changes. Values are JSON, checked
   * against the schema when one is given; tombstones delete.
   */
  globalTable<V>(topic: string, options: { schema?: Validator<V> } = {}): GlobalKTable<V> {
    if (this.globals.some((g) => g.topic === topic)) throw new Error(`topic ${topic} is a global table twice`);
    const spec: GlobalTableSpec<V> = { topic, schema: options.schema };
    this.globals.push(spec as GlobalTableSpec);
    return new GlobalKTable<V>(topic);
  }

  /**
   * A topic as a table (Kafka Streams' KTable): each record is its key's new value, a tombstone deletes it. It is
   * materialised, in a store with a changelog, by what uses it (a join); toStream() gives its changes. The topic must
   * be co-partitioned with the topology's other inputs, keyed by the table's key. A task reads its partition of the
   * table up to where it ended at the task's assignment before it takes stream records (runtime/table-catch-up.ts).
   */
  table<V = Buffer | null>(topic: string, options: { schema?: Validator<V>; schemaName?: string; timestamp?: (value: V) => number } = {}): KTable<string | null, V> {
    const s = this.stream<V>(topic, { ...options, tombstones: options.schema ? 'pass' : undefined });
    this.sources[this.sources.length - 1].table = true;
    return new KTable<string | null, V>(this, s.tail);
  }

  /**
   * @internal Writes a stream through `<application-id>-<name>-repartition`, partitioned by its (new) key, and reads
   * it back as a stream of its own: what makes a changed key co-partitioned with another input (Kafka Streams'
   * repartition()). Values go as JSON, tombstones stay tombstones, and event time is the Kafka timestamp.
   */
  repartitionThrough(tail: PlanNode, name: string): PlanNode {
    const topic = repartitionTopic(this.applicationId, name);
    if (this.sources.some((s) => s.sourceTopic === topic)) throw new Error(`a repartition named ${name} exists already`);
    const serialize = (value: unknown, key: unknown) => ({
      key: key === null || key === undefined ? null : keyText(key),
      value: value === null || value === undefined ? null : Buffer.from(JSON.stringify(value)),
    });
    tail.children.push(this.node('sink', `topic ${topic} (repartition by the new key)`, { sink: { kind: 'topic', name: `to-${topic}`, topic, serialize, repartition: true } }));
    const source = this.node('source', `topic ${topic} (repartition)`, { sourceTopic: topic });
    this.sources.push(source);
    const parse = this.node('stage', 'parse-json, tombstones pass', { stage: () => parseJson({ tombstones: 'pass' }), op: 'parse-json' });
    source.children.push(parse);
    return parse;
  }

  build(): TopologyPlan {
    if (!this.sources.length) throw new Error('the topology has no source: call stream(topic) first');
    const clash = this.globals.find((g) => this.sources.some((s) => s.sourceTopic === g.topic));
    if (clash) throw new Error(`topic ${clash.topic} is both a stream and a global table`);
    const plan = (sources: PlanNode[]): TopologyPlan => {
      const inputs = sources.map((s) => s.sourceTopic!);
      return { applicationId: this.applicationId, topic: inputs[0], root: sources[0], inputs, sources, globalTables: [...this.globals] };
    };
    const parts = subtopologies(this.sources);
    return parts.length > 1 ? { ...plan([...this.sources]), subtopologies: parts.map(plan) } : plan([...this.sources]);
  }
}

export class KStream<K, V> {
  /** rekeyed: a stage may have changed the key (selectKey, map, flatMap), so records may be in the wrong partition for a join. */
  constructor(private readonly b: StreamsBuilder, /** @internal */ readonly tail: PlanNode, /** @internal */ readonly rekeyed = false) {}

  /** The stream's records as a table's changes: each its key's new value (null deletes), Kafka Streams' toTable(). */
  toTable(): KTable<K, V> {
    return new KTable<K, V>(this.b, this.tail, this.rekeyed);
  }

  private then<K2, V2>(label: string, stage: (build: StageBuild) => Stage, rekeys = false): KStream<K2, V2> {
    const n = this.b.node('stage', label, { stage });
    this.tail.children.push(n);
    return new KStream<K2, V2>(this.b, n, this.rekeyed || rekeys);
  }

  /**
   * Through a repartition topic, `<application-id>-<name>-repartition`, partitioned by the key the records have now:
   * after selectKey or map, so that a join or a table aggregation finds each key in one task. A join or groupBy of
   * a changed key does this by itself.
   */
  repartition(options: { name: string }): KStream<K, V> {
    return new KStream<K, V>(this.b, this.b.repartitionThrough(this.tail, options.name));
  }

  /** @internal This stream, repartitioned when a stage may have changed its key (for a join or a table aggregation). */
  copartitioned(name: string): KStream<K, V> {
    return this.rekeyed ? this.repartition({ name }) : this;
  }

  /** The records of both streams as one (Kafka Streams' merge), each stream's in its order. */
  merge(other: KStream<K, V>, label = 'merge'): KStream<K, V> {
    const n = this.b.node('stage', label, { parents: [this.tail.id, other.tail.id], stage: () => ({ name: label, process: (batch: StreamRecord[]) => batch }) });
    this.tail.children.push(n);
    other.tail.children.push(n);
    return new KStream<K, V>(this.b, n, this.rekeyed || other.rekeyed);
  }

  /**
   * Joins each record with the other stream's records of the same key whose event times are within the window
   * (Kafka Streams' KStream#join with JoinWindows): one result per pair. Both streams must come straight from
   * co-partitioned topics, keyed as they were produced.
   */
  join<R, O>(other: KStream<K, R>, joiner: (left: V, right: R, key: K) => O, windows: JoinWindows, options: { store: string }): KStream<K, O>;
  /** Each record with the global table's current value under keyOf(record); a record whose key it lacks is dropped. */
  join<T, O>(table: GlobalKTable<T>, keyOf: (key: K, value: V) => unknown, joiner: (value: V, row: T, key: K) => O): KStream<K, O>;
  /** Each record with the table's value for its key as the record is processed; a record whose key has none is dropped. */
  join<T, O>(table: KTable<K, T>, joiner: (value: V, row: T, key: K) => O, options: { store: string }): KStream<K, O>;
  join(other: KStream<K, any> | GlobalKTable<any> | KTable<K, any>, a: any, b: any, c?: any): KStream<K, any> {
    if (other instanceof GlobalKTable) return this.globalJoined(false, other, a, b);
    if (other instanceof KTable) return this.tableJoined(false, other, a, b);
    return this.joined('inner', other, a, b, c);
  }

  /** As join, and a record that joined nothing by the time its window closed gives one result with right = null. */
  leftJoin<R, O>(other: KStream<K, R>, joiner: (left: V, right: R | null, key: K) => O, windows: JoinWindows, options: { store: string }): KStream<K, O>;
  /** Each record with the global table's current value under keyOf(record), or null when it has none. */
  leftJoin<T, O>(table: GlobalKTable<T>, keyOf: (key: K, value: V) => unknown, joiner: (value: V, row: T | null, key: K) => O): KStream<K, O>;
  /** Each record with the table's value for its key as the record is processed, or null when it has none. */
  leftJoin<T, O>(table: KTable<K, T>, joiner: (value: V, row: T | null, key: K) => O, options: { store: string }): KStream<K, O>;
  leftJoin(other: KStream<K, any> | GlobalKTable<any> | KTable<K, any>, a: any, b: any, c?: any): KStream<K, any> {
    if (other instanceof GlobalKTable) return this.globalJoined(true, other, a, b);
    if (other instanceof KTable) return this.tableJoined(true, other, a, b);
    return this.joined('left', other, a, b, c);
  }

  private tableJoined(left: boolean, table: KTable<K, unknown>, joiner: (v: V, row: unknown, key: K) => unknown, options: { store: string }): KStream<K, unknown> {
    const n = twoSided(this.b, this.copartitioned(`${options.store}-left`), table.copartitioned(`${options.store}-right`), left ? 'stream-table-left' : 'stream-table', joiner as never, options.store);
    return new KStream<K, unknown>(this.b, n);
  }

  private globalJoined(left: boolean, table: GlobalKTable<unknown>, keyOf: (key: K, value: V) => unknown, joiner: (v: V, row: unknown, key: K) => unknown): KStream<K, unknown> {
    const n = this.b.node('stage', `${left ? 'left join' : 'join'} global table ${table.topic} (its value as the record is processed)`, {
      globalTable: table.topic, stage: (build) => globalJoinStage(build.globalTable(table.topic), left, keyOf, joiner),
    });
    this.tail.children.push(n);
    return new KStream<K, unknown>(this.b, n, this.rekeyed);
  }

  private joined<R, O>(kind: JoinKind, other: KStream<K, R>, joiner: (l: V, r: R | null, k: K) => O, windows: JoinWindows, options: { store: string }): KStream<K, O> {
    const left = this.copartitioned(`${options.store}-left`);
    const right = other.copartitioned(`${options.store}-right`);
    const label = `${kind === 'left' ? 'left join' : 'join'} ${describeJoinWindows(windows)} (event time, stream time per side)`;
    const n = this.b.node('stage', label, {
      parents: [left.tail.id, right.tail.id], store: options.store,
      stage: () => new StreamJoin<V, R, O>(`${kind}-join`, options.store, kind, windows, joiner as (l: V, r: R | null, k: unknown) => O) as unknown as Stage,
    });
    left.tail.children.push(n);
    right.tail.children.push(n);
    return new KStream<K, O>(this.b, n);
  }

  filter(pred: (value: V, key: K) => boolean, label = 'filter'): KStream<K, V> {
    return this.then(label, () => filterStage(pred));
  }

  mapValues<O>(fn: (value: V, key: K) => O, label = 'mapValues'): KStream<K, O> {
    return this.then(label, () => mapValuesStage(fn));
  }

  map<K2, O>(fn: (key: K, value: V) => { key: K2; value: O }, label = 'map'): KStream<K2, O> {
    return this.then(label, () => mapStage(fn), true);
  }

  flatMap<K2, O>(fn: (key: K, value: V) => Iterable<{ key: K2; value: O }>, label = 'flatMap'): KStream<K2, O> {
    return this.then(label, () => flatMapStage(fn), true);
  }

  selectKey<K2>(fn: (value: V, key: K) => K2, label = 'selectKey'): KStream<K2, V> {
    return this.then(label, () => selectKeyStage(fn), true);
  }

  /** A stage of your own (Kafka Streams' process()): it may change, drop or dead-letter records (see Stage). */
  process<K2, O>(label: string, stage: () => Stage<V, O>): KStream<K2, O> {
    return this.then(label, stage as () => Stage);
  }

  peek(fn: (value: V, key: K) => void, label = 'peek'): KStream<K, V> {
    return this.then(label, () => peekStage(fn));
  }

  /** One stream per predicate: a record goes to the first whose predicate holds, or nowhere. */
  branch(...predicates: ((value: V, key: K) => boolean)[]): KStream<K, V>[] {
    const n = this.b.node('branch', `branch (${predicates.length} ways)`, { predicates: predicates as ((v: unknown, k: unknown) => boolean)[] });
    this.tail.children.push(n);
    return predicates.map((_, i) => {
      const arm = this.b.node('stage', `branch ${i}`, { stage: () => ({ name: `branch-${i}`, process: (batch: StreamRecord[]) => batch }) });
      n.children.push(arm);
      return new KStream<K, V>(this.b, arm, this.rekeyed);
    });
  }

  groupByKey(): KGroupedStream<K, V> {
    return new KGroupedStream<K, V>(this.b, this.tail, this.rekeyed);
  }

  /**
   * Groups by a new key. Unlike Kafka Streams there is no repartition topic: each partition aggregates its own
   * records, and a Postgres window sink merges the partitions' results (see PostgresWindowSinkSpec).
   */
  groupBy<K2>(fn: (value: V, key: K) => K2, label = 'groupBy'): KGroupedStream<K2, V> {
    return new KGroupedStream<K2, V>(this.b, this.then<K2, V>(label, () => selectKeyStage(fn)).tail, true);
  }

  toTopic(topic: string, serialize: (value: V, key: K) => { key: Buffer | string | null; value: Buffer | null } = jsonSerializer): void {
    this.sink({ kind: 'topic', name: `to-${topic}`, topic, serialize: serialize as never });
  }

  /**
   * Appends a row per record with COPY; rows and source offsets are committed in one transaction. Without row, each
   * column takes the value's property of its name (null when it has none), as Kafka Connect's JDBC sink does.
   */
  /**
   * Rows into a table with COPY, in the flush's transaction. keyColumns (adjacent in columns) is the key: in append
   * mode (the default) the first record of a key wins and later ones are dead letters; in upsert mode the last one
   * wins, written through a staging table with INSERT ... ON CONFLICT, and with deleteOnTombstone a tombstone
   * deletes its key's row (the stream must let tombstones through, and row must give their key).
   */
  toPostgres(spec: {
    table: string; columns: string[]; row?: (value: V, key: K, record: StreamRecord<V>) => CopyValue[]; keyColumns?: string[]; createSql: string;
    mode?: 'append' | 'upsert'; deleteOnTombstone?: boolean; shape?: TableShape;
  }): void {
    let row = (spec.row ?? byName(spec.columns)) as (value: unknown, key: unknown, record: StreamRecord) => CopyValue[];
    if (spec.deleteOnTombstone) {
      const values = row;
      const tombstone = tombstoneRow(spec.columns, spec.keyColumns ?? []);
      row = (value, key, r) => (r.raw === null ? tombstone(r) : values(value, key, r));
    }
    const sink: SinkSpec = { kind: 'postgres', name: `to-${spec.table}`, ...spec, row, byName: !spec.row };
    keyPosition(sink);
    if (spec.mode === 'upsert' && !spec.keyColumns?.length) throw new Error(`${sink.name}: upsert needs keyColumns`);
    if (spec.deleteOnTombstone && spec.mode !== 'upsert') throw new Error(`${sink.name}: deleteOnTombstone needs mode upsert`);
    this.sink(sink);
  }

  private sink(spec: SinkSpec): void {
    const how = spec.kind === 'postgres-windows' ? 'window upsert'
      : spec.kind === 'postgres' && spec.mode === 'upsert' ? `upsert on ${spec.keyColumns!.join(', ')}${spec.deleteOnTombstone ? ', delete on tombstone' : ''}` : 'COPY';
    const label = spec.kind === 'topic' ? `topic ${spec.topic}` : `Postgres table ${spec.table} (${how})`;
    this.tail.children.push(this.b.node('sink', label, { sink: spec }));
  }
}

/** A global table's handle in the DSL (StreamsBuilder.globalTable): what a stream joins with. */
export class GlobalKTable<V> {
  declare readonly value?: V;
  constructor(readonly topic: string) {}
}

export class KGroupedStream<K, V> {
  constructor(private readonly b: StreamsBuilder, private tail: PlanNode, private rekeyed = false) {}

  /**
   * Windows per key. A changed key (groupBy) needs no repartition topic here: each partition aggregates its own
   * records and the Postgres window sink merges the partitions' results.
   */
  windowedBy(windows: Windows): KWindowedStream<K, V> {
    return new KWindowedStream<K, V>(this.b, this.tail, windows);
  }

  /** The count of each key, as a table (every update emitted). */
  count(options: { store: string }): KTable<K, number> {
    return this.aggregate(() => 0, (n) => n + 1, options);
  }

  reduce(fn: (a: V, b: V) => V, options: { store: string }): KTable<K, V> {
    return this.aggregate<V | null>(() => null, (agg, v) => (agg === null ? v : fn(agg, v)), options) as KTable<K, V>;
  }

  /**
   * The aggregate of each key, as a table whose every update goes downstream. The key must be the one the records
   * came with (groupByKey): each task aggregates its partition, and a key changed by groupBy would be spread over
   * several partitions, which needs a repartition topic (windowed aggregations merge them in Postgres instead).
   */
  aggregate<A>(init: () => A, add: (aggregate: A, value: V, key: K) => A, options: { store: string }): KTable<K, A> {
    if (this.rekeyed) {
      this.tail = this.b.repartitionThrough(this.tail, `${options.store}`);
      this.rekeyed = false;
    }
    const n = this.b.node('stage', 'aggregate into a table (emit on update)', {
      store: options.store, stage: () => new TableAggregate<K, V, A>('table-aggregate', options.store, init, add) as unknown as Stage,
    });
    this.tail.children.push(n);
    return new KTable<K, A>(this.b, n);
  }
}

/**
 * A table in the DSL (Kafka Streams' KTable): its records are its changes, each a key's new value (null deletes).
 * Joined with a stream or another table, it is materialised in the join's store.
 */
export class KTable<K, V> {
  constructor(private readonly b: StreamsBuilder, /** @internal */ readonly tail: PlanNode, /** @internal */ readonly rekeyed = false) {}

  /** @internal This table, repartitioned when a stage may have changed its key. */
  copartitioned(name: string): KTable<K, V> {
    return this.rekeyed ? new KTable<K, V>(this.b, this.b.repartitionThrough(this.tail, name)) : this;
  }

  /** The table's changes as a stream (a deletion has value null). */
  toStream(): KStream<K, V | null> {
    return new KStream<K, V | null>(this.b, this.tail, this.rekeyed);
  }

  /** Each key's join of both tables' values: updated when either changes, deleted (value null) when either is. */
  join<R, O>(other: KTable<K, R>, joiner: (left: V, right: R, key: K) => O, options: { store: string }): KTable<K, O> {
    return new KTable<K, O>(this.b, twoSided(this.b, this.copartitioned(`${options.store}-left`), other.copartitioned(`${options.store}-right`), 'table-table', joiner as never, options.store));
  }

  /** As join, and a key of this table that the other lacks is joined with null. */
  leftJoin<R, O>(other: KTable<K, R>, joiner: (left: V, right: R | null, key: K) => O, options: { store: string }): KTable<K, O> {
    return new KTable<K, O>(this.b, twoSided(this.b, this.copartitioned(`${options.store}-left`), other.copartitioned(`${options.store}-right`), 'table-table-left', joiner as never, options.store));
  }
}

/** A join node of two co-partitioned parents (this stream or table first), with its TableJoin stage. */
function twoSided(b: StreamsBuilder, left: { tail: PlanNode; rekeyed: boolean }, right: { tail: PlanNode; rekeyed: boolean }, kind: TableJoinKind,
  joiner: (l: unknown, r: unknown, k: unknown) => unknown, store: string): PlanNode {
  const label = { 'stream-table': 'join table', 'stream-table-left': 'left join table', 'table-table': 'table join table', 'table-table-left': 'table left join table' }[kind];
  const n = b.node('stage', `${label} (its value as the record is processed)`, {
    parents: [left.tail.id, right.tail.id], store, stage: () => new TableJoin(`${kind}-join`, store, kind, joiner) as unknown as Stage,
  });
  left.tail.children.push(n);
  right.tail.children.push(n);
  return n;
}

export class KWindowedStream<K, V> {
  constructor(private readonly b: StreamsBuilder, private readonly tail: PlanNode, private readonly windows: Windows) {}

  count(options: { store: string; emit?: EmitMode }): KWindowedTable<K, number> {
    return this.aggregate(() => 0, (n) => n + 1, { ...options, merge: (a, b) => a + b });
  }

  reduce(fn: (a: V, b: V) => V, options: { store: string; emit?: EmitMode }): KWindowedTable<K, V> {
    return this.aggregate<V | null>(() => null, (agg, v) => (agg === null ? v : fn(agg, v)), {
      ...options, merge: (a, b) => (a === null ? b : b === null ? a : fn(a, b)),
    }) as KWindowedTable<K, V>;
  }

  /** Emit-final (the default) suppresses results until the window closes; emit 'update' sends every change. */
  aggregate<A>(init: () => A, add: (aggregate: A, value: V, key: K) => A,
    options: { store: string; emit?: EmitMode; merge?: (a: A, b: A, key: K) => A }): KWindowedTable<K, A> {
    const fns: AggregateFns<K, V, A> = { init, add, merge: options.merge };
    const emit = options.emit ?? 'final';
    const w = this.windows;
    const stage = () => (w.kind === 'session'
      ? new SessionWindowAggregate<K, V, A>('window-aggregate', options.store, w, fns, emit)
      : new TimeWindowAggregate<K, V, A>('window-aggregate', options.store, w, fns, emit)) as unknown as Stage;
    const n = this.b.node('stage', `aggregate over ${describeWindows(w)}, emit ${emit === 'final' ? 'final' : 'on update'}`, { stage, store: options.store });
    this.tail.children.push(n);
    return new KWindowedTable<K, A>(this.b, n, w);
  }
}

/** The results of a windowed aggregation, keyed by Windowed<K>. */
export class KWindowedTable<K, A> {
  constructor(private readonly b: StreamsBuilder, private readonly tail: PlanNode, readonly windows: Windows) {}

  toStream(): KStream<Windowed<K>, A> {
    return new KStream<Windowed<K>, A>(this.b, this.tail);
  }

  /**
   * Final window results into a table keyed by (windowStart, keyColumn), merged across partitions in Postgres and
   * committed with the source offsets.
   */
  toPostgres(spec: {
    table: string; windowStart: string; windowEnd: string; keyColumn: string; keyType: string;
    columns: Record<string, { type: string; combine: Combine }>;
    row: (key: Windowed<K>, aggregate: A) => Record<string, CopyValue>;
  }): void {
    const sink: SinkSpec = { kind: 'postgres-windows', name: `to-${spec.table}`, ...spec, row: spec.row as never };
    this.tail.children.push(this.b.node('sink', `Postgres table ${spec.table} (final windows, merged across partitions)`, { sink }));
  }
}

function jsonSerializer(value: unknown, key: unknown): { key: string | null; value: Buffer } {
  return { key: key === null || key === undefined ? null : typeof key === 'string' ? key : JSON.stringify(key), value: Buffer.from(JSON.stringify(value)) };
}

/**
 * A tombstone's row for a sink that deletes on them: its key columns from the Kafka key, the rest NULL. A key that
 * is a JSON object gives each key column its property of that name; a JSON string or number, or any other text, is
 * the value of a single key column. The producer keys its records by the same values as the key columns (as Kafka
 * Connect's delete.enabled needs pk.mode=record_key).
 */
export function tombstoneRow(columns: readonly string[], keyColumns: readonly string[]): (r: StreamRecord) => CopyValue[] {
  const at = keyColumns.map((k) => columns.indexOf(k));
  return (r) => {
    if (r.rawKey === null) throw new Error('a tombstone without a key cannot say which row to delete');
    const text = r.rawKey.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    const row: CopyValue[] = new Array(columns.length).fill(null);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      const o = parsed as Record<string, unknown>;
      keyColumns.forEach((k, i) => {
        const v = o[k];
        if (v === undefined || (typeof v === 'object' && v !== null)) throw new Error(`the tombstone's key has no scalar property ${k}`);
        row[at[i]] = v as CopyValue;
      });
    } else {
      if (keyColumns.length !== 1) throw new Error(`the tombstone's key is not an object with the key columns ${keyColumns.join(', ')}`);
      row[at[0]] = typeof parsed === 'string' || typeof parsed === 'number' ? parsed : text;
    }
    return row;
  };
}

/**
 * The sources grouped into sub-topologies: sources whose trees meet (a merge, a join) run as one set of tasks; a
 * repartition topic is a sink of one and the source of another, which is no link.
 */
function subtopologies(sources: PlanNode[]): PlanNode[][] {
  const reach = sources.map((s) => {
    const ids = new Set<string>();
    const go = (n: PlanNode) => {
      if (ids.has(n.id)) return;
      ids.add(n.id);
      n.children.forEach(go);
    };
    go(s);
    return ids;
  });
  const group = sources.map((_, i) => i);
  const find = (i: number): number => (group[i] === i ? i : (group[i] = find(group[i])));
  for (let i = 0; i < sources.length; i++) {
    for (let j = i + 1; j < sources.length; j++) {
      if ([...reach[i]].some((id) => reach[j].has(id))) group[find(j)] = find(i);
    }
  }
  const parts = new Map<number, PlanNode[]>();
  sources.forEach((s, i) => {
    const g = find(i);
    if (!parts.has(g)) parts.set(g, []);
    parts.get(g)!.push(s);
  });
  return [...parts.values()];
}

import type { CopyValue } from '../codec/copy-text.ts';
import type { Stage, StreamRecord, Windowed } from '../records.ts';
import { parseJson, type Tombstones } from '../stages/parse-json.ts';
import { filterStage, flatMapStage, mapStage, mapValuesStage, peekStage, selectKeyStage, timestampStage } from '../stages/stateless.ts';
import { validate } from '../stages/validate.ts';
import { validateWithRegistry } from '../stages/validate-registry.ts';
import type { SchemaRegistryClient } from '../schema/registry.ts';
import type { TableShape } from '../postgres/table-shape.ts';
import { SessionWindowAggregate, TimeWindowAggregate, type AggregateFns, type EmitMode } from '../stages/window-aggregate.ts';
import type { Validator } from '../schema/validator.ts';
import { describeWindows, type Windows } from '../windows/windows.ts';
import { byName, keyPosition, type Combine, type PlanNode, type SinkSpec, type TopologyPlan } from './plan.ts';

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
  private root: PlanNode | undefined;
  private ids = 0;

  constructor(readonly applicationId: string) {}

  /** @internal */
  node(kind: PlanNode['kind'], label: string, extra: Partial<PlanNode> = {}): PlanNode {
    return { id: `n${this.ids++}`, kind, label, children: [], ...extra };
  }

  /**
   * The records of a topic. With a schema, values are parsed as JSON and validated (invalid ones become dead
   * letters); with a timestamp extractor, event time comes from the value instead of the Kafka record timestamp.
   */
  stream<V = Buffer | null>(topic: string, options: {
    schema?: Validator<V>; schemaName?: string; timestamp?: (value: V) => number;
    /** With a registry, each message is validated against the schema its id names (see validate-registry.ts). */
    registry?: SchemaRegistryClient;
    /** With a schema: 'pass' lets tombstones through with value null (for a sink that deletes on them). */
    tombstones?: Tombstones;
  } = {}): KStream<string | null, V> {
    if (this.root) throw new Error('a topology reads one source topic');
    this.root = this.node('source', `topic ${topic}`, { sourceTopic: topic } as Partial<PlanNode>);
    let tail = this.root;
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

  build(): TopologyPlan {
    if (!this.root) throw new Error('the topology has no source: call stream(topic) first');
    return { applicationId: this.applicationId, topic: (this.root as PlanNode & { sourceTopic: string }).sourceTopic, root: this.root };
  }
}

export class KStream<K, V> {
  constructor(private readonly b: StreamsBuilder, private readonly tail: PlanNode) {}

  private then<K2, V2>(label: string, stage: () => Stage): KStream<K2, V2> {
    const n = this.b.node('stage', label, { stage });
    this.tail.children.push(n);
    return new KStream<K2, V2>(this.b, n);
  }

  filter(pred: (value: V, key: K) => boolean, label = 'filter'): KStream<K, V> {
    return this.then(label, () => filterStage(pred));
  }

  mapValues<O>(fn: (value: V, key: K) => O, label = 'mapValues'): KStream<K, O> {
    return this.then(label, () => mapValuesStage(fn));
  }

  map<K2, O>(fn: (key: K, value: V) => { key: K2; value: O }, label = 'map'): KStream<K2, O> {
    return this.then(label, () => mapStage(fn));
  }

  flatMap<K2, O>(fn: (key: K, value: V) => Iterable<{ key: K2; value: O }>, label = 'flatMap'): KStream<K2, O> {
    return this.then(label, () => flatMapStage(fn));
  }

  selectKey<K2>(fn: (value: V, key: K) => K2, label = 'selectKey'): KStream<K2, V> {
    return this.then(label, () => selectKeyStage(fn));
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
      return new KStream<K, V>(this.b, arm);
    });
  }

  groupByKey(): KGroupedStream<K, V> {
    return new KGroupedStream<K, V>(this.b, this.tail);
  }

  /**
   * Groups by a new key. Unlike Kafka Streams there is no repartition topic: each partition aggregates its own
   * records, and a Postgres window sink merges the partitions' results (see PostgresWindowSinkSpec).
   */
  groupBy<K2>(fn: (value: V, key: K) => K2, label = 'groupBy'): KGroupedStream<K2, V> {
    return new KGroupedStream<K2, V>(this.b, this.then<K2, V>(label, () => selectKeyStage(fn)).tail);
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

export class KGroupedStream<K, V> {
  constructor(private readonly b: StreamsBuilder, private readonly tail: PlanNode) {}

  windowedBy(windows: Windows): KWindowedStream<K, V> {
    return new KWindowedStream<K, V>(this.b, this.tail, windows);
  }
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

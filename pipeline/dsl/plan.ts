import type { TableShape } from '../postgres/table-shape.ts';
import type { CopyValue } from '../codec/copy-text.ts';
import type { Stage, StreamRecord, Windowed } from '../records.ts';
import type { GlobalTable, GlobalTableSpec } from '../state/global-table.ts';

/**
 * What a topology declared: from each source topic through stages to sinks, a tree per source whose branches may
 * meet (merge, join: a node with two parents). Stages are factories, so every running task (and every test driver)
 * gets instances of its own.
 */
export interface PlanNode {
  id: string;
  kind: 'source' | 'stage' | 'branch' | 'sink';
  label: string;
  children: PlanNode[];
  /** source: the topic it reads. */
  sourceTopic?: string;
  /** source: read as a table (b.table): a task reads it to its end before taking records of its stream inputs. */
  table?: boolean;
  /** A join with a global table: its topic. */
  globalTable?: string;
  /** A node where two streams meet (merge, join): the ids of its parents, the left (this) stream first. */
  parents?: string[];
  stage?: (build: StageBuild) => Stage;
  /** branch: children[i] takes the records for which predicates[i] is the first to hold. */
  predicates?: ((value: unknown, key: unknown) => boolean)[];
  sink?: SinkSpec;
  store?: string;
  /** What a stage does, for the optimiser to recognise it (dsl/optimize.ts): 'parse-json', 'validate'. */
  op?: 'parse-json' | 'validate';
  /** validate: the JSON Schema of a local validator (not a registry's). */
  schema?: object;
}

/** What a stage factory may ask of the executor that builds it: a global table it reads (the executor's own). */
export interface StageBuild {
  globalTable(topic: string): GlobalTable;
}

export interface TopicSinkSpec {
  kind: 'topic';
  name: string;
  topic: string;
  serialize: (value: unknown, key: unknown) => { key: Buffer | string | null; value: Buffer | null };
  /**
   * An internal repartition topic (`<application-id>-<name>-repartition`): records keep their event time as the
   * Kafka timestamp and carry the partition they came from (UPSTREAM_HEADER), so the reading task tracks stream time
   * per upstream partition.
   */
  repartition?: boolean;
}

/** Headers of a repartitioned record: the partition it came from upstream, and how many there are. */
export const UPSTREAM_HEADER = 'pipeline.upstream.partition';
export const UPSTREAM_COUNT_HEADER = 'pipeline.upstream.partitions';
export const repartitionTopic = (applicationId: string, name: string) => `${applicationId}-${name}-repartition`;

/**
 * How a repartition topic is created: its records carry their event time as the Kafka timestamp, so time-based
 * retention would delete records of an old event time (a replay, a backfill) before the next sub-topology reads
 * them. It keeps them for good, as Kafka Streams' repartition topics do (retention.ms=-1).
 */
export const REPARTITION_TOPIC_CONFIG: Readonly<Record<string, string>> = { 'cleanup.policy': 'delete', 'retention.ms': '-1' };

export const isRepartitionTopic = (applicationId: string, topic: string) => topic.startsWith(`${applicationId}-`) && topic.endsWith('-repartition');

/** Appends one row per record with COPY (orders-ingest). */
export interface PostgresAppendSinkSpec {
  kind: 'postgres';
  name: string;
  table: string;
  columns: string[];
  row: (value: unknown, key: unknown, record: StreamRecord) => CopyValue[];
  /** row is byName(columns): each column takes the value's property of its name. */
  byName: boolean;
  /**
   * The key: adjacent columns, in this order. In append mode a later record with the same key is a dead letter
   * (reason duplicate); in upsert mode the last record for a key wins.
   */
  keyColumns?: string[];
  /** append (the default): COPY into the table. upsert: COPY into a staging table, then INSERT ... ON CONFLICT (key) DO UPDATE. */
  mode?: 'append' | 'upsert';
  /** upsert only: a tombstone (null value) deletes its key's row (its row function gives the key from the Kafka key). */
  deleteOnTombstone?: boolean;
  /** The columns the table must have, checked at setup (and added, with auto-evolve): the connector's. */
  shape?: TableShape;
  /** CREATE TABLE IF NOT EXISTS $TABLE (...): run at start; $TABLE becomes the quoted table name. */
  createSql: string;
}

/** Where a sink's key columns are in its rows: adjacent, in the order given (toPostgres checks that they are). */
export function keyPosition(s: PostgresAppendSinkSpec): { keyAt: number; keyFields: number } {
  const keys = s.keyColumns ?? [];
  if (!keys.length) return { keyAt: -1, keyFields: 1 };
  const keyAt = s.columns.indexOf(keys[0]);
  if (keyAt < 0 || keys.some((k, i) => s.columns[keyAt + i] !== k)) {
    throw new Error(`${s.name}: the key columns (${keys.join(', ')}) must be columns of the sink, adjacent and in that order`);
  }
  return { keyAt, keyFields: keys.length };
}

/** Each column takes the value's property of the same name, as Kafka Connect's JDBC sink maps fields to columns. */
export function byName(columns: readonly string[]): (value: unknown) => CopyValue[] {
  return (value) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('columns by name need an object value');
    const v = value as Record<string, CopyValue>;
    const out: CopyValue[] = new Array(columns.length);
    for (let c = 0; c < columns.length; c++) out[c] = Object.hasOwn(v, columns[c]) ? v[columns[c]] : null;
    return out;
  };
}

export type Combine = 'sum' | 'min' | 'max';

/**
 * Final window results into a table keyed by (window start, key). Each partition aggregates its own records; its
 * final results are staged per partition, and Postgres merges them (combine per column) into the table once every
 * partition has closed the window, so the table holds complete windows only.
 */
export interface PostgresWindowSinkSpec {
  kind: 'postgres-windows';
  name: string;
  table: string;
  windowStart: string;
  windowEnd: string;
  keyColumn: string;
  columns: Record<string, { type: string; combine: Combine }>;
  row: (key: Windowed<unknown>, aggregate: unknown) => Record<string, CopyValue>;
  keyType: string;
}

export type SinkSpec = TopicSinkSpec | PostgresAppendSinkSpec | PostgresWindowSinkSpec;

export interface TopologyPlan {
  applicationId: string;
  /** The first source's topic: the one whose partitions the consumer group assigns (see inputs). */
  topic: string;
  root: PlanNode;
  /**
   * Every source topic, `topic` first, when the topology reads several: they must be co-partitioned (the same
   * partition count, keyed alike), as Kafka Streams requires of a join's inputs; task p reads partition p of each.
   */
  inputs: string[];
  /** Every source node, in the order of inputs (root first). */
  sources: PlanNode[];
  /** Global tables the stages read: each instance reads all of each such topic (not an input: no offsets, no tasks). */
  globalTables?: GlobalTableSpec[];
  /**
   * With repartition topics, the parts that run as tasks of their own (Kafka Streams' sub-topologies), each a plan
   * whose inputs are co-partitioned: the first writes a repartition topic that a later one reads.
   */
  subtopologies?: TopologyPlan[];
  /** The rewrites optimize() applied, by name, for --describe (none until it runs). */
  rewrites?: AppliedRewrite[];
}

export interface AppliedRewrite {
  name: string;
  /** What it replaced, in a line. */
  detail: string;
}

/** Visits every node of the plan once, from each source in turn (a node of two parents under its first). */
export function walk(plan: Pick<TopologyPlan, 'sources'>, visit: (n: PlanNode, depth: number, seen: boolean) => void): void {
  const seen = new Set<string>();
  const go = (n: PlanNode, depth: number) => {
    const again = seen.has(n.id);
    visit(n, depth, again);
    if (again) return;
    seen.add(n.id);
    for (const c of n.children) go(c, depth + 1);
  };
  for (const s of plan.sources) go(s, 0);
}

export function sinksOf(plan: TopologyPlan): SinkSpec[] {
  const out: SinkSpec[] = [];
  walk(plan, (n, _, again) => !again && n.sink && out.push(n.sink));
  return out;
}

export function storesOf(plan: TopologyPlan): string[] {
  const out: string[] = [];
  walk(plan, (n, _, again) => !again && n.store && out.push(n.store));
  return out;
}

export const changelogTopic = (applicationId: string, store: string) => `${applicationId}-${store}-changelog`;

/** Like Topology#describe(): sources, stages, stores, sinks, topics and tables, as indented text. */
export function describeText(plan: TopologyPlan, dlqTopic: string): string {
  const lines = [`Topology ${plan.applicationId}`];
  walk(plan, (n, depth, again) => {
    const pad = '  '.repeat(depth + 1);
    if (again) lines.push(`${pad}${n.kind.padEnd(6)} ${n.label} (${n.id}, above)`);
    else lines.push(`${pad}${n.kind.padEnd(6)} ${n.label}${n.parents ? ` (${n.id})` : ''}${n.store ? ` [store ${n.store}, changelog ${changelogTopic(plan.applicationId, n.store)}]` : ''}`);
  });
  for (const g of plan.globalTables ?? []) lines.push(`  global table ${g.topic} (every partition in every instance, read to its end before processing starts; the topic is its changelog)`);
  if (plan.subtopologies) {
    plan.subtopologies.forEach((sub, i) => lines.push(`  sub-topology ${i}: reads ${sub.inputs.join(', ')}${sub.inputs.length > 1 ? ' (co-partitioned)' : ''}`));
  } else if (plan.inputs.length > 1) lines.push(`  co-partitioned inputs: ${plan.inputs.join(', ')} (the same partition count, checked at start; task p reads partition p of each)`);
  lines.push(`  dead letters -> topic ${dlqTopic}`);
  for (const r of plan.rewrites ?? []) lines.push(`  rewrite ${r.name}: ${r.detail}`);
  return lines.join('\n');
}

/** The same as a Mermaid flowchart. */
export function describeMermaid(plan: TopologyPlan, dlqTopic: string): string {
  const lines = ['flowchart LR'];
  const esc = (s: string) => s.replace(/"/g, "'");
  walk(plan, (n, _, again) => {
    if (again) return;
    const shape = n.kind === 'source' || (n.sink?.kind === 'topic') ? [`[/"`, `"/]`] : n.kind === 'sink' ? ['[("', '")]'] : ['["', '"]'];
    lines.push(`  ${n.id}${shape[0]}${esc(n.label)}${shape[1]}`);
    if (n.store) lines.push(`  ${n.id}_store[("store ${esc(n.store)}")]`, `  ${n.id} -.- ${n.id}_store`);
    const rep = n.sink?.kind === 'topic' && n.sink.repartition ? plan.sources.find((x) => x.sourceTopic === (n.sink as TopicSinkSpec).topic) : undefined;
    if (rep) lines.push(`  ${n.id} -. repartition .-> ${rep.id}`);
    if (n.globalTable) lines.push(`  ${n.id}_table[/"global table ${esc(n.globalTable)}"/]`, `  ${n.id}_table -. lookup .-> ${n.id}`);
    for (const c of n.children) lines.push(`  ${n.id} --> ${c.id}`);
  });
  lines.push(`  dlq[/"topic ${esc(dlqTopic)} (dead letters)"/]`, ...plan.sources.map((s) => `  ${s.id} -. invalid .-> dlq`));
  for (const r of plan.rewrites ?? []) lines.push(`  %% rewrite ${r.name}: ${esc(r.detail)}`);
  return lines.join('\n');
}

import type { TableShape } from '../postgres/table-shape.ts';
import type { CopyValue } from '../codec/copy-text.ts';
import type { Stage, StreamRecord, Windowed } from '../records.ts';

/**
 * What a topology declared: a tree from one source topic through stages to sinks. Stages are factories, so every
 * running task (and every test driver) gets instances of its own.
 */
export interface PlanNode {
  id: string;
  kind: 'source' | 'stage' | 'branch' | 'sink';
  label: string;
  children: PlanNode[];
  stage?: () => Stage;
  /** branch: children[i] takes the records for which predicates[i] is the first to hold. */
  predicates?: ((value: unknown, key: unknown) => boolean)[];
  sink?: SinkSpec;
  store?: string;
  /** What a stage does, for the optimiser to recognise it (dsl/optimize.ts): 'parse-json', 'validate'. */
  op?: 'parse-json' | 'validate';
  /** validate: the JSON Schema of a local validator (not a registry's). */
  schema?: object;
}

export interface TopicSinkSpec {
  kind: 'topic';
  name: string;
  topic: string;
  serialize: (value: unknown, key: unknown) => { key: Buffer | string | null; value: Buffer | null };
}

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
  topic: string;
  root: PlanNode;
  /** The rewrites optimize() applied, by name, for --describe (none until it runs). */
  rewrites?: AppliedRewrite[];
}

export interface AppliedRewrite {
  name: string;
  /** What it replaced, in a line. */
  detail: string;
}

export function walk(node: PlanNode, visit: (n: PlanNode, depth: number) => void, depth = 0): void {
  visit(node, depth);
  for (const c of node.children) walk(c, visit, depth + 1);
}

export function sinksOf(plan: TopologyPlan): SinkSpec[] {
  const out: SinkSpec[] = [];
  walk(plan.root, (n) => n.sink && out.push(n.sink));
  return out;
}

export function storesOf(plan: TopologyPlan): string[] {
  const out: string[] = [];
  walk(plan.root, (n) => n.store && out.push(n.store));
  return out;
}

export const changelogTopic = (applicationId: string, store: string) => `${applicationId}-${store}-changelog`;

/** Like Topology#describe(): sources, stages, stores, sinks, topics and tables, as indented text. */
export function describeText(plan: TopologyPlan, dlqTopic: string): string {
  const lines = [`Topology ${plan.applicationId}`];
  walk(plan.root, (n, depth) => {
    const pad = '  '.repeat(depth + 1);
    lines.push(`${pad}${n.kind.padEnd(6)} ${n.label}${n.store ? ` [store ${n.store}, changelog ${changelogTopic(plan.applicationId, n.store)}]` : ''}`);
  });
  lines.push(`  dead letters -> topic ${dlqTopic}`);
  for (const r of plan.rewrites ?? []) lines.push(`  rewrite ${r.name}: ${r.detail}`);
  return lines.join('\n');
}

/** The same as a Mermaid flowchart. */
export function describeMermaid(plan: TopologyPlan, dlqTopic: string): string {
  const lines = ['flowchart LR'];
  const esc = (s: string) => s.replace(/"/g, "'");
  walk(plan.root, (n) => {
    const shape = n.kind === 'source' || (n.sink?.kind === 'topic') ? [`[/"`, `"/]`] : n.kind === 'sink' ? ['[("', '")]'] : ['["', '"]'];
    lines.push(`  ${n.id}${shape[0]}${esc(n.label)}${shape[1]}`);
    if (n.store) lines.push(`  ${n.id}_store[("store ${esc(n.store)}")]`, `  ${n.id} -.- ${n.id}_store`);
    for (const c of n.children) lines.push(`  ${n.id} --> ${c.id}`);
  });
  lines.push(`  dlq[/"topic ${esc(dlqTopic)} (dead letters)"/]`, `  ${plan.root.id} -. invalid .-> dlq`);
  for (const r of plan.rewrites ?? []) lines.push(`  %% rewrite ${r.name}: ${esc(r.detail)}`);
  return lines.join('\n');
}

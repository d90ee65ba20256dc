import { compileJsonRows, type JsonRows } from '../codec/json-rows.ts';
import { formatCheck } from '../schema/validator.ts';
import type { AppliedRewrite, PlanNode, TopologyPlan } from './plan.ts';

/**
 * A plan after optimize(): the same tree, with what the named rewrites found. As Kafka Streams' InternalStreamsBuilder
 * rewrites the graph it was given (merging repartitions, reusing source topics as changelogs), a rewrite here never
 * changes what a topology computes, only how: each is checked against the plain path by a test (json-rows.test.ts).
 */
export interface OptimizedPlan extends TopologyPlan {
  rewrites: AppliedRewrite[];
  /**
   * direct-json-rows: the plan's only sink, whose rows a JsonRows reader makes straight from the message bytes. A
   * message the reader cannot decide exactly (anything unusual) takes the stages, so the result is the same.
   */
  direct?: { sink: string; reader: JsonRows };
}

export interface OptimizeOptions {
  /** false: the direct reader is not used (every record takes the stages), for comparison. Default true. */
  directJson?: boolean;
}

/**
 * direct-json-rows: source -> parse-json -> validate (a local schema) -> a Postgres append sink with columns by name,
 * nothing else, and a schema that codec/json-rows.ts reads exactly. Then a message's JSON is read straight into its
 * COPY row, without JSON.parse, ajv or an object per record.
 */
function directJsonRows(plan: TopologyPlan): OptimizedPlan['direct'] {
  if (plan.sources.length !== 1) return undefined;
  const only = (n: PlanNode | undefined) => (n?.children.length === 1 ? n.children[0] : undefined);
  const parse = only(plan.root);
  const validate = parse?.op === 'parse-json' ? only(parse) : undefined;
  const sink = validate?.op === 'validate' && validate.schema ? only(validate)?.sink : undefined;
  if (!validate?.schema || sink?.kind !== 'postgres' || !sink.byName) return undefined;
  const reader = compileJsonRows(validate.schema, sink.columns, formatCheck);
  return reader && { sink: sink.name, reader };
}

/** Applies every rewrite that fits the plan; --describe lists the ones that did. */
export function optimize(plan: TopologyPlan, options: OptimizeOptions = {}): OptimizedPlan {
  const rewrites: AppliedRewrite[] = [];
  const direct = options.directJson ?? true ? directJsonRows(plan) : undefined;
  if (direct) {
    rewrites.push({ name: 'direct-json-rows', detail: `parse-json -> validate -> ${direct.sink}: each message's JSON read straight into its COPY row (one the reader cannot decide exactly takes the stages)` });
  }
  return { ...plan, rewrites, direct };
}

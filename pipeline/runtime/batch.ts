import type { CopyValue } from '../codec/copy-text.ts';
import type { PlanExecutor } from '../dsl/executor.ts';
import type { PostgresAppendSinkSpec } from '../dsl/plan.ts';
import type { StageContext, StreamRecord } from '../records.ts';
import { encodeRows, type EncodedRows } from '../sinks/copy-segment.ts';

/** A Postgres append sink of a plan, as the runtime encodes rows for it. */
export interface CopyTarget {
  spec: PostgresAppendSinkSpec;
  /** Index of the key column in the row, -1 when the sink has none. */
  keyAt: number;
}

export function copyTargets(executor: PlanExecutor): Map<string, CopyTarget> {
  const out = new Map<string, CopyTarget>();
  for (const s of executor.sinks) {
    if (s.kind === 'postgres') out.set(s.name, { spec: s, keyAt: s.keyColumn === undefined ? -1 : s.columns.indexOf(s.keyColumn) });
  }
  return out;
}

export interface BatchOutput {
  /** Rows for each Postgres append sink, encoded as COPY text. */
  copy: Map<string, EncodedRows>;
  /** Records that reached every other sink (topics, window tables), by sink name. */
  other: Map<string, StreamRecord[]>;
}

/**
 * One polled batch through the plan: the stages, then COPY encoding for the Postgres append sinks. The same code runs
 * on the main thread and in stage workers (runtime/stage-worker.ts). A row whose values COPY cannot carry is a dead
 * letter (unencodable), as is one whose row function throws (map-failed).
 */
export function runBatch(executor: PlanExecutor, batch: StreamRecord[], ctx: StageContext, targets: Map<string, CopyTarget>): BatchOutput {
  const reached = new Map<string, StreamRecord[]>();
  executor.run(batch, ctx, reached);
  const copy = new Map<string, EncodedRows>();
  const other = new Map<string, StreamRecord[]>();
  for (const [name, records] of reached) {
    const target = targets.get(name);
    if (!target) {
      other.set(name, records);
      continue;
    }
    const row = target.spec.row;
    const values = (r: StreamRecord): readonly CopyValue[] => row(r.value, r.key, r);
    copy.set(name, encodeRows(records, values, target.keyAt, (r, reason, message) => ctx.deadLetter(r, reason, message)));
  }
  return { copy, other };
}

import type { CopyValue } from '../codec/copy-text.ts';
import type { PlanExecutor } from '../dsl/executor.ts';
import type { PostgresAppendSinkSpec } from '../dsl/plan.ts';
import type { StageContext, StreamRecord } from '../records.ts';
import { CopyRowsBuilder, type CopyRows } from '../sinks/copy-segment.ts';

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

/**
 * A batch's rows for one Postgres append sink: COPY text, line ends, key hashes, and the record (index in the batch)
 * of each. Each array is a view of an ArrayBuffer of its own (CopyRowsBuilder), so a stage worker transfers them.
 */
export interface BatchRows extends CopyRows {
  src: Uint32Array;
}

export interface BatchOutput {
  /** Rows for each Postgres append sink, encoded as COPY text. */
  copy: Map<string, BatchRows>;
  /** Records that reached every other sink (topics, window tables), by sink name. */
  other: Map<string, StreamRecord[]>;
}

/**
 * Records go through the plan this many at a time. A whole poll at a time (1,000 records and their parsed values,
 * rows and lines) outlived V8's young-generation collections, each of which copied it, then promoted it: the stage
 * worker spent ~30% of its time in GC (`npm run bench -- ingest --cpu-prof DIR`). A chunk's objects are garbage by the
 * time the next chunk is made. The order of records through each stage is the same either way.
 */
export const CHUNK = 128;

/** A record with its index in the polled batch, set by runBatch: what dead letters and rows point back to. */
export type Sourced = StreamRecord & { src: number };

/**
 * One polled batch of n records (recordAt makes record i) through the plan: the stages, then COPY encoding for the
 * Postgres append sinks, a chunk at a time. The same code runs on the main thread and in stage workers
 * (runtime/stage-worker.ts). A row whose values COPY cannot carry is a dead letter (unencodable), as is one whose
 * row function throws (map-failed).
 */
export function runBatch(executor: PlanExecutor, n: number, recordAt: (i: number) => StreamRecord, ctx: StageContext, targets: Map<string, CopyTarget>, textBytes?: number): BatchOutput {
  const builders = new Map<string, { rows: CopyRowsBuilder; src: Uint32Array; values: (r: StreamRecord) => readonly CopyValue[] }>();
  const other = new Map<string, StreamRecord[]>();
  const reject = (r: StreamRecord, reason: string, message: string) => ctx.deadLetter(r, reason, message);
  for (let from = 0; from < n; from += CHUNK) {
    const chunk: Sourced[] = new Array(Math.min(CHUNK, n - from));
    for (let j = 0; j < chunk.length; j++) {
      const r = recordAt(from + j) as Sourced;
      r.src = from + j;
      chunk[j] = r;
    }
    const reached = new Map<string, StreamRecord[]>();
    executor.run(chunk, ctx, reached);
    for (const [name, records] of reached) {
      const target = targets.get(name);
      if (!target) {
        const list = other.get(name);
        if (list) for (const r of records) list.push(r);
        else other.set(name, records);
        continue;
      }
      let b = builders.get(name);
      if (!b) {
        const row = target.spec.row;
        builders.set(name, (b = { rows: new CopyRowsBuilder(target.keyAt, n, textBytes), src: new Uint32Array(n), values: (r) => row(r.value, r.key, r) }));
      }
      const at = b.rows.length;
      const rows = b.rows.append(records, b.values, reject);
      for (let i = 0; i < rows.length; i++) b.src[at + i] = (rows[i] as Sourced).src;
    }
  }
  const copy = new Map<string, BatchRows>();
  for (const [name, b] of builders) copy.set(name, { ...b.rows.finish(), src: b.src.subarray(0, b.rows.length) });
  return { copy, other };
}

import type { CopyValue } from '../codec/copy-text.ts';
import type { PlanExecutor } from '../dsl/executor.ts';
import type { PostgresAppendSinkSpec } from '../dsl/plan.ts';
import type { StageContext, StreamRecord } from '../records.ts';
import { encodeRows } from '../sinks/copy-segment.ts';

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

/** A batch's rows for one Postgres append sink: COPY text, line ends, keys, and the record (index in the batch) of each. */
export interface BatchRows {
  text: Buffer;
  ends: Uint32Array;
  keyHashes: Uint32Array | undefined;
  keyAt: number;
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
export function runBatch(executor: PlanExecutor, n: number, recordAt: (i: number) => StreamRecord, ctx: StageContext, targets: Map<string, CopyTarget>): BatchOutput {
  const parts = new Map<string, BatchRows[]>();
  const other = new Map<string, StreamRecord[]>();
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
      const row = target.spec.row;
      const values = (r: StreamRecord): readonly CopyValue[] => row(r.value, r.key, r);
      const e = encodeRows(records, values, target.keyAt, (r, reason, message) => ctx.deadLetter(r, reason, message));
      let list = parts.get(name);
      if (!list) parts.set(name, (list = []));
      list.push({ text: e.text, ends: e.ends, keyHashes: e.keyHashes, keyAt: e.keyAt, src: Uint32Array.from(e.rows, (r) => (r as Sourced).src) });
    }
  }
  const copy = new Map<string, BatchRows>();
  for (const [name, list] of parts) copy.set(name, list.length === 1 ? list[0] : concatRows(list));
  return { copy, other };
}

function concatRows(list: BatchRows[]): BatchRows {
  let rows = 0;
  for (const p of list) rows += p.ends.length;
  const ends = new Uint32Array(rows);
  const src = new Uint32Array(rows);
  const keyHashes = list[0].keyHashes ? new Uint32Array(rows) : undefined;
  let at = 0;
  let bytes = 0;
  for (const p of list) {
    for (let i = 0; i < p.ends.length; i++) ends[at + i] = bytes + p.ends[i];
    src.set(p.src, at);
    keyHashes?.set(p.keyHashes!, at);
    at += p.ends.length;
    bytes += p.text.length;
  }
  return { text: Buffer.concat(list.map((p) => p.text), bytes), ends, keyHashes, keyAt: list[0].keyAt, src };
}

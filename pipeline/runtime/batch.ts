import type { CopyValue } from '../codec/copy-text.ts';
import type { DeadLetterReason } from '../errors.ts';
import type { PlanExecutor, StageCounts } from '../dsl/executor.ts';
import { keyPosition, type PostgresAppendSinkSpec } from '../dsl/plan.ts';
import type { JsonRows } from '../codec/json-rows.ts';
import { batchSize, recordOf, type PackedBatch } from '../sources/packed-batch.ts';
import type { StageContext, StreamRecord } from '../records.ts';
import { CopyRowsBuilder, lineStart, type BinaryRows, type CopyRows } from '../sinks/copy-segment.ts';
import { binaryEncoders, binaryKeyTypes, type ColumnEncoder } from '../codec/copy-binary.ts';

/** A Postgres append sink of a plan, as the runtime encodes rows for it. */
export interface CopyTarget {
  spec: PostgresAppendSinkSpec;
  /** Index of the (first) key column in the row, -1 when the sink has none. */
  keyAt: number;
  /** How many adjacent columns the key is. */
  keyFields: number;
  /** Reads a message's JSON straight into its row: the direct-json-rows rewrite (dsl/optimize.ts) found this sink. */
  direct?: JsonRows;
  /** The direct reader's rows go in COPY's binary format, each column by its encoder (useBinaryCopy). */
  binary?: { encoders: ColumnEncoder[]; rows: BinaryRows };
}

/** The Postgres append sinks of the executor's plan, with the direct reader when the optimiser found one. */
export function copyTargets(executor: PlanExecutor): Map<string, CopyTarget> {
  const out = new Map<string, CopyTarget>();
  for (const s of executor.sinks) {
    if (s.kind === 'postgres') out.set(s.name, { spec: s, ...keyPosition(s) });
  }
  const direct = executor.direct;
  if (direct) out.get(direct.sink)!.direct = direct.reader;
  return out;
}

/**
 * Has the direct reader's rows for sink written in COPY's binary format when every column's Postgres type (types, in
 * the sink's column order) has an encoder for what the reader finds in it, and the key's types print back as their
 * COPY text (codec/copy-binary.ts); whether it will. Given no types, or types it cannot write, the rows go as text.
 */
export function useBinaryCopy(targets: Map<string, CopyTarget>, sink: string, types: readonly string[] | undefined): boolean {
  const t = targets.get(sink);
  if (!t?.direct) return false;
  t.binary = undefined;
  const encoders = types && binaryEncoders(types, t.direct.columnKinds);
  if (!types || !encoders || !binaryKeyTypes(t.keyAt < 0 ? [] : types.slice(t.keyAt, t.keyAt + t.keyFields))) return false;
  t.binary = { encoders, rows: { types: [...types] } };
  return true;
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
  /** Records in, out and dead-lettered per stage. */
  stages: StageCounts[];
}

/**
 * Records go through the plan this many at a time, so that a chunk's objects are garbage by the time the next chunk
 * is made: a whole poll's records and their values, rows and lines outlived V8's young-generation collections, which
 * copied, then promoted them (docs/performance.md). The order of records through each stage is the same either way.
 */
export const CHUNK = 128;

/** A record with its index in the polled batch, set by runBatch: what dead letters and rows point back to. */
export type Sourced = StreamRecord & { src: number };

/**
 * One polled batch (recordAt makes record i; by default from the batch) through the plan: the stages, then COPY
 * encoding for the Postgres append sinks, a chunk at a time. The same code runs on the main thread and in stage
 * workers (runtime/stage-worker.ts). A row whose values COPY cannot carry is a dead letter (unencodable), as is one
 * whose row function throws (map-failed). With a direct reader (CopyTarget.direct), each message it can read
 * becomes its row without any stage; the others go through the stages as before, rows staying in message order.
 */
export function runBatch(executor: PlanExecutor, batch: PackedBatch, ctx: StageContext, targets: Map<string, CopyTarget>,
  recordAt: (i: number) => StreamRecord = (i) => recordOf(batch, i)): BatchOutput {
  const n = batchSize(batch);
  const builders = new Map<string, { rows: CopyRowsBuilder; src: Uint32Array; values: (r: StreamRecord) => readonly CopyValue[] }>();
  const builder = (name: string, target: CopyTarget) => {
    let b = builders.get(name);
    if (!b) {
      const row = target.spec.row;
      builders.set(name, (b = { rows: new CopyRowsBuilder(target.keyAt, n, batch.values.byteLength, target.keyFields, target.binary?.rows), src: new Uint32Array(n), values: (r) => row(r.value, r.key, r) }));
    }
    return b;
  };
  const { values, valueEnds, nullValue } = batch;
  /**
   * The batch's rows so far again, as text: binary rows cannot share a COPY with text ones, and a row binary cannot
   * carry, or one that went through the stages, makes the whole batch text. Only direct rows are binary, so each is
   * read again from its message.
   */
  const toText = (b: { rows: CopyRowsBuilder; src: Uint32Array }, target: CopyTarget) => {
    const reader = target.direct!;
    const text = new CopyRowsBuilder(target.keyAt, n, batch.values.byteLength, target.keyFields);
    for (let j = 0; j < b.rows.length; j++) {
      const i = b.src[j];
      reader.read(values, lineStart(valueEnds, i), valueEnds[i]);
      reader.write(values, text);
    }
    b.rows = text;
  };
  const other = new Map<string, StreamRecord[]>();
  const reject = (r: StreamRecord, reason: DeadLetterReason, message: string) => ctx.deadLetter(r, reason, message);
  const run = (chunk: Sourced[]) => {
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
      const b = builder(name, target);
      if (b.rows.binary) toText(b, target);
      const at = b.rows.length;
      const rows = b.rows.append(records, b.values, reject);
      for (let i = 0; i < rows.length; i++) b.src[at + i] = (rows[i] as Sourced).src;
    }
  };
  const sourced = (i: number) => {
    const r = recordAt(i) as Sourced;
    r.src = i;
    return r;
  };
  const direct = [...targets].find(([, t]) => t.direct); // the plan's only sink (copyTargets)
  if (direct) {
    const [name, target] = direct;
    const reader = target.direct!;
    const b = builder(name, target);
    const encoders = target.binary?.encoders;
    let slow: Sourced[] = [];
    let read = 0;
    for (let i = 0; i < n; i++) {
      const start = lineStart(valueEnds, i);
      if (nullValue[i] === 0 && reader.read(values, start, valueEnds[i])) {
        if (slow.length) {
          const binary = b.rows.binary;
          run(slow);
          slow = [];
          if (binary && !b.rows.binary) reader.read(values, start, valueEnds[i]); // toText read the others since
        }
        b.src[b.rows.length] = i;
        if (!b.rows.binary) reader.write(values, b.rows);
        else if (!reader.writeBinary(values, b.rows, encoders!)) {
          toText(b, target);
          reader.read(values, start, valueEnds[i]); // toText read the others since
          reader.write(values, b.rows);
        }
        read++;
      } else if (slow.push(sourced(i)) === CHUNK) {
        run(slow);
        slow = [];
      }
    }
    if (slow.length) run(slow);
    executor.countDirect(read);
  } else {
    for (let from = 0; from < n; from += CHUNK) {
      const chunk: Sourced[] = new Array(Math.min(CHUNK, n - from));
      for (let j = 0; j < chunk.length; j++) chunk[j] = sourced(from + j);
      run(chunk);
    }
  }
  const copy = new Map<string, BatchRows>();
  for (const [name, b] of builders) copy.set(name, { ...b.rows.finish(), src: b.src.subarray(0, b.rows.length) });
  return { copy, other, stages: executor.takeCounts() };
}

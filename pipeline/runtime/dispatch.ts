import type { PlanExecutor, StageCounts } from '../dsl/executor.ts';
import type { StageContext, StreamRecord } from '../records.ts';
import { recordOf, type PackedBatch } from '../sources/packed-batch.ts';
import { copyTargets, runBatch, useBinaryCopy, type BatchRows, type CopyTarget } from './batch.ts';
import type { PendingBatch } from './flush-plan.ts';
import { StageWorkers, type PlanRef, type WorkerResult } from './stage-workers.ts';

export interface DispatchOptions {
  executor: PlanExecutor;
  /** Where a partition's records, rows and dead letters go: its lane's pending batch. */
  pendingOf(partition: number): PendingBatch;
  deadLetter: StageContext['deadLetter'];
  /** Records a stage found late: the record itself when it ran on the main thread. */
  late(stage: string, count: number, record?: StreamRecord): void;
  stages(counts: StageCounts[]): void;
  /** Worker threads for the stages and COPY encoding (0: the main thread). */
  threads: number;
  planRef?: PlanRef;
  directJson?: boolean;
}

/**
 * Runs taken batches through the plan, on the main thread or on stage workers, and puts what comes out into the
 * pending batch of each record's lane. Worker results are applied in the order the batches were sent.
 */
export class Dispatcher {
  private readonly targets: Map<string, CopyTarget>;
  private readonly ctx: StageContext;
  private readonly workers: StageWorkers | undefined;
  /** Batches sent to the stage workers whose results are not yet in the pending batches; applied in order. */
  private processing: Promise<void>[] = [];
  private applied: Promise<void> = Promise.resolve();
  /** A batch has gone to the workers: every later one goes there too, so that results stay in order. */
  private sentToWorkers = false;

  constructor(private readonly o: DispatchOptions) {
    this.targets = copyTargets(o.executor);
    this.ctx = {
      deadLetter: o.deadLetter,
      late: (r, stage) => o.late(stage, 1, r),
    };
    if (o.threads > 0) {
      if (!o.planRef) throw new Error('stage threads need a planRef to build the plan in each worker');
      if (o.executor.stateful.length || o.executor.globalTables.size || this.targets.size !== o.executor.sinks.length) {
        throw new Error('stage threads run plans without state stores or global tables whose sinks are all Postgres tables');
      }
      this.workers = new StageWorkers(o.threads, o.planRef, o.directJson);
    }
  }

  /**
   * From now on, the direct reader's rows for sink go in COPY's binary format when its columns' Postgres types allow
   * it (runtime/batch.ts useBinaryCopy), here and in every stage worker; whether they will.
   */
  useBinaryCopy(sink: string, types: readonly string[] | undefined): boolean {
    this.workers?.tell({ binaryCopy: { sink, types } });
    return useBinaryCopy(this.targets, sink, types);
  }

  /** Batches a worker may hold, in flight or waiting, before the loop waits: the workers' backpressure. */
  get busy(): boolean {
    return this.workers !== undefined && this.processing.length > 2 * this.workers.threads;
  }

  /** Whether a batch must be prepared (Stage.prepare) on the main thread before it is taken. */
  get preparesHere(): boolean {
    return this.o.executor.needsPrepare && !this.workers;
  }

  /** One lane's part of a poll: run here now, or sent to a worker (its result is applied after every earlier one). */
  dispatch(batch: PackedBatch): void {
    // Until the workers have built their plan, batches run here, as they would with no workers (a plan that prepares
    // its batches, e.g. with a schema fetch, prepares them in the worker, so it waits for the workers). A worker that
    // failed gets the batch, which fails with its reason: the run stops rather than go on without it unnoticed.
    const early = this.workers && !this.sentToWorkers && !this.workers.ready && !this.workers.failedWith && !this.o.executor.needsPrepare;
    if (!this.workers || early) {
      this.apply(batch);
      return;
    }
    this.sentToWorkers = true;
    const result = this.workers.run(batch);
    result.catch(() => undefined); // seen through the chain below
    const done = this.applied.then(() => result).then((r) => this.applyWorkerResult(r));
    done.catch(() => undefined); // a worker's failure is thrown to whoever waits for the batch: the run loop
    this.applied = done;
    this.processing.push(done);
  }

  /** Waits for the oldest batch at a worker (a worker's failure is thrown). */
  async next(): Promise<void> {
    await this.processing.shift();
  }

  /** Waits until every batch sent to the stage workers is in the pending batches (a worker's failure is thrown). */
  async drain(): Promise<void> {
    if (!this.processing.length) return;
    const all = this.processing;
    this.processing = [];
    for (const p of all) await p;
  }

  async close(): Promise<void> {
    await this.workers?.close();
  }

  /** Runs a batch on the main thread; its rows and records join the pending batch of their lane. */
  private apply(batch: PackedBatch): void {
    const out = runBatch(this.o.executor, batch, this.ctx, this.targets);
    const pending = this.o.pendingOf(batch.partitions[0]);
    for (const [name, rows] of out.copy) addRows(pending, name, rows, batch);
    for (const [name, records] of out.other) for (const r of records) this.o.pendingOf(r.partition).add(name, r);
    this.o.stages(out.stages);
  }

  /** The rows and dead letters of a batch the workers ran; its records are looked at again only if rejected. */
  private applyWorkerResult(r: WorkerResult): void {
    const batch = r.batch;
    for (const d of r.deadLetters) this.ctx.deadLetter(recordOf(batch, d.src), d.reason, d.message);
    for (const [stage, count] of r.late) this.o.late(stage, count);
    const pending = this.o.pendingOf(batch.partitions[0]);
    for (const c of r.copy) addRows(pending, c.name, c, batch);
    this.o.stages(r.stages);
  }
}

/** A batch's rows for a sink, as a segment of the pending batch; a row's record is made again from the batch if needed. */
function addRows(pending: PendingBatch, name: string, rows: Omit<BatchRows, 'text'> & { text: Uint8Array }, batch: PackedBatch): void {
  if (!rows.src.length) return;
  pending.add(name, {
    text: Buffer.from(rows.text.buffer, rows.text.byteOffset, rows.text.byteLength), ends: rows.ends, keyHashes: rows.keyHashes, keyAt: rows.keyAt, keyFields: rows.keyFields, binary: rows.binary,
    record: (i: number) => recordOf(batch, rows.src[i]),
  });
}

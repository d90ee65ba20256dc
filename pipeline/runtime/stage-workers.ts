import { Worker, type WorkerOptions } from 'node:worker_threads';
import { batchBuffers, type PackedBatch } from '../sources/packed-batch.ts';
import type { StageCounts } from '../dsl/executor.ts';
import type { DeadLetterReason } from '../errors.ts';
import type { BatchRows } from './batch.ts';

/** Starts a worker thread on a TypeScript module: new Worker(TS_WORKER, { workerData: { entry: <file URL>, ... } }). */
export const TS_WORKER = new URL('./ts-worker.mjs', import.meta.url);

/**
 * A module beside `base` (the caller's import.meta.url), named as its source is (`./x.ts`): the compiled `x.js` when
 * the caller is itself compiled JavaScript (dist/, what `npm run topology` runs once built), else the source.
 */
export function sibling(name: string, base: string): string {
  const href = new URL(name, base).href;
  return base.endsWith('.js') ? href.replace(/\.ts$/, '.js') : href;
}

/**
 * Starts a worker thread on a module (a file URL, as sibling gives it): a TypeScript source through TS_WORKER,
 * which registers tsx in that thread first; compiled JavaScript as it is. `workerData.entry` is the module.
 */
export function startWorker(entry: string, workerData: object, options: Omit<WorkerOptions, 'workerData'> = {}): Worker {
  return entry.endsWith('.ts')
    ? new Worker(TS_WORKER, { ...options, workerData: { ...workerData, entry } })
    : new Worker(new URL(entry), { ...options, workerData: { ...workerData, entry } });
}

/**
 * Where a stage worker gets its plan: a module and an exported function that builds it, with the arguments the
 * topology built its own with (plain values). Each worker builds its own copy, as each Kafka Streams thread has
 * its own instance of the topology's processors.
 */
export interface PlanRef {
  module: string;
  export: string;
  args: unknown[];
}

/** A polled batch as it crosses to a worker: its buffers are transferred there and back, nothing is copied. */
export type WorkerBatch = PackedBatch & { id: number };

/** A sink's rows of a batch, as they come back from a worker (the text's Buffer arrives as a plain Uint8Array). */
export type WorkerCopyOutput = Omit<BatchRows, 'text'> & { name: string; text: Uint8Array };

/** A setting every worker takes before the batches sent after it: the sink whose rows go in binary, with its column types. */
export interface WorkerSetting {
  binaryCopy: { sink: string; types: readonly string[] | undefined };
}

/** What a worker posts once, when its plan is built and it takes batches. */
export interface WorkerReady {
  ready: true;
}

export interface WorkerResult {
  id: number;
  /** The batch as sent, handed back (its buffers transferred both ways): what dead letters and rejected rows are made of. */
  batch: WorkerBatch;
  copy: WorkerCopyOutput[];
  deadLetters: { src: number; reason: DeadLetterReason; message: string }[];
  late: [stage: string, count: number][];
  stages: StageCounts[];
  error?: string;
}

/**
 * Stage workers: worker threads that run a stateless plan's stages and COPY encoding, so that the main thread, which
 * must also read from Kafka (node-rdkafka cannot run in a worker), is left with reading, bookkeeping and the
 * flushes. Batches go round-robin; results come back per batch, in any order, and the caller applies them in the
 * order it sent them.
 */
export class StageWorkers {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (r: WorkerResult) => void; reject: (e: Error) => void }>();
  private next = 0;
  private failed: Error | undefined;
  private readyCount = 0;

  constructor(threads: number, plan: PlanRef, directJson = true) {
    for (let i = 0; i < threads; i++) {
      const w = startWorker(sibling('./stage-worker.ts', import.meta.url), { plan, directJson }, {
        // A worker holds a polled batch or two, run 128 records at a time (runtime/batch.ts) so that its objects die
        // young. Its young generation is capped small: a larger one spends less time in GC but raised the latency p99
        // and the steady RSS (`npm run bench -- latency`, `-- ingest`; docs/performance.md).
        resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 8 },
      });
      w.on('message', (r: WorkerResult | WorkerReady) => {
        if ('ready' in r) {
          this.readyCount++;
          return;
        }
        const p = this.waiting.get(r.id);
        if (!p) return;
        this.waiting.delete(r.id);
        if (r.error !== undefined) p.reject(new Error(`stage worker: ${r.error}`));
        else p.resolve(r);
      });
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`a stage worker exited with code ${code}`));
      });
      w.unref();
      this.workers.push(w);
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  /**
   * Every worker has built its plan. A worker loads its own module graph and builds the plan after the main thread
   * has started it: about half a second on two busy cores, which without this the first committed row waited for.
   */
  get ready(): boolean {
    return this.readyCount === this.workers.length;
  }

  /** A worker has failed (its plan could not be built, or it exited): every batch sent from now on is rejected with why. */
  get failedWith(): Error | undefined {
    return this.failed;
  }

  /** Runs a batch; its buffers are transferred (unusable here until the result hands them back). */
  run(packed: PackedBatch): Promise<WorkerResult> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    const batch: WorkerBatch = { ...packed, id };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.workers[id % this.workers.length].postMessage(batch, batchBuffers(batch));
    });
  }

  /** Sends a setting to every worker (before any batch sent after it). */
  tell(setting: WorkerSetting): void {
    for (const w of this.workers) w.postMessage(setting);
  }

  async close(): Promise<void> {
    this.failed ??= new Error('stage workers closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const p of this.waiting.values()) p.reject(err);
    this.waiting.clear();
  }
}

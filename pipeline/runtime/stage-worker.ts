import { parentPort, workerData } from 'node:worker_threads';
import { PlanExecutor } from '../dsl/executor.ts';
import { optimize } from '../dsl/optimize.ts';
import type { TopologyPlan } from '../dsl/plan.ts';
import { errorMessage } from '../errors.ts';
import type { StageContext, StreamRecord } from '../records.ts';
import { copyTargets, runBatch, useBinaryCopy, type Sourced } from './batch.ts';
import { retry } from './retry.ts';
import { registryGiveUpMs } from '../schema/registry.ts';
import { batchBuffers, batchSize, recordOf } from '../sources/packed-batch.ts';
import type { PlanRef, WorkerBatch, WorkerCopyOutput, WorkerReady, WorkerResult, WorkerSetting } from './stage-workers.ts';

/** The worker side of StageWorkers: builds the plan from its PlanRef, then runs every batch it is sent. */

const { plan: ref, directJson } = workerData as { plan: PlanRef; directJson: boolean };
const factory = (await import(ref.module))[ref.export] as (...args: unknown[]) => TopologyPlan;
const executor = new PlanExecutor(optimize(factory(...ref.args), { directJson }));
const targets = copyTargets(executor);
const port = parentPort!;
const stop = new AbortController();

async function handle(b: WorkerBatch): Promise<void> {
  const result: WorkerResult = { id: b.id, batch: b, copy: [], deadLetters: [], late: [], stages: [] };
  const transfer: ArrayBuffer[] = batchBuffers(b);
  try {
    const n = batchSize(b);
    let recordAt: ((i: number) => StreamRecord) | undefined;
    if (executor.needsPrepare) {
      const records = Array.from({ length: n }, (_, i) => recordOf(b, i));
      await retry('preparing the batch', () => executor.prepare(records), (line) => console.error(line), stop.signal, { giveUpAfterMs: registryGiveUpMs() });
      recordAt = (i) => records[i];
    }
    const late = new Map<string, number>();
    const ctx: StageContext = {
      deadLetter: (r, reason, message) => result.deadLetters.push({ src: (r as Sourced).src, reason, message }),
      late: (_r, stage) => late.set(stage, (late.get(stage) ?? 0) + 1),
    };
    const out = runBatch(executor, b, ctx, targets, recordAt);
    if (out.other.size) throw new Error(`stage workers only write Postgres append sinks, not ${[...out.other.keys()].join(', ')}`);
    for (const [name, e] of out.copy) {
      const c: WorkerCopyOutput = { name, ...e };
      // Each a view of an ArrayBuffer of its own (BatchRows): handed over, not copied.
      transfer.push(e.text.buffer as ArrayBuffer, c.ends.buffer as ArrayBuffer, c.src.buffer as ArrayBuffer);
      if (c.keyHashes) transfer.push(c.keyHashes.buffer as ArrayBuffer);
      result.copy.push(c);
    }
    result.late = [...late];
    result.stages = out.stages;
  } catch (err) {
    port.postMessage({ id: b.id, batch: b, copy: [], deadLetters: [], late: [], stages: [], error: errorMessage(err) } satisfies WorkerResult, batchBuffers(b));
    return;
  }
  port.postMessage(result, transfer);
}

// One batch at a time, in the order they came: prepare() may wait (a schema fetch), and batches must not overtake.
let queue = Promise.resolve();
port.on('message', (m: WorkerBatch | WorkerSetting) => {
  if ('binaryCopy' in m) {
    useBinaryCopy(targets, m.binaryCopy.sink, m.binaryCopy.types);
    return;
  }
  queue = queue.then(() => handle(m));
});
// The plan is built: from now on the main thread sends its batches here (until then it runs them itself).
port.postMessage({ ready: true } satisfies WorkerReady);

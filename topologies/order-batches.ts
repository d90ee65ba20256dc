import {
  sibling, startWorker,
} from '../pipeline/index.ts';
import type { Worker } from 'node:worker_threads';
import { INVALID_KINDS, type EventTimeOptions, type InvalidKind } from './order-factory.ts';

/** What the generator's worker makes for one request: n orders as bytes, ready to produce. */
export interface OrderBatch {
  /** Every value's bytes back to back (Confluent wire format when a schema id was given). */
  values: Uint8Array;
  valueEnds: Uint32Array;
  keys: string[];
  /** The keys' bytes back to back, as producePacked takes them. */
  keyBytes: Uint8Array;
  keyEnds: Uint32Array;
  /** 0 for a valid order, else 1 + the index of its kind in INVALID_KINDS. */
  invalid: Uint8Array;
  late: Uint8Array;
}

export interface OrderBatchOptions {
  seed: number;
  invalidRatio: number;
  time: EventTimeOptions;
  /** Prefix each value with the Confluent wire format header of this schema id. */
  schemaId?: number;
}

export const invalidKindOf = (code: number): InvalidKind | undefined => (code === 0 ? undefined : INVALID_KINDS[code - 1]);

/**
 * The generator's orders made in a worker thread (topologies/order-batches-worker.ts), a batch per request, in
 * request order from one seeded factory, so --seed gives the same orders as before. The main thread is left with
 * handing each batch to librdkafka (KafkaProducer.producePacked), which node-rdkafka can only do there.
 */
export class OrderBatches {
  private readonly worker: Worker;
  private readonly waiting: { resolve: (b: OrderBatch) => void; reject: (e: Error) => void }[] = [];
  private failed: Error | undefined;

  constructor(o: OrderBatchOptions) {
    this.worker = startWorker(sibling('./order-batches-worker.ts', import.meta.url), { options: o });
    this.worker.on('message', (b: OrderBatch) => this.waiting.shift()?.resolve(b));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the order worker exited with code ${code}`)));
    this.worker.unref();
  }

  /** n orders stamped with now (their ids' time, and event time on the wall clock). */
  next(n: number, now: number): Promise<OrderBatch> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.worker.postMessage({ n, now });
    });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('the order worker was closed');
    await this.worker.terminate();
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }
}

import { Worker } from 'node:worker_threads';
import type Kafka from 'node-rdkafka';
import type { Headers } from '../kafka/producer.ts';
import type { StreamRecord } from '../records.ts';
import { lineStart } from '../sinks/copy-segment.ts';

/** Starts a worker thread on a TypeScript module: new Worker(TS_WORKER, { workerData: { entry: <file URL>, ... } }). */
export const TS_WORKER = new URL('./ts-worker.mjs', import.meta.url);

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

/** A polled batch as it crosses to a worker: the bytes packed into one transferred buffer, the rest in typed arrays. */
export interface WorkerBatch {
  id: number;
  topic: string;
  /** Every value's bytes back to back; a null value (tombstone) is marked in nullValue. */
  values: Uint8Array;
  valueEnds: Uint32Array;
  nullValue: Uint8Array;
  keys: Uint8Array;
  keyEnds: Uint32Array;
  nullKey: Uint8Array;
  partitions: Int32Array;
  offsets: Float64Array;
  /** NaN for no timestamp. */
  timestamps: Float64Array;
  /** Only when some message has headers. */
  headers?: (Headers | undefined)[];
}

export interface WorkerCopyOutput {
  name: string;
  text: Uint8Array;
  ends: Uint32Array;
  keys: string[] | undefined;
  /** The message each row came from (index in the batch). */
  src: Uint32Array;
}

export interface WorkerResult {
  id: number;
  /** The batch as sent, handed back (its buffers transferred both ways): what dead letters and rejected rows are made of. */
  batch: WorkerBatch;
  copy: WorkerCopyOutput[];
  deadLetters: { src: number; reason: string; message: string }[];
  late: [stage: string, count: number][];
  error?: string;
}

/** Packs messages for a worker; only the buffers are transferred, nothing is copied twice. */
export function packBatch(id: number, topic: string, messages: Kafka.Message[]): { batch: WorkerBatch; transfer: ArrayBuffer[] } {
  const n = messages.length;
  let valueBytes = 0;
  let keyBytes = 0;
  let withHeaders = false;
  for (const m of messages) {
    if (m.value) valueBytes += m.value.length;
    if (m.key) keyBytes += typeof m.key === 'string' ? Buffer.byteLength(m.key) : m.key.length;
    if (m.headers?.length) withHeaders = true;
  }
  // Slow (unpooled) allocations: each owns its ArrayBuffer, which is what is transferred.
  const values = Buffer.allocUnsafeSlow(valueBytes);
  const keys = Buffer.allocUnsafeSlow(keyBytes);
  const valueEnds = new Uint32Array(n);
  const keyEnds = new Uint32Array(n);
  const nullValue = new Uint8Array(n);
  const nullKey = new Uint8Array(n);
  const partitions = new Int32Array(n);
  const offsets = new Float64Array(n);
  const timestamps = new Float64Array(n);
  let v = 0;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const m = messages[i];
    if (m.value) {
      values.set(m.value, v);
      v += m.value.length;
    } else nullValue[i] = 1;
    valueEnds[i] = v;
    if (m.key === null || m.key === undefined) nullKey[i] = 1;
    else if (typeof m.key === 'string') k += keys.write(m.key, k);
    else {
      keys.set(m.key, k);
      k += m.key.length;
    }
    keyEnds[i] = k;
    partitions[i] = m.partition;
    offsets[i] = m.offset;
    timestamps[i] = m.timestamp ?? NaN;
  }
  const batch: WorkerBatch = {
    id, topic, values, valueEnds, nullValue, keys, keyEnds, nullKey, partitions, offsets, timestamps,
    headers: withHeaders ? messages.map((m) => m.headers as Headers | undefined) : undefined,
  };
  return { batch, transfer: batchBuffers(batch) };
}

export function batchBuffers(b: WorkerBatch): ArrayBuffer[] {
  return [b.values, b.keys, b.valueEnds, b.keyEnds, b.nullValue, b.nullKey, b.partitions, b.offsets, b.timestamps].map((a) => a.buffer as ArrayBuffer);
}

/** Bytes i of a packed buffer, viewed in place. */
function view(bytes: Uint8Array, ends: Uint32Array, i: number): Buffer {
  const start = lineStart(ends, i);
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, ends[i] - start);
}

/** Message i of a packed batch as a record, its bytes viewed in place. */
export function recordOf(b: WorkerBatch, i: number): StreamRecord {
  const raw = b.nullValue[i] ? null : view(b.values, b.valueEnds, i);
  const rawKey = b.nullKey[i] ? null : view(b.keys, b.keyEnds, i);
  const ts = b.timestamps[i];
  return {
    topic: b.topic, partition: b.partitions[i], offset: b.offsets[i], timestamp: Number.isNaN(ts) ? undefined : ts,
    rawKey, key: rawKey === null ? null : rawKey.toString(), headers: b.headers?.[i], raw, value: raw,
  };
}

/**
 * Stage workers: worker threads that run a stateless plan's stages and COPY encoding, so that the main thread, which
 * must also turn every Kafka message into a JavaScript object (node-rdkafka cannot run in a worker), is left with
 * reading, bookkeeping and the flushes. Batches go round-robin; results come back per batch, in any order, and the
 * caller applies them in the order it sent them.
 */
export class StageWorkers {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (r: WorkerResult) => void; reject: (e: Error) => void }>();
  private next = 0;
  private failed: Error | undefined;

  constructor(threads: number, plan: PlanRef) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(TS_WORKER, {
        workerData: { entry: new URL('./stage-worker.ts', import.meta.url).href, plan },
        // A worker holds a polled batch or two. Its young generation is capped small: V8's default (or 32 MB) spends
        // less time in GC, but produce-to-row p99 at 20k records/s rose from ~490 ms to 640-1,760 ms and the steady RSS
        // from ~265 to ~300 MB (`npm run bench -- latency`, `-- ingest`); at 8 MB GC takes ~15% of the worker's time.
        resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 8 },
      });
      w.on('message', (r: WorkerResult) => {
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

  run(topic: string, messages: Kafka.Message[]): Promise<WorkerResult> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    const { batch, transfer } = packBatch(id, topic, messages);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.workers[id % this.workers.length].postMessage(batch, transfer);
    });
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

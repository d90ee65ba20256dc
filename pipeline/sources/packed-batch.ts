import type Kafka from 'node-rdkafka';
import type { Headers } from '../kafka/producer.ts';
import type { StreamRecord } from '../records.ts';
import { lineStart } from '../sinks/copy-segment.ts';

/**
 * A polled batch of one topic's messages in flat arrays, as KafkaSource.poll returns it and as it crosses to a stage
 * worker: no object per message. librdkafka's messages are copied into it on node-rdkafka's consume thread
 * (`consumePacked`, patches/node-rdkafka-packed.patch); the main thread only wraps one ArrayBuffer.
 */
export interface PackedBatch {
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
  /** As librdkafka gives it: -1 when the message has none. */
  timestamps: Float64Array;
  /** Only when some message has headers: message i's at index i. */
  headers?: (Headers | undefined)[];
}

export const batchSize = (b: PackedBatch): number => b.partitions.length;

/**
 * The batch in the layout of node-rdkafka's consumePacked: offsets f64[n], timestamps f64[n], partitions i32[n],
 * value ends u32[n], key ends u32[n], null value u8[n], null key u8[n], values, keys. Views, not copies.
 */
export function unpackNative(buffer: ArrayBuffer, n: number, valueBytes: number, keyBytes: number, topic: string, headers?: (Headers | undefined)[]): PackedBatch {
  let at = 0;
  const take = <T>(make: (at: number) => T, bytes: number): T => {
    const out = make(at);
    at += bytes;
    return out;
  };
  return {
    topic,
    offsets: take((a) => new Float64Array(buffer, a, n), 8 * n),
    timestamps: take((a) => new Float64Array(buffer, a, n), 8 * n),
    partitions: take((a) => new Int32Array(buffer, a, n), 4 * n),
    valueEnds: take((a) => new Uint32Array(buffer, a, n), 4 * n),
    keyEnds: take((a) => new Uint32Array(buffer, a, n), 4 * n),
    nullValue: take((a) => new Uint8Array(buffer, a, n), n),
    nullKey: take((a) => new Uint8Array(buffer, a, n), n),
    values: take((a) => new Uint8Array(buffer, a, valueBytes), valueBytes),
    keys: take((a) => new Uint8Array(buffer, a, keyBytes), keyBytes),
    headers,
  };
}

/** The ArrayBuffers a batch's arrays live in, each once: what is transferred to and from a worker. */
export function batchBuffers(b: PackedBatch): ArrayBuffer[] {
  const all = [b.values, b.keys, b.valueEnds, b.keyEnds, b.nullValue, b.nullKey, b.partitions, b.offsets, b.timestamps].map((a) => a.buffer as ArrayBuffer);
  return [...new Set(all)];
}

/** Bytes i of a packed buffer, viewed in place. */
function view(bytes: Uint8Array, ends: Uint32Array, i: number): Buffer {
  const start = lineStart(ends, i);
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, ends[i] - start);
}

/** Message i as a record, its bytes viewed in place. */
export function recordOf(b: PackedBatch, i: number): StreamRecord {
  const raw = b.nullValue[i] ? null : view(b.values, b.valueEnds, i);
  const rawKey = b.nullKey[i] ? null : view(b.keys, b.keyEnds, i);
  const ts = b.timestamps[i];
  return {
    topic: b.topic, partition: b.partitions[i], offset: b.offsets[i], timestamp: ts < 0 ? undefined : ts,
    rawKey, key: rawKey === null ? null : rawKey.toString(), headers: b.headers?.[i], raw, value: raw,
  };
}

/** A new batch of the messages at the given indices, in that order, copied into buffers of its own. */
export function selectBatch(b: PackedBatch, indices: ArrayLike<number>): PackedBatch {
  const n = indices.length;
  let valueBytes = 0;
  let keyBytes = 0;
  for (let j = 0; j < n; j++) {
    const i = indices[j];
    valueBytes += b.valueEnds[i] - lineStart(b.valueEnds, i);
    keyBytes += b.keyEnds[i] - lineStart(b.keyEnds, i);
  }
  const out = allocate(b.topic, n, valueBytes, keyBytes);
  let v = 0;
  let k = 0;
  for (let j = 0; j < n; j++) {
    const i = indices[j];
    const vs = lineStart(b.valueEnds, i);
    out.values.set(b.values.subarray(vs, b.valueEnds[i]), v);
    v += b.valueEnds[i] - vs;
    out.valueEnds[j] = v;
    const ks = lineStart(b.keyEnds, i);
    out.keys.set(b.keys.subarray(ks, b.keyEnds[i]), k);
    k += b.keyEnds[i] - ks;
    out.keyEnds[j] = k;
    out.nullValue[j] = b.nullValue[i];
    out.nullKey[j] = b.nullKey[i];
    out.partitions[j] = b.partitions[i];
    out.offsets[j] = b.offsets[i];
    out.timestamps[j] = b.timestamps[i];
  }
  if (b.headers) out.headers = Array.from({ length: n }, (_, j) => b.headers![indices[j]]);
  return out;
}

/**
 * Packs node-rdkafka messages as consumePacked would: for tests that build batches by hand.
 */
export function packMessages(topic: string, messages: Kafka.Message[]): PackedBatch {
  const n = messages.length;
  const bytes = (x: Buffer | string | null | undefined) => (x === null || x === undefined ? undefined : typeof x === 'string' ? Buffer.from(x) : x);
  let valueBytes = 0;
  let keyBytes = 0;
  for (const m of messages) {
    valueBytes += m.value?.length ?? 0;
    keyBytes += bytes(m.key)?.length ?? 0;
  }
  const out = allocate(topic, n, valueBytes, keyBytes);
  let v = 0;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const m = messages[i];
    if (m.topic !== topic) throw new Error(`packMessages: a message of ${m.topic} in a batch of ${topic}`);
    if (m.value) {
      out.values.set(m.value, v);
      v += m.value.length;
    } else out.nullValue[i] = 1;
    out.valueEnds[i] = v;
    const key = bytes(m.key);
    if (key) {
      out.keys.set(key, k);
      k += key.length;
    } else out.nullKey[i] = 1;
    out.keyEnds[i] = k;
    out.partitions[i] = m.partition;
    out.offsets[i] = m.offset;
    out.timestamps[i] = m.timestamp ?? -1;
  }
  if (messages.some((m) => m.headers?.length)) out.headers = messages.map((m) => (m.headers?.length ? m.headers : undefined));
  return out;
}

/** One ArrayBuffer for the whole batch, laid out as consumePacked lays it out. */
function allocate(topic: string, n: number, valueBytes: number, keyBytes: number): PackedBatch {
  return unpackNative(new ArrayBuffer(30 * n + valueBytes + keyBytes), n, valueBytes, keyBytes, topic);
}

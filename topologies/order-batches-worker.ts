import {
  encodeWireFormat,
} from '../pipeline/builder.ts';
import { parentPort, workerData } from 'node:worker_threads';
import type { OrderBatch, OrderBatchOptions } from './order-batches.ts';
import { INVALID_KINDS, OrderFactory } from './order-factory.ts';

/** The worker side of OrderBatches: one factory, a batch of n orders per request, their bytes transferred. */
const o = (workerData as { options: OrderBatchOptions }).options;
const factory = new OrderFactory(o.seed, o.invalidRatio, o.time);
const port = parentPort!;

port.on('message', ({ n, now }: { n: number; now: number }) => {
  const keys: string[] = new Array(n);
  const texts: string[] = new Array(n);
  const invalid = new Uint8Array(n);
  const late = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const g = factory.next(now);
    keys[i] = g.key;
    texts[i] = g.value;
    if (g.invalid) invalid[i] = 1 + INVALID_KINDS.indexOf(g.invalid);
    if (g.late) late[i] = 1;
  }
  const valueEnds = new Uint32Array(n);
  let values: Buffer;
  if (o.schemaId === undefined) {
    // Each text written straight into one buffer sized for the worst case (3 bytes a UTF-16 unit), then copied to its
    // exact size: joining 10,000 strings first and encoding the join cost twice as much.
    let chars = 0;
    for (const t of texts) chars += t.length;
    const room = Buffer.allocUnsafe(3 * chars);
    let at = 0;
    for (let i = 0; i < n; i++) valueEnds[i] = at += room.write(texts[i], at, 'utf8');
    values = Buffer.allocUnsafeSlow(at);
    room.copy(values, 0, 0, at);
  } else {
    const parts = texts.map((t) => encodeWireFormat(o.schemaId!, Buffer.from(t)));
    values = Buffer.concat(parts);
    let at = 0;
    for (let i = 0; i < n; i++) valueEnds[i] = at += parts[i].length;
  }
  // Keys are UUIDs: ASCII, 36 bytes each.
  const keyBytes = Buffer.from(keys.join(''), 'latin1');
  const keyEnds = new Uint32Array(n);
  for (let i = 0, at = 0; i < n; i++) keyEnds[i] = at += keys[i].length;
  const batch: OrderBatch = { values, valueEnds, keys, keyBytes, keyEnds, invalid, late };
  // Small buffers share a pool and cannot be handed over; those few are copied.
  const own = (b: Uint8Array) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
  port.postMessage(batch, [valueEnds.buffer, keyEnds.buffer, invalid.buffer, late.buffer, ...[values, keyBytes].filter(own).map((b) => b.buffer as ArrayBuffer)]);
});

import { compileSchema, loadSchema, type Validator } from '../pipeline/builder.ts';
import type { OrderBatch } from './order-batches.ts';

/** A payment of an order (schemas/payment.schema.json), keyed by order_id like the order. */
export interface Payment {
  order_id: string;
  amount: number;
  paid_at: string;
}

export const validatePayment = (): Validator<Payment> => compileSchema<Payment>(loadSchema('payment'));

/** The payments of some of a batch's valid orders, packed for producePacked. */
export interface PaymentBatch {
  values: Uint8Array;
  valueEnds: Uint32Array;
  keyBytes: Uint8Array;
  keyEnds: Uint32Array;
  count: number;
}

/**
 * Payments for a share (ratio) of a batch's valid orders: the amount is price × quantity to the cent, paid at the
 * order's event time plus a delay of up to delayMs (uniform, from rand), so the payments topic is out of event-time
 * order by up to delayMs. The key is the order's, so librdkafka's partitioner puts a payment in its order's partition.
 */
export function paymentsOf(batch: OrderBatch, o: { ratio: number; delayMs: number; rand: () => number; wireHeader: boolean }): PaymentBatch {
  const values: string[] = [];
  const keys: string[] = [];
  const text = new TextDecoder();
  for (let i = 0; i < batch.keys.length; i++) {
    if (batch.invalid[i] !== 0 || o.rand() >= o.ratio) continue;
    const start = (i === 0 ? 0 : batch.valueEnds[i - 1]) + (o.wireHeader ? 5 : 0);
    const order = JSON.parse(text.decode(batch.values.subarray(start, batch.valueEnds[i]))) as { order_id: string; price: number; quantity: number; ordered_at: string };
    const cents = Math.round(order.price * 100) * order.quantity;
    const paidAt = new Date(Date.parse(order.ordered_at) + Math.floor(o.rand() * (o.delayMs + 1))).toISOString();
    values.push(`{"order_id":"${order.order_id}","amount":${cents / 100},"paid_at":"${paidAt}"}`);
    keys.push(batch.keys[i]);
  }
  return { ...pack(values, 'values', 'valueEnds'), ...pack(keys, 'keyBytes', 'keyEnds'), count: values.length } as PaymentBatch;
}

function pack<B extends string, E extends string>(parts: string[], bytes: B, ends: E): Record<B, Uint8Array> & Record<E, Uint32Array> {
  const encoded = parts.map((p) => Buffer.from(p));
  const out = new Uint32Array(parts.length);
  let at = 0;
  encoded.forEach((b, i) => { at += b.length; out[i] = at; });
  return { [bytes]: Buffer.concat(encoded), [ends]: out } as Record<B, Uint8Array> & Record<E, Uint32Array>;
}

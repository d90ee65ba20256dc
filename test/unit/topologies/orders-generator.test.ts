import assert from 'node:assert/strict';
import { OrderFactory, UuidV7 } from '../../../topologies/orders-generator.ts';
import { validateOrder } from '../../../pipeline/schema/validator.ts';
import { invalidKindOf, OrderBatches } from '../../../topologies/order-batches.ts';

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('orders-generator', () => {
  it('makes RFC 9562 UUIDv7 ids that carry the time and sort in creation order', () => {
    const ids = new UuidV7();
    const now = Date.UTC(2026, 10, 28, 12);
    const list = Array.from({ length: 10_000 }, () => ids.next(now));
    for (const id of list.slice(0, 50)) assert.match(id, UUID7);
    assert.equal(parseInt(list[0].replace(/-/g, '').slice(0, 12), 16), now);
    assert.deepEqual([...list].sort(), list, 'monotonic within one millisecond');
    assert.equal(new Set(list).size, list.length);
  });

  it('produces valid orders, and with a ratio, invalid ones of every kind that the schema rejects', () => {
    const validate = validateOrder();
    const factory = new OrderFactory(42, 0.2);
    const kinds = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const o = factory.next();
      let ok = false;
      try {
        ok = validate(JSON.parse(o.value));
      } catch {
        ok = false;
      }
      assert.equal(ok, o.invalid === undefined, `${o.invalid ?? 'valid'}: ${o.value}`);
      kinds.set(o.invalid ?? 'valid', (kinds.get(o.invalid ?? 'valid') ?? 0) + 1);
    }
    assert.deepEqual([...kinds.keys()].sort(), ['malformed-json', 'missing-field', 'negative-quantity', 'valid', 'wrong-type']);
    assert.ok(Math.abs(5000 - kinds.get('valid')! - 1000) < 150, 'about 20% invalid');
  });

  it('writes a valid order exactly as JSON.stringify would, with the time of its event', () => {
    const factory = new OrderFactory(11, 0, { eventTimeStart: Date.UTC(2026, 10, 28, 23, 59, 59), stepMs: 7, outOfOrderMs: 3 });
    const start = Date.UTC(2026, 10, 28, 23, 59, 59);
    let last = 0;
    for (let i = 0; i < 200_000; i++) {
      const o = factory.next();
      const parsed = JSON.parse(o.value) as { order_id: string; order_number: number; ordered_at: string; price: number };
      assert.equal(o.value, JSON.stringify(parsed));
      assert.deepEqual(Object.keys(parsed), ['order_id', 'order_number', 'product', 'quantity', 'price', 'ordered_at']);
      assert.equal(o.key, parsed.order_id);
      assert.equal(parsed.order_number, i + 1);
      const at = Date.parse(parsed.ordered_at);
      assert.ok(at <= start + 7 * i && at >= start + 7 * i - 3, `event time of order ${i}`);
      last = at;
    }
    assert.ok(last > start + 1_000_000, 'the simulated clock moved on (and so did the cached time text)');
  });

  it('is reproducible from a seed', () => {
    const strip = (v: string) => v.replace(/"order_id":"[^"]+"/, '').replace(/"ordered_at":"[^"]+"/, '');
    const a = new OrderFactory(7, 0.1);
    const b = new OrderFactory(7, 0.1);
    for (let i = 0; i < 100; i++) {
      const x = a.next(1000);
      const y = b.next(1000);
      assert.equal(x.invalid, y.invalid);
      if (!x.invalid) assert.equal(strip(x.value), strip(y.value));
    }
  });

  it('makes in its worker thread the same orders, bytes and kinds as the factory for the same seed', async () => {
    const now = Date.UTC(2026, 10, 29, 12);
    const time = { eventTimeStart: now, stepMs: 5, lateRatio: 0.1 };
    const factory = new OrderFactory(9, 0.1, time);
    const batches = new OrderBatches({ seed: 9, invalidRatio: 0.1, time });
    try {
      for (const n of [1, 500, 3000]) {
        const b = await batches.next(n, now);
        assert.equal(b.keys.length, n);
        let start = 0;
        for (let i = 0; i < n; i++) {
          const o = factory.next(now);
          const value = Buffer.from(b.values.buffer, b.values.byteOffset + start, b.valueEnds[i] - start).toString();
          start = b.valueEnds[i];
          // Ids carry random bits, so compare everything but them.
          assert.equal(value.replace(/"order_id":"[0-9a-f-]*/, ''), o.value.replace(/"order_id":"[0-9a-f-]*/, ''));
          assert.match(b.keys[i], UUID7);
          assert.equal(invalidKindOf(b.invalid[i]), o.invalid);
          assert.equal(b.late[i] === 1, o.late);
        }
      }
    } finally {
      await batches.close();
    }
  });
});

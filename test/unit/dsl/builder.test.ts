import assert from 'node:assert/strict';
import { StreamsBuilder } from '../../../pipeline/dsl/builder.ts';
import { describeMermaid, describeText } from '../../../pipeline/dsl/plan.ts';
import type { Windowed } from '../../../pipeline/records.ts';
import { TopologyTestDriver } from '../../../pipeline/testing/test-driver.ts';
import { centsToDecimal, ordersRevenuePlan, type Revenue } from '../../../topologies/orders-revenue.ts';
import { validateOrder, type Order } from '../../../pipeline/schema/validator.ts';

describe('the DSL', () => {
  it('runs filter, mapValues, selectKey, flatMap, peek and branch in order', () => {
    const seen: number[] = [];
    const b = new StreamsBuilder('dsl-test');
    const [small, big] = b.stream<Buffer>('numbers')
      .mapValues((v) => Number(v.toString()))
      .filter((n) => n % 2 === 0)
      .peek((n) => seen.push(n))
      .flatMap((_k, n) => [{ key: `k${n}`, value: n }, { key: `k${n}`, value: n * 10 }])
      .selectKey((n) => (n >= 100 ? 'big' : 'small'))
      .branch((n) => n < 100, () => true);
    small.toTopic('small');
    big.mapValues((n) => n + 1).toTopic('big');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput(...[1, 2, 3, 4, 20].map((n) => ({ value: String(n) })));
    assert.deepEqual(seen, [2, 4, 20]);
    assert.deepEqual(d.readOutput('to-small').map((r) => [r.key, r.value]), [['small', 2], ['small', 20], ['small', 4], ['small', 40], ['small', 20]]);
    assert.deepEqual(d.readOutput('to-big').map((r) => [r.key, r.value]), [['big', 201]]);
  });

  it('gives each of two sinks on one stream records of its own', () => {
    const b = new StreamsBuilder('fan-out');
    const s = b.stream<Buffer>('in').mapValues((v) => ({ n: Number(v.toString()) }));
    s.mapValues((o) => o.n * 2).toTopic('doubled');
    s.toTopic('plain');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ value: '5' });
    assert.deepEqual(d.readOutput('to-doubled').map((r) => r.value), [10]);
    assert.deepEqual(d.readOutput('to-plain').map((r) => r.value), [{ n: 5 }]);
  });

  it('sends a record whose user function throws to the dead letters, and goes on', () => {
    const b = new StreamsBuilder('throws');
    b.stream<Buffer>('in').mapValues((v) => {
      if (v.toString() === 'bad') throw new Error('cannot map bad');
      return v.toString();
    }).toTopic('out');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ value: 'good' }, { value: 'bad' }, { value: 'fine' });
    assert.deepEqual(d.readOutput('to-out').map((r) => r.value), ['good', 'fine']);
    assert.equal(d.deadLetters.length, 1);
    assert.equal(d.deadLetters[0].reason, 'mapValues-failed');
    assert.equal(d.deadLetters[0].value?.toString(), 'bad');
  });

  it('validates with a schema, dead-lettering what does not parse or validate', () => {
    const b = new StreamsBuilder('validated');
    b.stream<Order>('orders', { schema: validateOrder() }).toTopic('out');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ value: '{nope' }, { value: { order_id: 'x' } }, { value: null });
    assert.deepEqual(d.deadLetters.map((x) => x.reason).sort(), ['malformed-json', 'schema', 'tombstone']);
  });

  it('hands back the COPY rows of a Postgres sink as Postgres reads them, and commits their offsets through the committer', () => {
    const b = new StreamsBuilder('rows');
    b.stream<{ id: string; note: string | null }>('in').mapValues((v) => JSON.parse(String(v)))
      .toPostgres({ table: 'notes', columns: ['id', 'note'], createSql: 'CREATE TABLE IF NOT EXISTS $TABLE (id text, note text)' });
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ value: { id: 'a', note: 'tab\there' } }, { value: { id: 'b', note: null } }, { value: 'not json' });
    assert.deepEqual(d.readRows('to-notes'), [['a', 'tab\there'], ['b', null]]);
    assert.deepEqual(d.deadLetters.map((x) => [x.sourceOffset, x.reason]), [[2, 'mapValues-failed']]);
    assert.throws(() => d.readOutput('to-notes'), /COPY sink/);
    assert.equal(d.committer.stored.get(0), undefined, 'nothing committed before commit()');
    d.commit();
    assert.equal(d.committer.stored.get(0), 3, 'the next offset after the three records');
    assert.deepEqual(d.committer.deadLetters.map((x) => x.sourceOffset), [2]);
    d.pipeInput({ value: { id: 'c', note: 'x' } });
    assert.deepEqual(d.readRows('to-notes'), [['c', 'x']], 'only what came since the last read');
  });

  it('describes sources, stages, stores and sinks as text and as Mermaid', () => {
    const plan = ordersRevenuePlan({ topic: 'orders', table: 'orders_revenue_1m', graceMs: 10_000 });
    const text = describeText(plan, 'orders.dlq');
    for (const part of ['source topic orders', 'validate', 'timestamp extractor', 'groupBy product',
      'tumbling windows (1m, grace 10s), emit final', 'store revenue-store, changelog orders-revenue-revenue-store-changelog',
      'Postgres table orders_revenue_1m', 'dead letters -> topic orders.dlq']) {
      assert.ok(text.includes(part), `${part} missing in\n${text}`);
    }
    const mermaid = describeMermaid(plan, 'orders.dlq');
    assert.match(mermaid, /^flowchart LR/);
    assert.match(mermaid, /store revenue-store/);
  });
});

describe('orders-revenue on the test driver', () => {
  const minute = Date.UTC(2026, 0, 1, 0, 0, 0);
  const order = (product: string, price: number, quantity: number, at: number): Order => ({
    order_id: crypto.randomUUID(), order_number: 1, product, quantity, price, ordered_at: new Date(at).toISOString(),
  });

  it('sums revenue per product per minute exactly, in cents', () => {
    const d = new TopologyTestDriver(ordersRevenuePlan({ topic: 'orders', table: 'rev', graceMs: 10_000 }));
    // 0.1 + 0.2 style sums that floating point gets wrong: 3 x 0.07 + 1.1 x 3 = 3.51
    d.pipeInput(...[order('Lamp', 0.07, 3, minute + 1000), order('Lamp', 1.1, 3, minute + 2000), order('Desk', 199.99, 1, minute + 59_999)]
      .map((o) => ({ value: o, timestamp: 0 })));
    d.pipeInput({ value: order('Lamp', 1, 1, minute + 60_000 + 10_000) });
    const out = d.readOutput<Revenue>('to-rev').map((r) => [(r.key as Windowed<string>).key, r.value.orders, r.value.quantity, centsToDecimal(r.value.cents)]);
    assert.deepEqual(out.sort(), [['Desk', 1, 1, '199.99'], ['Lamp', 2, 6, '3.51']]);
  });

  it('formats cents as an exact decimal', () => {
    assert.equal(centsToDecimal(0), '0.00');
    assert.equal(centsToDecimal(7), '0.07');
    assert.equal(centsToDecimal(123456789), '1234567.89');
    assert.equal(centsToDecimal(-5), '-0.05');
  });
});

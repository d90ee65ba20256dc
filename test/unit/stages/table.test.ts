import assert from 'node:assert/strict';
import { StreamsBuilder } from '../../../pipeline/dsl/builder.ts';
import { describeMermaid, describeText } from '../../../pipeline/dsl/plan.ts';
import { TopologyTestDriver } from '../../../pipeline/testing/test-driver.ts';
import { JoinWindows, TimeWindows } from '../../../pipeline/windows/windows.ts';

const json = (v: Buffer | null) => (v === null ? null : JSON.parse(String(v)) as Record<string, unknown>);

describe('tables', () => {
  it('a stream joined with a table takes the key\'s value as the record is processed: updates and deletes apply to later records', () => {
    const b = new StreamsBuilder('stream-table');
    const prices = b.table('prices').toStream().mapValues(json).toTable();
    const orders = b.stream('orders').mapValues(json);
    orders.leftJoin(prices, (o, p) => `${o!.item}@${p ? p.price : 'none'}`, { store: 'prices-store' }).toTopic('priced');
    orders.join(prices, (o, p) => `${o!.item}@${p!.price}`, { store: 'prices-inner' }).toTopic('priced-inner');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ topic: 'prices', key: 'pen', value: { price: 2 } }, { topic: 'orders', key: 'pen', value: { item: 'pen' } }, { topic: 'orders', key: 'ink', value: { item: 'ink' } });
    d.pipeInput({ topic: 'prices', key: 'pen', value: { price: 3 } }, { topic: 'orders', key: 'pen', value: { item: 'pen' } });
    d.pipeInput({ topic: 'prices', key: 'pen', value: null }, { topic: 'orders', key: 'pen', value: { item: 'pen' } });
    assert.deepEqual(d.readOutput('to-priced').map((r) => r.value), ['pen@2', 'ink@none', 'pen@3', 'pen@none']);
    assert.deepEqual(d.readOutput('to-priced-inner').map((r) => r.value), ['pen@2', 'pen@3'], 'an inner join drops what the table lacks');
    assert.deepEqual(d.store('prices-store'), new Map(), 'the deletion is in the store');
  });

  it('a table joined with a table emits each key\'s new join on an update of either side, and a deletion when its result goes away', () => {
    const b = new StreamsBuilder('table-table');
    const users = b.table('users');
    const emails = b.table('emails');
    users.join(emails, (u, e) => `${u}<${e}>`, { store: 'inner' }).toStream().toTopic('inner');
    users.leftJoin(emails, (u, e) => `${u}<${e ?? '?'}>`, { store: 'left' }).toStream().toTopic('left');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ topic: 'users', key: 'u1', value: 'ann' }, { topic: 'emails', key: 'u1', value: 'a@x' }, { topic: 'emails', key: 'u1', value: 'ann@x' });
    d.pipeInput({ topic: 'emails', key: 'u1', value: null }, { topic: 'users', key: 'u1', value: null });
    const values = (sink: string) => d.readOutput(sink).map((r) => (r.value === null ? null : String(r.value)));
    assert.deepEqual(values('to-inner'), ['ann<a@x>', 'ann<ann@x>', null]);
    assert.deepEqual(values('to-left'), ['ann<?>', 'ann<a@x>', 'ann<ann@x>', 'ann<?>', null]);
  });

  it('groupByKey().count() is a table whose every update goes downstream, restored from its changelog after a crash', () => {
    const plan = () => {
      const b = new StreamsBuilder('counts');
      b.stream('clicks').groupByKey().count({ store: 'click-counts' }).toStream().toTopic('counts');
      return b.build();
    };
    const d = new TopologyTestDriver(plan());
    d.pipeInput({ key: 'a', value: 'x' }, { key: 'b', value: 'x' }, { key: 'a', value: 'x' });
    d.commit();
    d.pipeInput({ key: 'a', value: 'x' });
    d.commit({ crashBeforeCommit: true });
    assert.deepEqual(d.readOutput('to-counts').map((r) => [r.key, r.value]), [['a', 1], ['b', 1], ['a', 2], ['a', 3]]);
    const restarted = new TopologyTestDriver(plan(), { restoreFrom: d });
    assert.deepEqual(restarted.store('click-counts'), new Map([['a', 2], ['b', 1]]), 'as of the committed offsets');
    restarted.pipeInput({ key: 'a', value: 'x' });
    assert.deepEqual(restarted.readOutput('to-counts').map((r) => [r.key, r.value]), [['a', 3]]);
  });

  it('describes a table join under both parents', () => {
    const ok = new StreamsBuilder('described');
    ok.stream('orders').leftJoin(ok.table('prices'), (o) => o, { store: 'p' }).toTopic('out');
    const text = describeText(ok.build(), 'orders.dlq');
    assert.match(text, /left join table \(its value as the record is processed\) \(n\d+\) \[store p, changelog described-p-changelog\]/);
    assert.match(text, /left join table .*\(n\d+, above\)/);
  });
});

describe('repartition topics', () => {
  it('a changed key goes through <application-id>-<name>-repartition before a join, as sub-topologies of their own', () => {
    const b = new StreamsBuilder('by-product');
    const products = b.table('products').toStream().mapValues(json).toTable();
    b.stream('orders').mapValues(json).selectKey((o): string | null => String(o!.product))
      .leftJoin(products, (o, p) => `${o!.id}:${p ? p.category : 'unknown'}`, { store: 'categories' }).toTopic('enriched');
    const plan = b.build();
    assert.deepEqual(plan.subtopologies!.map((s) => s.inputs), [['products', 'by-product-categories-left-repartition'], ['orders']]);
    const text = describeText(plan, 'orders.dlq');
    assert.match(text, /sink {3}topic by-product-categories-left-repartition \(repartition by the new key\)/);
    assert.match(describeMermaid(plan, 'orders.dlq'), /n\d+ -\. repartition \.-> n\d+/);
    assert.match(text, /sub-topology 0: reads products, by-product-categories-left-repartition \(co-partitioned\)\n {2}sub-topology 1: reads orders/);
    const d = new TopologyTestDriver(plan);
    d.pipeInput({ topic: 'products', key: 'pen', value: { category: 'office' } });
    d.pipeInput({ topic: 'orders', key: 'o1', value: { id: 'o1', product: 'pen' } }, { topic: 'orders', key: 'o2', value: { id: 'o2', product: 'kettle' } });
    assert.deepEqual(d.readOutput('to-enriched').map((r) => [r.key, r.value]), [['pen', 'o1:office'], ['kettle', 'o2:unknown']]);
    d.commit();
    assert.equal(d.committer.storedOf('by-product-categories-left-repartition').get(0), 2, 'the repartition topic\'s offsets commit with the rest');
  });

  it('groupBy(fn).count() counts each new key once across the partitions it came from', () => {
    const b = new StreamsBuilder('words');
    b.stream<Buffer>('lines').flatMap((_k, v) => String(v).split(' ').map((w) => ({ key: w, value: w })))
      .groupByKey().count({ store: 'word-counts' }).toStream().toTopic('counts');
    const d = new TopologyTestDriver(b.build(), { partitions: 2 });
    d.pipeInput({ value: 'a b a', partition: 0 }, { value: 'b a', partition: 1 });
    const last = new Map(d.readOutput('to-counts').map((r) => [r.key, r.value]));
    assert.deepEqual(last, new Map([['a', 3], ['b', 2]]));
  });

  it('a stream-stream join of a changed key closes by the lowest time of the upstream partitions', () => {
    const b = new StreamsBuilder('rekeyed-join');
    const ts = () => ({ name: 'ts', process: (batch: { value: unknown; timestamp: number | undefined }[]) => { for (const r of batch) r.timestamp = (r.value as { t: number }).t; return batch; } });
    const left = b.stream('left').mapValues(json).process('ts', ts as never).selectKey((v) => String((v as { k: string }).k));
    const right = b.stream('right').mapValues(json).process<string, unknown>('ts', ts as never);
    left.leftJoin(right, (l) => (l as { k: string }).k, JoinWindows.ofTimeDifferenceAndGrace(10, 0), { store: 'j' }).toTopic('out');
    const d = new TopologyTestDriver(b.build(), { partitions: 2 });
    // Two upstream partitions of the left side: upstream 1 is far ahead, upstream 0 behind; neither is late in its own.
    d.pipeInput({ topic: 'left', partition: 1, value: { k: 'x', t: 10_000 } }, { topic: 'left', partition: 0, value: { k: 'y', t: 100 } });
    assert.equal(d.lateRecords.length, 0, 'y is behind upstream 1, not behind its own partition');
    d.pipeInput({ topic: 'right', key: 'y', value: { t: 105 } });
    assert.deepEqual(d.readOutput('to-out').map((r) => r.value), ['y']);
  });
});

describe('windows after a repartition topic', () => {
  it('count a record late only behind its own upstream partition, and close at the lowest of them', () => {
    const b = new StreamsBuilder('rekeyed-windows');
    b.stream('events').mapValues(json).process('ts', () => ({ name: 'ts', process: (batch) => { for (const r of batch) r.timestamp = (r.value as { t: number }).t; return batch; } }))
      .selectKey((v) => String((v as { k: string }).k)).repartition({ name: 'by-k' })
      .groupByKey().windowedBy(TimeWindows.tumbling(1000, 0)).count({ store: 'counts' }).toStream().toTopic('windows');
    const d = new TopologyTestDriver(b.build(), { partitions: 2 });
    const e = (partition: number, t: number) => ({ topic: 'events', partition, value: { k: 'x', t } });
    d.pipeInput(e(1, 5_500), e(0, 100), e(0, 900));
    assert.equal(d.lateRecords.length, 0, 'upstream 0 is behind upstream 1, not behind itself');
    assert.deepEqual(d.readOutput('to-windows').map((r) => r.value), [], 'no window closed: upstream 0 is at 900');
    d.pipeInput(e(0, 2_000));
    assert.deepEqual(d.readOutput('to-windows').map((r) => [(r.key as { start: number }).start, r.value]), [[0, 2]], 'window [0, 1000) closed at the lowest stream time');
    d.pipeInput(e(0, 500));
    assert.equal(d.lateRecords.length, 1, 'late behind its own upstream partition');
  });
});

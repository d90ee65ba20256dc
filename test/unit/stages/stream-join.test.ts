import assert from 'node:assert/strict';
import { StreamsBuilder } from '../../../pipeline/dsl/builder.ts';
import { PlanExecutor } from '../../../pipeline/dsl/executor.ts';
import { Dispatcher } from '../../../pipeline/runtime/dispatch.ts';
import { PendingBatch } from '../../../pipeline/runtime/flush-plan.ts';
import { describeMermaid, describeText } from '../../../pipeline/dsl/plan.ts';
import { TopologyTestDriver, type TestInput } from '../../../pipeline/testing/test-driver.ts';
import { JoinWindows } from '../../../pipeline/windows/windows.ts';

const W = 10_000;
const GRACE = 2_000;
const T0 = Date.UTC(2026, 0, 1);

interface Side { id: string; t: number; v?: string }

/** left and right keyed by id, joined within W, grace GRACE, event time from t. */
function joinPlan(kind: 'inner' | 'left') {
  const b = new StreamsBuilder(`join-${kind}`);
  const timestamp = (x: Side) => x.t;
  const left = b.stream<Side>('left').mapValues((v) => JSON.parse(String(v)) as Side).process('time', () => ({
    name: 'time', process: (batch) => { for (const r of batch) r.timestamp = timestamp(r.value as Side); return batch; },
  }));
  const right = b.stream<Side>('right').mapValues((v) => JSON.parse(String(v)) as Side).process('time', () => ({
    name: 'time', process: (batch) => { for (const r of batch) r.timestamp = timestamp(r.value as Side); return batch; },
  }));
  const joiner = (l: Side, r: Side | null) => `${l.v ?? l.id}+${r ? r.v ?? r.id : 'none'}`;
  const windows = JoinWindows.ofTimeDifferenceAndGrace(W, GRACE);
  (kind === 'left' ? left.leftJoin(right, joiner, windows, { store: 'pairs' }) : left.join(right, joiner as never, windows, { store: 'pairs' }))
    .toTopic('joined');
  return b.build();
}

const l = (id: string, dt: number, v?: string, partition = 0): TestInput => ({ topic: 'left', key: id, value: { id, t: T0 + dt, v }, partition });
const r = (id: string, dt: number, v?: string, partition = 0): TestInput => ({ topic: 'right', key: id, value: { id, t: T0 + dt, v }, partition });

function run(kind: 'inner' | 'left', ...inputs: TestInput[]) {
  const d = new TopologyTestDriver(joinPlan(kind));
  for (const i of inputs) d.pipeInput(i);
  return { d, out: d.readOutput<string>('to-joined').map((x) => x.value) };
}

describe('stream-stream join', () => {
  it('joins records of the same key within the window, both ends included, and not one millisecond beyond', () => {
    const { d, out } = run('inner',
      l('a', 0, 'a0'), r('a', -W - 1, 'a-W-1'), r('a', -W, 'a-W'), r('a', W, 'a+W'), r('a', W + 1, 'a+W+1'), l('c', 0, 'c0'),
      r('b', 0, 'b0', 1), l('b', -W - 1, 'b-W-1', 1), l('b', W, 'bW', 1), l('b', W + 1, 'bW+1', 1));
    assert.deepEqual(out.sort(), ['a0+a+W', 'a0+a-W', 'bW+b0'].sort());
    assert.equal(d.lateRecords.length, 0);
  });

  it('left join: a left record that joined nothing is emitted with null once the right side has passed its window and grace, not before', () => {
    const { d, out } = run('left', l('x', 0), l('y', 0), r('y', 500));
    assert.deepEqual(out, ['y+y'], 'y joined; x is still open');
    d.pipeInput(r('z', W + GRACE)); // right stream time at the end of x's window plus grace: x may still join
    assert.deepEqual(d.readOutput('to-joined').map((x) => x.value), []);
    d.pipeInput(r('z', W + GRACE + 1));
    assert.deepEqual(d.readOutput('to-joined').map((x) => x.value), ['x+none'], 'x closed by the right side\'s time, y (joined) emits nothing more');
    d.pipeInput(r('x', W - 1, 'too late'));
    assert.deepEqual(d.readOutput('to-joined').map((x) => x.value), [], 'a right record more than grace behind its side is late');
    assert.equal(d.lateRecords.length, 1);
  });

  it('a left record whose right side has already closed its window is emitted with null at once (a replay read the right topic ahead)', () => {
    const { out } = run('left', r('q', 0), r('q', W * 5), l('q', 100), l('s', 200));
    assert.deepEqual(out, ['q+q', 's+none']);
  });

  it('counts a record late only against its own side: one behind the other side\'s time still joins', () => {
    const { d, out } = run('inner', r('b', 0), r('c', 1_000), r('x', 60_000), l('b', 500), l('c', 900));
    assert.deepEqual(out.sort(), ['b+b', 'c+c'], 'left records a minute behind the right side\'s time');
    assert.equal(d.lateRecords.length, 0);
    d.pipeInput(l('d', 900 - GRACE - 1));
    assert.equal(d.lateRecords.length, 1, 'more than grace behind its own side');
  });

  it('gives the same results however the reads of the two topics interleave', () => {
    const lefts: TestInput[] = [];
    const rights: TestInput[] = [];
    for (let i = 0; i < 200; i++) {
      lefts.push(l(`o${i}`, i * 1000, undefined, i % 2));
      if (i % 3) rights.push(r(`o${i}`, i * 1000 + (i % 7) * 1000, undefined, i % 2));
    }
    // Each topic in the same order every time (by time, as produced); only how the reads of the two interleave differs.
    const byTime = (a: TestInput, b: TestInput) => (a.value as Side).t - (b.value as Side).t;
    rights.sort(byTime);
    const live: TestInput[] = [...lefts, ...rights].sort(byTime);
    const results = [live, [...lefts, ...rights], [...rights, ...lefts]].map((inputs) => {
      const d = new TopologyTestDriver(joinPlan('left'));
      d.pipeInput(...inputs);
      // The end of both inputs, far ahead: every window closes.
      d.pipeInput(l('end', 10_000_000), r('end', 10_000_000), l('end', 10_000_000, undefined, 1), r('end', 10_000_000, undefined, 1));
      assert.equal(d.lateRecords.length, 0);
      return d.readOutput<string>('to-joined').map((x) => x.value).sort();
    });
    assert.equal(results[0].filter((x) => x.endsWith('+none')).length, 67, 'the orders with i % 3 === 0 are unpaired; end pairs with end');
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[2], results[0]);
  });

  it('restores both sides from the changelog after a crash between changelog and commit, and takes nothing twice', () => {
    const inputs = [l('a', 0), r('b', 100), l('c', 200), r('a', 300), l('b', 400)];
    const reference = new TopologyTestDriver(joinPlan('left'));
    reference.pipeInput(...inputs.slice(0, 2));
    reference.commit();
    reference.pipeInput(...inputs.slice(2), r('z', 100_000));
    reference.commit();
    const expected = reference.readOutput<string>('to-joined').map((x) => x.value).sort();

    const d = new TopologyTestDriver(joinPlan('left'));
    d.pipeInput(...inputs.slice(0, 2));
    d.commit();
    d.pipeInput(...inputs.slice(2));
    d.commit({ crashBeforeCommit: true });
    const restarted = new TopologyTestDriver(joinPlan('left'), { restoreFrom: d });
    assert.deepEqual([...restarted.store('pairs').keys()].filter((k) => !k.startsWith('#')).length, 2, 'a and b held');
    restarted.pipeInput(...inputs.slice(2), r('z', 100_000));
    restarted.commit();
    assert.deepEqual(restarted.committer.committed.get('to-joined')!.map((x) => x.value).sort(), expected);
    assert.deepEqual(d.committer.storedOf('left').get(0), 3);
    assert.deepEqual(d.committer.storedOf('right').get(0), 3);
  });

  it('after a crash, a batch processed again in another interleaving leaves no phantom of what the first attempt held', () => {
    const d1 = new TopologyTestDriver(joinPlan('left'));
    d1.pipeInput(l('a', 0), r('a', 1));
    d1.commit();
    d1.pipeInput(l('o', 100)); // held: the right side is behind
    d1.commit({ crashBeforeCommit: true }); // its changelog entry (o held) is written, the offsets are not
    // Restarted, the right side is read first this time: o arrives with its window closed, joins its payment and is
    // not held. The offsets committed now cover the first attempt's entry.
    const d2 = new TopologyTestDriver(joinPlan('left'), { restoreFrom: d1 });
    d2.pipeInput(r('o', 105), r('z', 10_000_000), l('o', 100));
    assert.deepEqual(d2.readOutput('to-joined').map((x) => x.value), ['o+o']);
    d2.commit();
    const d3 = new TopologyTestDriver(joinPlan('left'), { restoreFrom: d2 });
    assert.ok(![...d3.store('pairs').keys()].some((k) => k.startsWith('0')), 'no left record held after the restore');
    d3.pipeInput(r('zz', 20_000_000));
    assert.deepEqual(d3.readOutput('to-joined').map((x) => x.value), [], 'o is not emitted again, unpaid');
  });

  it('describes joins and merges with both parents, and refuses a topic read twice', () => {
    const b = new StreamsBuilder('refused');
    b.stream('a');
    assert.throws(() => b.stream('a'), /read twice/);
    const plan = joinPlan('left');
    const text = describeText(plan, 'left.dlq');
    assert.match(text, /stage {2}left join within 10s, grace 2s .*\(n\d+\) \[store pairs, changelog join-left-pairs-changelog\]/);
    assert.match(text, /stage {2}left join .*\(n\d+, above\)/);
    assert.match(text, /co-partitioned inputs: left, right/);
    const mermaid = describeMermaid(plan, 'left.dlq');
    const join = /(n\d+)\["left join/.exec(mermaid)![1];
    assert.equal(mermaid.split('\n').filter((line) => line.endsWith(`--> ${join}`)).length, 2, 'two edges into the join');
  });

  it('merges two streams, each in its order', () => {
    const b = new StreamsBuilder('merged');
    b.stream<Buffer>('a').mapValues((v) => `a:${v}`).merge(b.stream<Buffer>('b').mapValues((v) => `b:${v}`)).toTopic('all');
    const d = new TopologyTestDriver(b.build());
    d.pipeInput({ topic: 'a', value: '1' }, { topic: 'b', value: '2' }, { topic: 'a', value: '3' });
    assert.deepEqual(d.readOutput('to-all').map((x) => x.value), ['a:1', 'b:2', 'a:3']);
  });
});

describe('a join with a global table', () => {
  function enrich(left: boolean) {
    const b = new StreamsBuilder('enrich');
    const products = b.globalTable<{ category: string }>('products');
    const orders = b.stream<Buffer>('orders').mapValues((v) => JSON.parse(String(v)) as { product: string });
    const joiner = (o: { product: string }, p: { category: string } | null) => `${o.product}:${p?.category ?? 'unknown'}`;
    (left ? orders.leftJoin(products, (_k, o) => o.product, joiner) : orders.join(products, (_k, o) => o.product, joiner)).toTopic('out');
    return new TopologyTestDriver(b.build());
  }

  it('takes each key\'s value as the record is processed: updates apply to later records, a tombstone deletes, an unknown key is null in a left join', () => {
    const d = enrich(true);
    d.pipeGlobal('products', { key: 'Laptop', value: { category: 'electronics' } }, { key: 'Kettle', value: { category: 'kitchen' } });
    d.pipeInput({ value: { product: 'Laptop' } }, { value: { product: 'Chair' } });
    d.pipeGlobal('products', { key: 'Laptop', value: { category: 'computers' } }, { key: 'Kettle', value: null });
    d.pipeInput({ value: { product: 'Laptop' } }, { value: { product: 'Kettle' } });
    assert.deepEqual(d.readOutput('to-out').map((r) => r.value), ['Laptop:electronics', 'Chair:unknown', 'Laptop:computers', 'Kettle:unknown']);
  });

  it('an inner join drops a record whose key the table lacks; a value that is not JSON is skipped and counted', () => {
    const d = enrich(false);
    d.pipeGlobal('products', { key: 'Laptop', value: { category: 'electronics' } }, { key: 'Mouse', value: 'not json {' });
    d.pipeInput({ value: { product: 'Laptop' } }, { value: { product: 'Mouse' } });
    assert.deepEqual(d.readOutput('to-out').map((r) => r.value), ['Laptop:electronics']);
    assert.equal(d.executor.globalTables.get('products')!.skipped, 1);
  });

  it('is described as a global table, and refused for stage threads', () => {
    const plan = enrich(true).plan;
    assert.match(describeText(plan, 'o.dlq'), /global table products \(every partition in every instance, read to its end before processing starts/);
    assert.match(describeMermaid(plan, 'o.dlq'), /_table -\. lookup \.-> n\d+/);
    // A stage worker would build a table of its own that nothing fills.
    assert.throws(() => new Dispatcher({
      executor: new PlanExecutor(plan), pendingOf: () => new PendingBatch(), deadLetter: () => undefined, late: () => undefined, stages: () => undefined,
      threads: 1, planRef: { module: 'unused', export: 'unused', args: [] },
    }), /without state stores or global tables/);
  });
});

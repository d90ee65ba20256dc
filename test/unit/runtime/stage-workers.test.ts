import assert from 'node:assert/strict';
import type Kafka from 'node-rdkafka';
import { PlanExecutor } from '../../../pipeline/dsl/executor.ts';
import { optimize } from '../../../pipeline/dsl/optimize.ts';
import type { StageContext, StreamRecord } from '../../../pipeline/records.ts';
import { CHUNK, copyTargets, runBatch } from '../../../pipeline/runtime/batch.ts';
import { encodeRows } from '../../../pipeline/sinks/copy-segment.ts';
import { StageWorkers } from '../../../pipeline/runtime/stage-workers.ts';
import { packMessages } from '../../../pipeline/sources/packed-batch.ts';
import { ordersIngestPlan } from '../../../topologies/orders-ingest-plan.ts';

const PLAN_MODULE = new URL('../../../topologies/orders-ingest-plan.ts', import.meta.url).href;

function order(i: number, product = `Widget ${i}`) {
  return { order_id: `0190c0de-0000-7000-8000-${String(i).padStart(12, '0')}`, order_number: i, product, quantity: 1 + (i % 5), price: 9.99, ordered_at: '2026-11-28T10:00:00.000Z' };
}

function message(i: number, value: Buffer | null, key: string | null = `k${i}`, headers?: Kafka.MessageHeader[]): Kafka.Message {
  return { topic: 'orders', partition: i % 3, offset: 100 + i, timestamp: 1_700_000_000_000 + i, key: key === null ? undefined : Buffer.from(key), value, size: value?.length ?? 0, headers } as Kafka.Message;
}

/** A batch with every kind of record: valid, non-ASCII, malformed, schema-invalid, tombstone, not UTF-8, unencodable, keyless, with headers. */
function batch(): Kafka.Message[] {
  const out: Kafka.Message[] = [];
  for (let i = 0; i < 300; i++) out.push(message(i, Buffer.from(JSON.stringify(order(i)))));
  out.push(message(300, Buffer.from(JSON.stringify(order(300, 'Crème brûlée 🍮 tab\there')))));
  out.push(message(301, Buffer.from('{"order_id": ')));
  out.push(message(302, Buffer.from(JSON.stringify({ ...order(302), quantity: '3' }))));
  out.push(message(303, null));
  out.push(message(304, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])));
  out.push(message(305, Buffer.from(JSON.stringify(order(305, 'nul\u0000byte')))));
  out.push(message(306, Buffer.from(JSON.stringify(order(306))), null, [{ 'trace-id': Buffer.from('t306') }]));
  return out;
}

const toRecord = (m: Kafka.Message): StreamRecord => ({
  topic: m.topic, partition: m.partition, offset: m.offset, timestamp: m.timestamp, rawKey: (m.key as Buffer | undefined) ?? null,
  key: m.key ? m.key.toString() : null, headers: m.headers, raw: m.value, value: m.value,
});

describe('stage workers', () => {
  it('give the same rows and dead letters as the main thread, byte for byte', async () => {
    const messages = batch();
    // The main thread's result.
    const executor = new PlanExecutor(optimize(ordersIngestPlan('orders', 'orders_data')));
    const dead: { offset: number; reason: string }[] = [];
    const ctx: StageContext = { deadLetter: (r, reason) => dead.push({ offset: r.offset, reason }), late: () => undefined };
    const local = runBatch(executor, packMessages('orders', messages), ctx, copyTargets(executor)).copy.get('to-orders_data')!;

    const workers = new StageWorkers(2, { module: PLAN_MODULE, export: 'ordersIngestPlan', args: ['orders', 'orders_data'] });
    try {
      // Two batches on two workers, and one more: results are per batch, whichever worker ran it.
      const results = await Promise.all([workers.run(packMessages('orders', messages)), workers.run(packMessages('orders', messages.slice(0, 10))), workers.run(packMessages('orders', messages))]);
      for (const r of [results[0], results[2]]) {
        assert.equal(r.copy.length, 1);
        const c = r.copy[0];
        assert.equal(c.name, 'to-orders_data');
        assert.equal(Buffer.from(c.text).toString(), local.text.toString());
        assert.deepEqual([...c.ends], [...local.ends]);
        assert.deepEqual([...c.keyHashes!], [...local.keyHashes!]);
        assert.equal(c.keyHashes!.length, c.ends.length);
        assert.deepEqual([...c.src], [...local.src]);
        assert.deepEqual(r.deadLetters.map((d) => ({ offset: messages[d.src].offset, reason: d.reason })), dead);
      }
      assert.equal(results[1].copy[0].src.length, 10);
      assert.deepEqual(dead.map((d) => d.reason), ['malformed-json', 'tombstone', 'invalid-utf8', 'schema', 'unencodable'], 'in the order the stages rejected them');
      assert.equal(local.src.length, 302);
    } finally {
      await workers.close();
    }
  });

  it('say when every worker has built its plan: until then the dispatcher runs batches on the main thread', async () => {
    const workers = new StageWorkers(2, { module: PLAN_MODULE, export: 'ordersIngestPlan', args: ['orders', 'orders_data'] });
    try {
      // A worker loads its own modules and builds its plan after it starts: not ready at once.
      assert.equal(workers.ready, false);
      const until = Date.now() + 30_000;
      while (!workers.ready && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      assert.equal(workers.ready, true, 'the workers never said they were ready');
      const r = await workers.run(packMessages('orders', batch().slice(0, 10)));
      assert.equal(r.copy[0].src.length, 10);
    } finally {
      await workers.close();
    }
  });

  it('are never ready when a worker cannot build its plan', async () => {
    const workers = new StageWorkers(1, { module: PLAN_MODULE, export: 'noSuchPlan', args: [] });
    try {
      await assert.rejects(workers.run(packMessages('orders', batch().slice(0, 5))));
      assert.equal(workers.ready, false);
    } finally {
      await workers.close();
    }
  });

  it('fail every batch waiting when a worker cannot build its plan, with the reason', async () => {
    const workers = new StageWorkers(1, { module: PLAN_MODULE, export: 'noSuchPlan', args: [] });
    try {
      await assert.rejects(workers.run(packMessages('orders', batch().slice(0, 5))), /not a function|exited/);
      await assert.rejects(workers.run(packMessages('orders', batch().slice(0, 5))));
    } finally {
      await workers.close();
    }
  });

  it('run a batch a chunk at a time with the rows and dead letters of one pass over it', () => {
    // Several chunks, a bad record of each kind in each, one straddling a chunk boundary.
    const messages: Kafka.Message[] = [];
    for (let c = 0; c < 5; c++) for (const m of batch()) messages.push({ ...m, offset: messages.length });
    assert.ok(messages.length > 4 * CHUNK);
    const executor = new PlanExecutor(optimize(ordersIngestPlan('orders', 'orders_data')));
    const chunked: { offset: number; reason: string }[] = [];
    const out = runBatch(executor, packMessages('orders', messages), { deadLetter: (r, reason) => chunked.push({ offset: r.offset, reason }), late: () => undefined }, copyTargets(executor)).copy.get('to-orders_data')!;
    // One pass: every record through the stages at once, then one encoding.
    const once: { offset: number; reason: string }[] = [];
    const ctx: StageContext = { deadLetter: (r, reason) => once.push({ offset: r.offset, reason }), late: () => undefined };
    const reached = new Map<string, StreamRecord[]>();
    executor.run(messages.map(toRecord), ctx, reached);
    const sink = executor.sinks.find((x) => x.name === 'to-orders_data')!;
    if (sink.kind !== 'postgres') throw new Error('not a Postgres sink');
    const whole = encodeRows(reached.get('to-orders_data')!, (r) => sink.row(r.value, r.key, r), sink.columns.indexOf(sink.keyColumns![0]), (r, reason) => ctx.deadLetter(r, reason, ''));
    assert.equal(out.text.toString(), whole.text.toString());
    assert.deepEqual([...out.ends], [...whole.ends]);
    assert.deepEqual([...out.keyHashes!], [...whole.keyHashes!]);
    assert.deepEqual([...out.src].map((i) => messages[i].offset), whole.rows.map((r) => r.offset));
    const byOffset = (a: { offset: number }, b: { offset: number }) => a.offset - b.offset;
    assert.deepEqual(chunked.sort(byOffset), once.sort(byOffset));
    assert.equal(chunked.length, 5 * 5);
  });
});

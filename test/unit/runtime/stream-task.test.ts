import assert from 'node:assert/strict';
import { optimize } from '../../../pipeline/dsl/optimize.ts';
import { sinksOf } from '../../../pipeline/dsl/plan.ts';
import { PipelineMetrics } from '../../../pipeline/metrics/registry.ts';
import { Registry } from 'prom-client';
import { TaskObserver } from '../../../pipeline/runtime/observer.ts';
import { Progress } from '../../../pipeline/runtime/progress.ts';
import { StreamTask, type StreamTaskOptions } from '../../../pipeline/runtime/stream-task.ts';
import { sinkOf } from '../../../pipeline/sinks/index.ts';
import { MemoryCommitter, MemorySource } from '../../../pipeline/testing/memory.ts';
import { ordersIngestPlan } from '../../../topologies/orders-ingest-plan.ts';

const SINK = 'to-orders_data';

function order(p: number, i: number) {
  const n = p * 100_000 + i;
  return { order_id: `0190c0de-0000-7000-8000-${String(n).padStart(12, '0')}`, order_number: n, product: `Widget ${i}`, quantity: 1 + (i % 5), price: 9.99, ordered_at: '2026-11-28T10:00:00.000Z' };
}

interface Run {
  source: MemorySource;
  committer: MemoryCommitter;
  logs: string[];
  metrics: PipelineMetrics;
  done: Promise<void>;
  stop(): void;
}

/**
 * The real StreamTask over an in-memory source and committer: partitions 0..partitions-1 with `perPartition` orders
 * each (every 10th one schema-invalid), read until idle.
 */
function start(o: { partitions: number; perPartition: number; assigned?: number[]; lanes?: number; batch?: number; directJson?: boolean; committer?: MemoryCommitter;
  before?: (r: Run) => void }): Run {
  const plan = ordersIngestPlan('orders', 'orders_data');
  const sinks = sinksOf(plan).map((s) => sinkOf(s, { applicationId: plan.applicationId, sourceTopic: plan.topic, dlqTopic: 'orders.dlq' }));
  const committer = o.committer ?? new MemoryCommitter();
  const logs: string[] = [];
  const metrics = new PipelineMetrics(new Registry());
  const abort = new AbortController();
  const run = { committer, logs, metrics, stop: () => abort.abort() } as Run;
  const options: StreamTaskOptions = {
    topology: 'test', plan: optimize(plan, { directJson: o.directJson }), committer, sinks, dlqTopic: 'orders.dlq',
    source: (listener) => {
      const source = new MemorySource('orders', listener, o.assigned ?? Array.from({ length: o.partitions }, (_, p) => p));
      for (let p = 0; p < o.partitions; p++) {
        for (let i = 0; i < o.perPartition; i++) source.append(p, { key: `k${i}`, value: i % 10 === 9 ? { ...order(p, i), quantity: 'many' } : order(p, i) });
      }
      run.source = source;
      return source;
    },
    batch: { maxRecords: o.batch ?? 100, maxWaitMs: 5 }, maxPollRecords: 37, lanes: o.lanes,
    stopWhenIdleMs: 150, observer: new TaskObserver(metrics, new Progress('test', 'rec', 3_600_000), 'test', 'orders', 'orders_data'),
    log: (line) => logs.push(line), signal: abort.signal,
  };
  const task = new StreamTask(options);
  o.before?.(run);
  run.done = task.run();
  return run;
}

/** Every valid order exactly once in the sink, every invalid one exactly once a dead letter, offsets at the end. */
function assertExact(r: Run, partitions: number[], perPartition: number): void {
  const rows = r.committer.committed.get(SINK) ?? [];
  const seen = new Map<string, number>();
  for (const row of rows) seen.set(`${row.partition}/${row.offset}`, (seen.get(`${row.partition}/${row.offset}`) ?? 0) + 1);
  const dead = new Map<string, number>();
  for (const d of r.committer.deadLetters) dead.set(`${d.sourcePartition}/${d.sourceOffset}`, (dead.get(`${d.sourcePartition}/${d.sourceOffset}`) ?? 0) + 1);
  for (const p of partitions) {
    for (let i = 0; i < perPartition; i++) {
      const k = `${p}/${i}`;
      if (i % 10 === 9) {
        assert.equal(dead.get(k), 1, `${k} dead-lettered once`);
        assert.equal(seen.get(k), undefined, `${k} not a row`);
      } else {
        assert.equal(seen.get(k), 1, `${k} written once`);
        assert.equal(dead.get(k), undefined, `${k} not a dead letter`);
      }
    }
    assert.equal(r.committer.stored.get(p), perPartition, `partition ${p} committed to its end`);
  }
  assert.equal(rows.length + r.committer.deadLetters.length, partitions.length * perPartition, 'nothing else was committed');
}

describe('the runtime (StreamTask on an in-memory source and committer)', () => {
  it('commits every record once, in flushes of at most twice the batch size, with offsets at the end', async () => {
    const r = start({ partitions: 3, perPartition: 1000 });
    await r.done;
    assertExact(r, [0, 1, 2], 1000);
    assert.ok(r.committer.plans.length >= 15, `flushed in batches (${r.committer.plans.length} flushes)`);
    for (const plan of r.committer.plans) assert.ok(plan.records <= 200 + 37, `a flush of ${plan.records} records`);
  });

  it('a failed commit rewinds its partitions to the committed offsets, and the result is exact', async () => {
    const committer = new MemoryCommitter();
    committer.failWhen = (_plan, attempt) => (attempt === 3 || attempt === 4 ? new Error('injected failure at commit') : undefined);
    const r = start({ partitions: 2, perPartition: 800, committer });
    await r.done;
    assert.equal(r.logs.filter((l) => /flush failed, rewinding partitions .* to the offsets in memory: injected failure at commit/.test(l)).length, 2, r.logs.join('\n'));
    assertExact(r, [0, 1], 800);
    const retries = await r.metrics.registry.getSingleMetric('pipeline_sink_flush_retries_total')!.get();
    assert.equal(retries.values[0]?.value, 2, 'both retries counted');
  });

  it('a partition revoked in the middle of a flush: the flush finishes first, the rest is dropped, and a new owner reads from the committed offset', async () => {
    const committer = new MemoryCommitter();
    let held: Promise<void> | undefined;
    const r = start({ partitions: 2, perPartition: 600, committer, before: () => { held = committer.hold(); } });
    await held;
    // A flush is waiting to commit: revoke partition 1 now, let the flush go, then give it back.
    const revoked = r.source.revoke([1]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    committer.release();
    await revoked;
    const afterRevoke = committer.stored.get(1);
    assert.ok(afterRevoke !== undefined && afterRevoke > 0, 'the flush in flight committed partition 1 before it was given up');
    await r.source.assign([1]);
    await r.done;
    assert.ok(r.logs.some((l) => /revoked with a flush in flight: finishing it before giving them up/.test(l)), r.logs.join('\n'));
    assert.ok(r.logs.some((l) => new RegExp(`assigned orders partitions \\[1\\] at offsets \\[${afterRevoke}\\]`).test(l)), 'the new owner started at the committed offset');
    assertExact(r, [0, 1], 600);
  });

  it('a poll that straddled a rebalance is not taken: its partitions are read again from the first offset not taken', async () => {
    const r = start({ partitions: 2, perPartition: 500, before: (run) => {
      // After some records are taken, a poll comes back marked straddled.
      const timer = setInterval(() => {
        if ((run.committer.stored.get(0) ?? -1) > 0) {
          run.source.straddleNext();
          clearInterval(timer);
        }
      }, 1);
    } });
    await r.done;
    assert.ok(r.logs.some((l) => /a poll straddled a rebalance: reading partitions \[[\d,]+\] again from the first offset not taken/.test(l)), r.logs.join('\n'));
    assertExact(r, [0, 1], 500);
  });

  it('lanes: a failed commit of one lane rewinds only its partitions; the other lane goes on', async () => {
    const committer = new MemoryCommitter();
    let failed = 0;
    committer.failWhen = (plan) => (plan.lane === 0 && failed++ < 1 ? new Error('lane 0 fails once') : undefined);
    const r = start({ partitions: 4, perPartition: 500, lanes: 2, committer });
    await r.done;
    const rewinds = r.logs.filter((l) => /flush failed, rewinding/.test(l));
    assert.equal(rewinds.length, 1, rewinds.join('\n'));
    assert.match(rewinds[0], /rewinding partitions (0|2|0,2|2,0) to the offsets in memory: lane 0 fails once/);
    for (const plan of committer.plans) assert.ok(plan.offsets.every((m) => m.partition % 2 === plan.lane), 'each flush holds its lane\'s partitions only');
    assertExact(r, [0, 1, 2, 3], 500);
  });

  it('a commit fenced by another writer rewinds to what that writer committed, and takes nothing twice', async () => {
    const committer = new MemoryCommitter();
    let fenced = false;
    committer.failWhen = (plan) => {
      if (fenced || !plan.offsets.some((m) => m.partition === 0 && m.expected >= 0)) return undefined;
      // Another instance committed partition 0 up to here meanwhile (and wrote those rows itself).
      fenced = true;
      committer.stored.set(0, 400);
      return undefined;
    };
    const r = start({ partitions: 1, perPartition: 600, committer });
    await r.done;
    assert.ok(r.logs.some((l) => /flush failed, rewinding partitions 0 .*moved by another instance/.test(l)), r.logs.join('\n'));
    const rows = committer.committed.get(SINK) ?? [];
    const ours = rows.filter((row) => row.offset >= 400);
    assert.equal(new Set(ours.map((row) => row.offset)).size, ours.length, 'no offset after the other writer\'s twice');
    assert.equal(ours.length + committer.deadLetters.filter((d) => d.sourceOffset >= 400).length, 200, 'everything after it once');
    assert.equal(committer.stored.get(0), 600);
  });

  it('counts records in, out and dead-lettered per stage, with and without the direct reader', async () => {
    for (const directJson of [true, false]) {
      const r = start({ partitions: 1, perPartition: 300, directJson });
      await r.done;
      const counts = (await r.metrics.registry.getSingleMetric('pipeline_stage_records_total')!.get()).values;
      const get = (stage: string, outcome: string) => counts.filter((c) => c.labels.stage === stage && c.labels.outcome === outcome).reduce((a, c) => a + c.value, 0);
      if (directJson) {
        assert.equal(get('direct-json-rows', 'in'), 270, 'the valid orders read straight into rows');
        assert.equal(get('validate', 'dead-letter'), 30, 'the invalid ones took the stages and were rejected there');
      } else {
        assert.equal(get('parse-json', 'in'), 300);
        assert.equal(get('validate', 'in'), 300);
        assert.equal(get('validate', 'out'), 270);
        assert.equal(get('validate', 'dead-letter'), 30);
      }
      assertExact(r, [0], 300);
    }
  });
});

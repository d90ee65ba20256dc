import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { sinksOf } from '../../../pipeline/dsl/plan.ts';
import { PipelineMetrics } from '../../../pipeline/metrics/registry.ts';
import { TaskObserver } from '../../../pipeline/runtime/observer.ts';
import { Progress } from '../../../pipeline/runtime/progress.ts';
import { StreamTask } from '../../../pipeline/runtime/stream-task.ts';
import { sinkOf } from '../../../pipeline/sinks/index.ts';
import { decodePosition, encodePosition, FileSource } from '../../../pipeline/sources/file-source.ts';
import { MemoryCommitter } from '../../../pipeline/testing/memory.ts';
import { ordersFilePlan } from '../../../topologies/orders-file.ts';

/** An NDJSON file of n orders, a blank line after line 10, and every 7th line malformed. */
function file(n: number): { path: string; valid: number[]; bad: number[] } {
  const lines: string[] = [];
  const valid: number[] = [];
  const bad: number[] = [];
  for (let i = 1; i <= n; i++) {
    if (i === 11) {
      lines.push('');
      continue;
    }
    if (i % 7 === 0) {
      lines.push('{"order_id": ');
      bad.push(i);
      continue;
    }
    lines.push(JSON.stringify({ order_id: `0190c0de-0000-7000-8000-${String(i).padStart(12, '0')}`, order_number: i, product: 'Lamp', quantity: 1, price: 9.99, ordered_at: '2026-01-01T00:00:00Z' }));
    valid.push(i);
  }
  const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'file-source-')), 'orders.ndjson');
  fs.writeFileSync(p, `${lines.join('\n')}\n`);
  return { path: p, valid, bad };
}

function run(f: string, committer: MemoryCommitter, logs: string[]): Promise<void> {
  const plan = ordersFilePlan(`file:${f}`, { format: 'ndjson', header: undefined, lines: undefined, stride: 0, group: 'g' }, { table: 'orders_data' });
  const sinks = sinksOf(plan).map((s) => sinkOf(s, { applicationId: plan.applicationId, sourceTopic: plan.topic, dlqTopic: 'orders.dlq' }));
  return new StreamTask({
    topology: 'orders-file', plan, committer, sinks, dlqTopic: 'orders.dlq',
    source: (listener) => new FileSource({ file: f, header: false, loop: false, rate: 0 }, listener),
    batch: { maxRecords: 40, maxWaitMs: 50, readAhead: 0 }, maxPollRecords: 40,
    observer: new TaskObserver(new PipelineMetrics(new Registry()), new Progress('t', 'rec', 3_600_000), 't', plan.topic, 'orders_data'),
    log: (l) => logs.push(l), signal: new AbortController().signal,
  }).run();
}

describe('the file source on the runtime (orders-file\'s plan, an in-memory committer)', () => {
  it('positions: the end of one replay is the start of the next', () => {
    assert.equal(encodePosition(0, 5, undefined), 5);
    assert.equal(encodePosition(1, 1, 20), 21);
    assert.deepEqual(decodePosition(21, 20), { replay: 1, line: 1 });
    assert.deepEqual(decodePosition(20, 20), { replay: 0, line: 20 });
    assert.deepEqual(decodePosition(-1, 20), { replay: 0, line: 1 });
  });

  it('reads every line once into rows or dead letters, flushes of at most a batch, and stops at the end with the position after the last line', async () => {
    const f = file(300);
    const committer = new MemoryCommitter();
    await run(f.path, committer, []);
    const rows = (committer.committed.get('to-orders_data') ?? []).map((r) => r.offset);
    assert.deepEqual(rows, f.valid, 'each valid line once, in order');
    assert.deepEqual(committer.deadLetters.map((d) => d.sourceOffset), f.bad);
    assert.ok(committer.deadLetters.every((d) => d.reason === 'malformed-json' && /^line \d+: /.test(d.message)));
    assert.equal(committer.stored.get(0), 301, 'the position after the last line');
    assert.ok(committer.plans.every((p) => p.records <= 40), 'no flush above the batch size');
  });

  it('a failed commit rewinds the file to the committed position; a restart resumes there; nothing twice', async () => {
    const f = file(300);
    const committer = new MemoryCommitter();
    committer.failWhen = (_p, attempt) => (attempt === 2 ? new Error('injected') : undefined);
    const logs: string[] = [];
    await run(f.path, committer, logs);
    assert.ok(logs.some((l) => /flush failed, rewinding partitions 0 to the offsets in memory: injected/.test(l)), logs.join('\n'));
    assert.deepEqual((committer.committed.get('to-orders_data') ?? []).map((r) => r.offset), f.valid);
    // A restart from the stored position reads nothing again.
    const before = committer.plans.length;
    await run(f.path, committer, []);
    assert.equal(committer.plans.length, before, 'nothing left to commit');
  });
});

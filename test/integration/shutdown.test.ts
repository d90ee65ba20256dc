import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { db, dropAll, generatorReport, readTopic, startTopology, unique, waitUntil } from '../helpers/infra.ts';

describe('Ctrl-C on a process that produces and consumes one topic', () => {
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  const report = path.join(os.tmpdir(), `${unique('report')}.json`);
  after(async () => {
    fs.rmSync(report, { force: true });
    await dropAll([topic, `${topic}.dlq`], [table], [group]);
  });

  it('stops the generator first, and the ingest drains to where it got: rows = the valid orders produced, by id', async () => {
    const run = startTopology(['orders-generator', 'orders-ingest', '--topic', topic, '--table', table, '--group-id', group,
      '--rate', '20000', '--invalid-ratio', '0.02', '--partitions', '3', '--report', report]);
    const count = async () => Number((await db().oneOrNone<{ n: string }>('SELECT count(*) AS n FROM $1:name', [table]).catch(() => null))?.n ?? 0);
    await waitUntil('rows to arrive', async () => (await count()) > 20000, 60_000);
    run.child.kill('SIGINT');
    const code = await run.exited;
    assert.equal(code, 0, run.stderr());
    const { produced, invalid } = generatorReport(run.stderr());
    const sent = JSON.parse(fs.readFileSync(report, 'utf8')) as { valid: string[]; invalid: string[] };
    assert.equal(sent.valid.length + sent.invalid.length, produced);
    assert.ok(invalid > 0, 'some invalid orders were produced');
    const rows = (await db().any<{ order_id: string }>('SELECT order_id FROM $1:name', [table])).map((r) => r.order_id);
    assert.equal(rows.length, sent.valid.length, `rows = valid orders produced (${produced} produced)`);
    assert.deepEqual(rows.sort(), [...sent.valid].sort(), 'the rows are exactly the valid orders');
    const dead = (await readTopic(`${topic}.dlq`)).map((m) => m.key?.toString() ?? '');
    assert.deepEqual(dead.sort(), [...sent.invalid].sort(), 'each invalid order dead-lettered once');
    assert.match(run.stderr(), /SIGINT: stopping orders-generator first; then orders-ingest read on/);
  });
});

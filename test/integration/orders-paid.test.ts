import assert from 'node:assert/strict';
import { validateOrder, type Order } from '../../pipeline/schema/validator.ts';
import { validatePayment, type Payment } from '../../topologies/payments.ts';
import { createTopic, db, dropAll, generatorReport, header, produce, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';

/** A payment far ahead in event time on each partition: every order's window closes (its unpaid row is final). */
async function closeEveryWindow(payments: string, partitions: number): Promise<void> {
  await produce(Array.from({ length: partitions }, (_, p) => {
    const id = `00000000-0000-7000-8000-${String(p).padStart(12, '0')}`;
    return { topic: payments, partition: p, key: id, value: Buffer.from(JSON.stringify({ order_id: id, amount: 0, paid_at: '2027-01-01T00:00:00.000Z' })) };
  }));
}

/**
 * The check of the issue: orders_paid equals a SQL left join of the same orders and payments (read back from the
 * topics and validated here, independently of the topology) within ten minutes of event time.
 */
async function assertEqualsSqlJoin(o: { orders: string; payments: string; table: string }): Promise<{ paid: number; unpaid: number }> {
  const orders = (await readTopic(o.orders)).flatMap((m) => {
    const check = validateOrder();
    let v: unknown;
    try {
      v = JSON.parse(m.value!.toString());
    } catch {
      return [];
    }
    return check(v) ? [v as Order] : [];
  });
  const payments = (await readTopic(o.payments)).map((m) => JSON.parse(m.value!.toString()) as Payment).filter((p) => validatePayment()(p) && p.paid_at < '2027');
  const d = db();
  return d.tx(async (t) => {
    await t.none('CREATE TEMP TABLE truth_orders (order_id uuid, ordered_at timestamptz) ON COMMIT DROP');
    await t.none('CREATE TEMP TABLE truth_payments (order_id uuid, amount numeric(18,2), paid_at timestamptz) ON COMMIT DROP');
    for (let i = 0; i < orders.length; i += 5000) {
      const part = orders.slice(i, i + 5000);
      await t.none('INSERT INTO truth_orders SELECT * FROM unnest($1::uuid[], $2::timestamptz[])', [part.map((x) => x.order_id), part.map((x) => x.ordered_at)]);
    }
    for (let i = 0; i < payments.length; i += 5000) {
      const part = payments.slice(i, i + 5000);
      await t.none('INSERT INTO truth_payments SELECT * FROM unnest($1::uuid[], $2::numeric[], $3::timestamptz[])',
        [part.map((x) => x.order_id), part.map((x) => x.amount), part.map((x) => x.paid_at)]);
    }
    const truth = `SELECT o.order_id, p.order_id IS NOT NULL AS paid, p.amount, p.paid_at FROM truth_orders o
      LEFT JOIN truth_payments p ON p.order_id = o.order_id AND abs(extract(epoch FROM p.paid_at - o.ordered_at)) <= 600`;
    const cmp = await t.one<{ expected: number; present: number; missing: number; extra: number; paid: number }>(`
      SELECT (SELECT count(*) FROM (${truth}) x)::int AS expected, (SELECT count(*) FROM $1:name)::int AS present,
        (SELECT count(*) FROM ((${truth}) EXCEPT (SELECT order_id, paid, amount, paid_at FROM $1:name)) x)::int AS missing,
        (SELECT count(*) FROM ((SELECT order_id, paid, amount, paid_at FROM $1:name) EXCEPT (${truth})) x)::int AS extra,
        (SELECT count(*) FROM $1:name WHERE paid)::int AS paid`, [o.table]);
    const sample = await t.any(`(SELECT 'missing' AS what, * FROM ((${truth}) EXCEPT (SELECT order_id, paid, amount, paid_at FROM $1:name)) x LIMIT 10)
      UNION ALL (SELECT 'extra' AS what, * FROM ((SELECT order_id, paid, amount, paid_at FROM $1:name) EXCEPT (${truth})) y LIMIT 10)`, [o.table]);
    assert.deepEqual(cmp, { expected: orders.length, present: orders.length, missing: 0, extra: 0, paid: cmp.paid }, JSON.stringify(sample));
    return { paid: cmp.paid, unpaid: cmp.present - cmp.paid };
  });
}

describe('orders-paid (a stream-stream left join) on real Kafka and Postgres', () => {
  const orders = unique('orders');
  const payments = unique('payments');
  const table = unique('orders_paid');
  const group = unique('paid');
  after(async () => {
    await dropAll([orders, payments, `${group}.dlq`, `${group}-payments-join-changelog`], [table], [group]);
  });

  it('killed with SIGKILL mid-run and run to the end, orders_paid equals the SQL join, and every invalid record is dead-lettered once', async () => {
    // Simulated event time: 100 ms an order, so 20,000 orders span 33 minutes and many windows close during the run.
    const gen = startTopology(['orders-generator', '--topic', orders, '--payments-topic', payments, '--partitions', '3', '--count', '20000', '--rate', '2500',
      '--event-time-start', '2026-01-01T00:00:00Z', '--event-time-step-ms', '100', '--payments-ratio', '0.7', '--payment-delay-ms', '30000', '--invalid-ratio', '0.01']);
    const args = ['orders-paid', '--topic', orders, '--payments-topic', payments, '--table', table, '--group-id', group, '--partitions', '3',
      '--batch-size', '300', '--batch-wait-ms', '100', '--max-poll-records', '200', '--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000'];
    for (let kill = 0; kill < 2; kill++) {
      const run = startTopology(args);
      await waitUntil('an assignment', async () => /assigned \S+ \+ \S+ partitions \[\d/.test(run.stderr()), 30_000);
      await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2000));
      run.child.kill('SIGKILL');
      await run.exited;
    }
    assert.equal(await gen.exited, 0, gen.stderr());
    const report = generatorReport(gen.stderr());
    await closeEveryWindow(payments, 3);
    const done = await runTopology([...args, '--stop-when-idle', '3']);
    assert.equal(done.code, 0, done.stderr);
    const { paid, unpaid } = await assertEqualsSqlJoin({ orders, payments, table });
    assert.ok(paid > 10_000 && unpaid > 4_000, `paid ${paid}, unpaid ${unpaid}`);
    await waitUntil('the dead letters published', async () => (await readTopic(`${group}.dlq`)).length >= report.invalid);
    const dead = await readTopic(`${group}.dlq`);
    assert.equal(dead.length, report.invalid, 'each invalid order dead-lettered, and nothing else');
    assert.equal(new Set(dead.map((m) => `${header(m, 'source.topic')}/${header(m, 'source.partition')}/${header(m, 'source.offset')}`)).size, dead.length, 'each once');
    assert.ok(dead.every((m) => header(m, 'source.topic') === orders));
  });

  it('a replay of the topics gives the same rows as the live run, and counts nothing late', async () => {
    const o = unique('orders');
    const p = unique('payments');
    const live = unique('paid_live');
    const replay = unique('paid_replay');
    const [gLive, gReplay] = [unique('paid'), unique('paid')];
    try {
      // Live: orders-paid runs while the generator writes at a modest rate (and payments up to 30 s behind in event time).
      const liveRun = startTopology(['orders-paid', '--topic', o, '--payments-topic', p, '--table', live, '--group-id', gLive, '--partitions', '3', '--batch-wait-ms', '100']);
      await waitUntil('an assignment', async () => /assigned \S+ \+ \S+ partitions \[\d/.test(liveRun.stderr()), 30_000);
      const gen = await runTopology(['orders-generator', '--topic', o, '--payments-topic', p, '--partitions', '3', '--count', '12000', '--rate', '1500',
        '--event-time-start', '2026-01-01T00:00:00Z', '--event-time-step-ms', '200', '--payments-ratio', '0.6', '--payment-delay-ms', '30000']);
      assert.equal(gen.code, 0, gen.stderr);
      await closeEveryWindow(p, 3);
      await waitUntil('the live run caught up', async () => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [live]).catch(() => ({ n: 0 }))).n >= 12000, 60_000);
      liveRun.child.kill('SIGTERM');
      assert.equal(await liveRun.exited, 0, liveRun.stderr());
      // Replay: the same topics read from the start, the orders topic (twice the records) read as fast as it comes.
      const replayRun = await runTopology(['orders-paid', '--topic', o, '--payments-topic', p, '--table', replay, '--group-id', gReplay, '--partitions', '3',
        '--batch-size', '20000', '--max-poll-records', '5000', '--stop-when-idle', '3']);
      assert.equal(replayRun.code, 0, replayRun.stderr);
      const diff = await db().one<{ live: number; replay: number; differ: number }>(`SELECT (SELECT count(*) FROM $1:name)::int AS live, (SELECT count(*) FROM $2:name)::int AS replay,
        (SELECT count(*) FROM ((TABLE $1:name EXCEPT TABLE $2:name) UNION ALL (TABLE $2:name EXCEPT TABLE $1:name)) x)::int AS differ`, [live, replay]);
      assert.deepEqual(diff, { live: 12000, replay: 12000, differ: 0 });
      for (const log of [liveRun.stderr(), replayRun.stderr]) assert.doesNotMatch(log, / late \d/, 'no record counted late');
      await assertEqualsSqlJoin({ orders: o, payments: p, table: replay });
    } finally {
      await dropAll([o, p, `${gLive}.dlq`, `${gReplay}.dlq`, `${gLive}-payments-join-changelog`, `${gReplay}-payments-join-changelog`], [live, replay], [gLive, gReplay]);
    }
  });

  it('refuses inputs that are not co-partitioned, with one line naming both counts', async () => {
    const a = unique('orders');
    const b = unique('payments');
    await createTopic(a, 3);
    await createTopic(b, 2);
    try {
      const run = await runTopology(['orders-paid', '--topic', a, '--payments-topic', b, '--table', unique('orders_paid'), '--group-id', unique('paid'), '--stop-when-idle', '1']);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, new RegExp(`the inputs are not co-partitioned: ${a} has 3 partitions, ${b} has 2 partitions`));
      const described = await runTopology(['orders-paid', '--topic', a, '--payments-topic', b, '--describe']);
      assert.equal(described.code, 2, described.stderr);
      assert.match(described.stderr, new RegExp(`the inputs are not co-partitioned: ${a} has 3 partitions, ${b} has 2 partitions`));
      const fine = await runTopology(['orders-paid', '--topic', a, '--payments-topic', unique('payments'), '--describe']);
      assert.equal(fine.code, 0, fine.stderr);
      assert.match(fine.stdout, /co-partitioning of \S+ \+ \S+: checked on /);
    } finally {
      await dropAll([a, b], [], []);
    }
  });
});

import assert from 'node:assert/strict';
import { startKafka, startPostgres, stopKafka, stopPostgres } from '../../pipeline/local/index.ts';
import { db, dropAll, generatorReport, runTopology, startTopology, unique, waitUntil, type Run } from '../helpers/infra.ts';

/**
 * Ingests the same topic into a table of orders, then checks that every window every partition has closed is in
 * the revenue table and equals Postgres' own sums over those orders, to the cent, and that no other window is.
 */
async function assertWindowsMatch(o: { topic: string; orders: string; revenue: string; group: string; valid: number }): Promise<void> {
  const ingest = await runTopology(['orders-ingest', '--topic', o.topic, '--table', o.orders, '--group-id', `${o.group}-ingest`, '--partitions', '3', '--stop-when-idle', '2']);
  assert.equal(ingest.code, 0, ingest.stderr);
  assert.equal((await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [o.orders])).n, o.valid);
  const { closed } = await db().one<{ closed: string }>('SELECT min(closed_through)::text AS closed FROM pipeline_watermarks WHERE application_id = $1', [o.group]);
  const cmp = await db().one<{ expected: number; present: number; missing: number; mismatched: number; extra: number }>(`
    WITH truth AS (
      SELECT date_trunc('minute', ordered_at) AS w, product, count(*) AS n, sum(quantity) AS q, sum(price * quantity) AS r
      FROM $1:name GROUP BY 1, 2),
    closed AS (SELECT * FROM truth WHERE w + interval '1 minute' <= to_timestamp($3::bigint / 1000.0))
    SELECT (SELECT count(*) FROM closed)::int AS expected,
           (SELECT count(*) FROM $2:name)::int AS present,
           (SELECT count(*) FROM closed c LEFT JOIN $2:name r ON r.window_start = c.w AND r.product = c.product WHERE r.product IS NULL)::int AS missing,
           (SELECT count(*) FROM closed c JOIN $2:name r ON r.window_start = c.w AND r.product = c.product
              WHERE r.orders <> c.n OR r.quantity <> c.q OR r.revenue <> c.r)::int AS mismatched,
           (SELECT count(*) FROM $2:name r LEFT JOIN closed c ON r.window_start = c.w AND r.product = c.product WHERE c.product IS NULL)::int AS extra`,
  [o.orders, o.revenue, closed]);
  assert.ok(cmp.expected >= 100, `expected many closed windows, got ${cmp.expected}`);
  assert.deepEqual(cmp, { expected: cmp.expected, present: cmp.expected, missing: 0, mismatched: 0, extra: 0 });
}

/**
 * The check of the issue: for every closed window, orders_revenue_1m equals what Postgres computes from the
 * ingested orders, to the cent, also when orders-revenue is killed with SIGKILL along the way.
 */
describe('orders-revenue on real Kafka and Postgres', () => {
  const topic = unique('orders');
  const revenue = unique('revenue_1m');
  const orders = unique('orders_data');
  const group = unique('revenue');
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    // Whatever happened, the broker and the database are up again for the tests after these.
    await startKafka(() => undefined);
    await startPostgres(() => undefined);
    for (const c of cleanup) await c();
    await dropAll([topic, `${topic}.dlq`, `${group}-revenue-store-changelog`], [revenue, `${revenue}_partials`, orders], [group, `${group}-ingest`]);
    await db().none('DELETE FROM pipeline_watermarks WHERE application_id = $1', [group]);
  });

  it('killed with SIGKILL mid-window and restarted, it writes exactly the rows it would have written without the crash', async () => {
    const gen = startTopology(['orders-generator', '--topic', topic, '--partitions', '3', '--count', '90000', '--rate', '3000',
      '--event-time-start', '2026-01-01T00:00:00Z', '--event-time-step-ms', '5', '--out-of-order-ms', '3000', '--invalid-ratio', '0.01']);
    const fastGroup = ['--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000'];
    const revenueArgs = ['orders-revenue', '--topic', topic, '--table', revenue, '--group-id', group, '--partitions', '3', '--batch-size', '500', '--batch-wait-ms', '100', ...fastGroup];
    for (let kill = 0; kill < 3; kill++) {
      const run = startTopology(revenueArgs);
      // Killed only once it has partitions: a restarted member waits for the killed one's session to expire, and a
      // fixed 4-7 s had the second and third kills land before any assignment (a soak found it), so only one counted.
      await waitUntil('an assignment', async () => /assigned \S+ partitions \[\d/.test(run.stderr()), 30_000);
      await new Promise((r) => setTimeout(r, 1000 + Math.random() * 3000));
      run.child.kill('SIGKILL');
      await run.exited;
    }
    assert.equal(await gen.exited, 0, gen.stderr());
    const report = generatorReport(gen.stderr());
    const done = await runTopology([...revenueArgs, '--stop-when-idle', '3']);
    assert.equal(done.code, 0, done.stderr);
    await assertWindowsMatch({ topic, orders, revenue, group, valid: report.valid });
  });

  it('through a Postgres crash and a Kafka restart mid-stream, it writes exactly the rows it would have written without them', async function () {
    this.timeout(300_000);
    const t = unique('orders');
    const r = unique('revenue_1m');
    const o = unique('orders_data');
    const g = unique('revenue');
    cleanup.push(async () => {
      await dropAll([t, `${t}.dlq`, `${g}-revenue-store-changelog`], [r, `${r}_partials`, o], [g, `${g}-ingest`]);
      await db().none('DELETE FROM pipeline_watermarks WHERE application_id = $1', [g]);
    });
    const gen = startTopology(['orders-generator', '--topic', t, '--partitions', '3', '--count', '60000', '--rate', '2000',
      '--event-time-start', '2026-01-01T00:00:00Z', '--event-time-step-ms', '5', '--out-of-order-ms', '3000', '--invalid-ratio', '0.01']);
    const args = ['orders-revenue', '--topic', t, '--table', r, '--group-id', g, '--partitions', '3', '--batch-size', '500', '--batch-wait-ms', '100'];
    const run: Run = startTopology(args);
    const windows = async () => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [r]).catch(() => ({ n: 0 }))).n;
    const log = () => undefined;
    await waitUntil('windows written', async () => (await windows()) > 0, 60_000);
    await stopPostgres('immediate');
    await new Promise((res) => setTimeout(res, 3000));
    await startPostgres(log);
    const afterPostgres = await windows();
    await waitUntil('windows written after the Postgres restart', async () => (await windows()) > afterPostgres, 60_000);
    await stopKafka();
    await new Promise((res) => setTimeout(res, 3000));
    await startKafka(log);
    const afterKafka = await windows();
    await waitUntil('windows written after the Kafka restart', async () => (await windows()) > afterKafka, 90_000);
    // Both faults were seen: a flush or a read failed and was retried (the lines the runtime logs for each).
    assert.match(run.stderr(), /flush failed, rewinding|failed \(attempt \d+, retrying with backoff\)/, 'the Postgres crash was seen');
    assert.match(run.stderr(), /kafka: .*(Connection refused|transport failure|brokers are down|Disconnected)/i, 'the Kafka restart was seen');
    assert.equal(await gen.exited, 0, gen.stderr());
    const report = generatorReport(gen.stderr());
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.stderr());
    const done = await runTopology([...args, '--stop-when-idle', '3']);
    assert.equal(done.code, 0, done.stderr);
    await assertWindowsMatch({ topic: t, orders: o, revenue: r, group: g, valid: report.valid });
  });
});

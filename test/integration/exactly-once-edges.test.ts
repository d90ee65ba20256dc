import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ORDERS_TABLE_SQL } from '../../topologies/orders-ingest-plan.ts';
import { assertExactlyOnce, generate, reported } from '../helpers/accounting.ts';
import { committedOffsets, createTopic, db, dropAll, ingestCases, produce, runTopology, startTopology, unique, waitUntil, type Run } from '../helpers/infra.ts';
import { PgProxy } from '../helpers/pg-proxy.ts';

/**
 * The paths exactly-once depends on, each driven on purpose on the real database and broker (not left to a random
 * kill landing in a window a few milliseconds wide). Each test first shows that its fault happened, then checks by
 * id that the rows are exactly the valid orders and the dead letters exactly the invalid ones.
 */
describe('exactly-once at its edges, driven on purpose', function () {
  this.timeout(240_000);
  const { fresh, ingest, start, cleanup } = ingestCases();
  after(cleanup);

  /** The table made ahead, with a deferred constraint trigger that fails the first `failures` commits whose rows match `when`. */
  async function failingCommits(table: string, failures: number, when = 'true'): Promise<void> {
    const seq = `${table}_faults`;
    await db().none(ORDERS_TABLE_SQL.replace('$TABLE', `"${table}"`));
    await db().none(`CREATE SEQUENCE "${seq}"`);
    // nextval is not rolled back with the failed transaction, so exactly `failures` commits fail.
    await db().none(`CREATE FUNCTION "${table}_fail"() RETURNS trigger LANGUAGE plpgsql AS $f$
      BEGIN
        IF (${when}) AND nextval('"${seq}"') <= ${failures} THEN RAISE EXCEPTION 'injected failure at COMMIT'; END IF;
        RETURN NULL;
      END $f$`);
    await db().none(`CREATE CONSTRAINT TRIGGER "${table}_at_commit" AFTER INSERT ON "${table}" DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION "${table}_fail"()`);
  }

  it('COMMIT fails (a deferred constraint raises at COMMIT): the flush rewinds to the offsets in Postgres, and the result is exact', async () => {
    const n = fresh();
    await failingCommits(n.table, 2);
    const sent = await generate(['--topic', n.topic, '--partitions', '2', '--count', '20000', '--rate', '0', '--invalid-ratio', '0.01']);
    const r = await runTopology(ingest(n, '--stop-when-idle', '3'));
    assert.equal(r.code, 0, r.stderr);
    const failed = r.stderr.split('\n').filter((l) => /flush failed, rewinding partitions .*injected failure at COMMIT/.test(l));
    assert.equal(failed.length, 2, `two commits failed:\n${r.stderr}`);
    await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: sent.valid, invalid: sent.invalid });
  });

  it('COMMIT succeeds but the connection drops before its answer: the rewind finds the offsets moved, nothing twice', async () => {
    const n = fresh();
    const real = new URL(process.env.DATABASE_URL!);
    const p = new PgProxy({ host: real.hostname, port: Number(real.port) });
    await p.start();
    try {
      const first = await generate(['--topic', n.topic, '--partitions', '2', '--count', '5000', '--rate', '0', '--invalid-ratio', '0.01']);
      const run = start(ingest(n, '--batch-size', '2000'), { DATABASE_URL: p.url(process.env.DATABASE_URL!) });
      await waitUntil('the first orders committed', async () => (await committedOffsets(n.group).catch(() => 0)) === 5000, 90_000);
      p.cutAfter('COMMIT');
      const second = await generate(['--topic', n.topic, '--partitions', '2', '--count', '5000', '--rate', '0', '--invalid-ratio', '0.01']);
      await waitUntil('the cut', async () => p.happened.cut === 1, 60_000);
      await waitUntil('everything committed', async () => (await committedOffsets(n.group)) === 10_000, 90_000);
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0, run.stderr());
      assert.match(run.stderr(), /flush failed, rewinding partitions/, 'the client saw the COMMIT fail');
      await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: [...first.valid, ...second.valid], invalid: [...first.invalid, ...second.invalid] });
    } finally {
      await p.close();
    }
  });

  it('a zombie is fenced: an instance stopped mid-flush resumes after another took its partitions and committed; its flush is refused', async () => {
    const n = fresh();
    const real = new URL(process.env.DATABASE_URL!);
    const p = new PgProxy({ host: real.hostname, port: Number(real.port) });
    await p.start();
    // One lane each: the flush kept back is then A's only one, so A holds no open transaction while it is stopped.
    const fastGroup = ['--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000', '--sink-connections', '1'];
    try {
      const first = await generate(['--topic', n.topic, '--partitions', '2', '--count', '2000', '--rate', '0']);
      const a = start(ingest(n, '--batch-size', '500', ...fastGroup), { DATABASE_URL: p.url(process.env.DATABASE_URL!) });
      await waitUntil('A committed the first orders', async () => (await committedOffsets(n.group).catch(() => 0)) === 2000, 90_000);
      // A's next flush is kept back on its way to Postgres, its transaction not begun; then A stops (no heartbeats).
      const held = p.hold('UPDATE pipeline_offsets');
      const second = await generate(['--topic', n.topic, '--partitions', '2', '--count', '2000', '--rate', '0']);
      await held;
      a.child.kill('SIGSTOP');
      // B joins; once A's session times out B holds every partition, reads from Postgres, and commits everything.
      const b = start(ingest(n, '--batch-size', '500', ...fastGroup));
      await waitUntil('B committed everything', async () => (await committedOffsets(n.group)) === 4000, 120_000);
      p.release();
      a.child.kill('SIGCONT');
      // A's kept-back flush now reaches Postgres: refused by the fence, or (were the fence gone) written again.
      await waitUntil('A\'s flush to end', async () => /flush failed|were moved by another instance/.test(a.stderr()), 20_000).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 2000));
      for (const r of [a, b]) r.child.kill('SIGTERM');
      assert.equal(await a.exited, 0, a.stderr());
      assert.equal(await b.exited, 0, b.stderr());
      assert.equal(p.happened.held, 1);
      await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: [...first.valid, ...second.valid], invalid: [] });
      assert.match(a.stderr(), /were moved by another instance/, 'A was fenced');
    } finally {
      await p.close();
    }
  });

  it('one lane fails while the other commits (two sink connections): only its partitions rewind', async () => {
    const n = fresh();
    // Fails the first commit that holds the poisoned order, which is in partition 0 (lane 0 of 2).
    await failingCommits(n.table, 1, `NEW.product = 'poison'`);
    await createTopic(n.topic, 2);
    const order = (product: string) => ({ order_id: randomUUID(), order_number: 1, product, quantity: 1, price: 1.5, ordered_at: '2026-12-01T10:00:00Z' });
    const zero = [...Array.from({ length: 300 }, () => order('Lamp')), order('poison'), ...Array.from({ length: 300 }, () => order('Lamp'))];
    const one = Array.from({ length: 600 }, () => order('Kettle'));
    await produce([...zero.map((o) => ({ topic: n.topic, partition: 0, key: o.order_id, value: Buffer.from(JSON.stringify(o)) })),
      ...one.map((o) => ({ topic: n.topic, partition: 1, key: o.order_id, value: Buffer.from(JSON.stringify(o)) }))]);
    const r = await runTopology(ingest(n, '--sink-connections', '2', '--stop-when-idle', '3'));
    assert.equal(r.code, 0, r.stderr);
    const failed = r.stderr.split('\n').filter((l) => /flush failed, rewinding/.test(l));
    assert.equal(failed.length, 1, r.stderr);
    assert.match(failed[0], /rewinding partitions 0 to the offsets in Postgres: injected failure at COMMIT/, 'only lane 0 rewound');
    await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: [...zero, ...one].map((o) => o.order_id), invalid: [] });
  });
});

describe('a rebalance in the middle of a flush', function () {
  this.timeout(300_000);
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  const runs: Run[] = [];
  after(async () => {
    for (const r of runs) r.child.kill('SIGKILL');
    await dropAll([topic, `${topic}.dlq`], [table], [group]);
  });

  it('an instance joining and leaving while every flush is slow: the flush in flight finishes first, a straddling poll is read again, the result is exact', async () => {
    // Every COPY into the table takes at least a second, so a flush is in flight nearly all the time.
    await db().none(ORDERS_TABLE_SQL.replace('$TABLE', `"${table}"`));
    await db().none(`CREATE FUNCTION "${table}_slow"() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $f$`);
    await db().none(`CREATE TRIGGER "${table}_slow" AFTER INSERT ON "${table}" FOR EACH STATEMENT EXECUTE FUNCTION "${table}_slow"()`);
    const g = reported(['--topic', topic, '--partitions', '4', '--count', '30000', '--rate', '1500', '--invalid-ratio', '0.01']);
    const gen = startTopology(g.args);
    runs.push(gen);
    const fastGroup = ['--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000', '--batch-size', '1000', '--batch-wait-ms', '100'];
    const args = ['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '4', ...fastGroup];
    const a = startTopology(args);
    runs.push(a);
    const rows = async () => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [table])).n;
    await waitUntil('A writing', async () => (await rows()) > 1000, 90_000);
    for (let round = 0; round < 2; round++) {
      const b = startTopology(args);
      runs.push(b);
      await waitUntil('B assigned', async () => /assigned \S+ partitions \[\d/.test(b.stderr()), 60_000);
      const before = await rows();
      await waitUntil('progress with two instances', async () => (await rows()) > before, 60_000);
      b.child.kill('SIGTERM');
      assert.equal(await b.exited, 0, b.stderr());
    }
    assert.equal(await gen.exited, 0, gen.stderr());
    a.child.kill('SIGTERM');
    assert.equal(await a.exited, 0, a.stderr());
    const done = await runTopology([...args, '--stop-when-idle', '3']);
    assert.equal(done.code, 0, done.stderr);
    const sent = g.read();
    await assertExactlyOnce({ table, dlqTopic: `${topic}.dlq`, valid: sent.valid, invalid: sent.invalid });
    const logs = runs.map((r) => r.stderr()).join('\n');
    assert.match(logs, /revoked with a flush in flight: finishing it before giving them up/, 'a rebalance came during a flush');
    assert.match(logs, /a poll straddled a rebalance: reading partitions \[[\d,]+\] again/, 'a poll straddled a rebalance');
  });
});

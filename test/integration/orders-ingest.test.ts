import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Order } from '../../pipeline/schema/validator.ts';
import { assertExactlyOnce, reported } from '../helpers/accounting.ts';
import { createTopic, db, dropAll, generatorReport, header, produce, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';

interface Names {
  topic: string;
  dlq: string;
  table: string;
  group: string;
}

function names(): Names {
  const topic = unique('orders');
  return { topic, dlq: `${topic}.dlq`, table: unique('orders_data'), group: unique('ingest') };
}

const ingestArgs = (n: Names, ...extra: string[]) =>
  ['orders-ingest', '--topic', n.topic, '--table', n.table, '--group-id', n.group, '--partitions', '3', ...extra];

async function ingestToIdle(n: Names, ...extra: string[]): Promise<string> {
  const r = await runTopology(ingestArgs(n, '--stop-when-idle', '2', ...extra));
  assert.equal(r.code, 0, r.stderr);
  return r.stderr;
}

async function rowCount(table: string): Promise<{ rows: number; distinct: number }> {
  const r = await db().one<{ rows: number; distinct: number }>('SELECT count(*)::int AS rows, count(DISTINCT order_id)::int AS distinct FROM $1:name', [table]);
  return r;
}

function order(overrides: Partial<Order> = {}): Order {
  return {
    order_id: randomUUID(), order_number: 1, product: 'Widget', quantity: 2, price: 9.99, ordered_at: '2026-11-28T10:00:00.000Z',
    ...overrides,
  };
}

describe('orders-ingest on real Kafka and Postgres', () => {
  const created: Names[] = [];
  const fresh = () => {
    const n = names();
    created.push(n);
    return n;
  };
  after(async () => {
    for (const n of created) await dropAll([n.topic, n.dlq], [n.table], [n.group]);
  });

  it('round trip: N generated orders become exactly N rows, equal field by field', async () => {
    const n = fresh();
    const gen = await runTopology(['orders-generator', '--topic', n.topic, '--partitions', '3', '--count', '3000', '--rate', '0', '--seed', '1']);
    assert.equal(gen.code, 0, gen.stderr);
    assert.equal(generatorReport(gen.stderr).produced, 3000);
    await ingestToIdle(n);

    const sent = new Map<string, Order>();
    for (const m of await readTopic(n.topic)) {
      const o = JSON.parse(m.value!.toString()) as Order;
      assert.equal(m.key!.toString(), o.order_id, 'keyed by order_id');
      sent.set(o.order_id, o);
    }
    assert.equal(sent.size, 3000);
    const rows = await db().any<{ order_id: string; order_number: string; product: string; quantity: number; price: string; ordered_at: Date }>(
      'SELECT order_id, order_number, product, quantity, price, ordered_at FROM $1:name', [n.table]);
    assert.equal(rows.length, 3000);
    for (const r of rows) {
      const o = sent.get(r.order_id);
      assert.ok(o, `row ${r.order_id} was never produced`);
      assert.equal(Number(r.order_number), o.order_number);
      assert.equal(r.product, o.product);
      assert.equal(r.quantity, o.quantity);
      assert.equal(r.price, o.price.toFixed(2));
      assert.equal(r.ordered_at.toISOString(), o.ordered_at);
    }
  });

  // Stages and COPY encoding in a worker thread (the default, --stage-threads 1) and on the main thread: the same results.
  for (const [label, threads] of [['stage worker', []], ['main thread', ['--stage-threads', '0']]] as const) {
    it(`sends invalid records of every kind to the dead-letter topic with headers naming the error, and loses nothing (${label})`, async () => {
      const n = fresh();
      await createTopic(n.topic, 3);
      const valid = [order(), order({ price: 0.07 }), order({ price: 1.1 })];
      const bad: { value: Buffer | null; reason: string }[] = [
        { value: Buffer.from('{"order_id": "x", '), reason: 'malformed-json' },
        { value: Buffer.from(JSON.stringify({ ...order(), product: undefined })), reason: 'schema' },
        { value: Buffer.from(JSON.stringify({ ...order(), quantity: '3' })), reason: 'schema' },
        { value: Buffer.from(JSON.stringify({ ...order(), quantity: -1 })), reason: 'schema' },
        { value: Buffer.from(JSON.stringify({ ...order(), price: 1.005 })), reason: 'schema' },
        { value: Buffer.from(JSON.stringify({ ...order(), extra: true })), reason: 'schema' },
        { value: Buffer.from('[1,2,3]'), reason: 'schema' },
        { value: null, reason: 'tombstone' },
        { value: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), reason: 'invalid-utf8' },
        { value: Buffer.from(JSON.stringify(order({ product: 'nul\u0000byte' }))), reason: 'unencodable' },
        { value: Buffer.from(JSON.stringify(order({ price: 1e12 }))), reason: 'rejected-by-database' },
      ];
      await produce([
        ...valid.map((o) => ({ topic: n.topic, key: o.order_id, value: Buffer.from(JSON.stringify(o)) })),
        ...bad.map((b, i) => ({ topic: n.topic, key: `bad-${i}`, value: b.value, headers: [{ 'trace-id': `t${i}` }] })),
      ]);
      await ingestToIdle(n, ...threads);

      assert.deepEqual(await rowCount(n.table), { rows: valid.length, distinct: valid.length });
      const dead = await readTopic(n.dlq);
      assert.deepEqual(dead.map((m) => m.key!.toString()).sort(), bad.map((_, i) => `bad-${i}`).sort(), 'one dead letter per invalid record');
      for (const m of dead) {
        const i = Number(m.key!.toString().slice(4));
        assert.equal(header(m, 'error.reason'), bad[i].reason, `record ${i}: ${header(m, 'error.message')}`);
        assert.ok(header(m, 'error.message'));
        assert.equal(header(m, 'source.topic'), n.topic);
        assert.match(header(m, 'source.partition')!, /^\d+$/);
        assert.match(header(m, 'source.offset')!, /^\d+$/);
        assert.equal(header(m, 'trace-id'), `t${i}`, 'original headers are kept');
        assert.deepEqual(m.value, bad[i].value === null ? null : bad[i].value, 'original bytes are kept');
      }
    });

    it(`keeps tab, newline, carriage return, backslash, quotes, \\. and non-ASCII unchanged through COPY (${label})`, async () => {
      const n = fresh();
      await createTopic(n.topic, 3);
      const products = ['tab\there', 'line\nbreak', 'cr\rlf\r\n', 'back\\slash\\', '"quoted" \'single\'', '\\.', 'Crème brûlée 🍮 寿司', '\\N', 'a\\tb'];
      const orders = products.map((product) => order({ product }));
      await produce(orders.map((o) => ({ topic: n.topic, key: o.order_id, value: Buffer.from(JSON.stringify(o)) })));
      await ingestToIdle(n, ...threads);
      const rows = await db().any<{ order_id: string; product: string }>('SELECT order_id, product FROM $1:name', [n.table]);
      const byId = new Map(rows.map((r) => [r.order_id, r.product]));
      for (const o of orders) assert.equal(byId.get(o.order_id), o.product);
    });

    it(`isolates rows Postgres rejects and duplicates: the first order_id wins, later ones are dead letters (${label})`, async () => {
      const n = fresh();
      await createTopic(n.topic, 1);
      const first = order({ product: 'first' });
      const good = Array.from({ length: 500 }, () => order());
      const badDate = order({ ordered_at: '0000-01-01T00:00:00Z' });
      await produce([first, ...good.slice(0, 250), badDate, { ...first, product: 'second' }, ...good.slice(250)]
        .map((o) => ({ topic: n.topic, key: o.order_id, value: Buffer.from(JSON.stringify(o)) })));
      await ingestToIdle(n, ...threads);
      assert.deepEqual(await rowCount(n.table), { rows: 501, distinct: 501 });
      const kept = await db().one<{ product: string }>('SELECT product FROM $1:name WHERE order_id = $2', [n.table, first.order_id]);
      assert.equal(kept.product, 'first');
      const reasons = (await readTopic(n.dlq)).map((m) => header(m, 'error.reason')).sort();
      assert.deepEqual(reasons, ['duplicate', 'rejected-by-database']);
      // A later batch with an order_id already in the table: the database says so, the row goes to the dead letters.
      await produce([{ topic: n.topic, key: first.order_id, value: Buffer.from(JSON.stringify({ ...first, product: 'third' })) }]);
      await ingestToIdle(n, ...threads);
      assert.deepEqual(await rowCount(n.table), { rows: 501, distinct: 501 });
      const dlq = await readTopic(n.dlq);
      assert.equal(dlq.length, 3);
      assert.match(header(dlq.find((m) => m.value!.toString().includes('third'))!, 'error.message')!, /23505/);
    });
  }

  it('stops on SIGTERM mid-stream with everything committed, and a restart finishes with exactly the valid rows and dead letters', async () => {
    const n = fresh();
    // The generator is still sending when the ingest is stopped, so the stop lands in a run that is in progress.
    const g = reported(['--topic', n.topic, '--partitions', '3', '--count', '40000', '--rate', '4000', '--invalid-ratio', '0.01']);
    const gen = startTopology(g.args);
    const run = startTopology(ingestArgs(n, '--batch-size', '2000'));
    await waitUntil('some rows', async () => (await rowCount(n.table).catch(() => ({ rows: 0 }))).rows > 4000);
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.stderr());
    const partial = (await rowCount(n.table)).rows;
    assert.equal(gen.child.exitCode, null, 'the generator was still sending when the ingest stopped');
    assert.ok(partial > 4000 && partial < 36000, `stopped part way: ${partial} rows`);
    assert.equal(await gen.exited, 0, gen.stderr());
    await ingestToIdle(n);
    const sent = g.read();
    await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: sent.valid, invalid: sent.invalid });
  });

  for (const lanes of [1, 2]) it(`survives kill -9 at random moments: exactly the valid rows, every invalid one dead-lettered once (--sink-connections ${lanes})`, async () => {
    const n = fresh();
    // The generator runs for about 24 s, about what the three kills take (each waits for a new member's progress), so
    // they land while records still flow.
    const g = reported(['--topic', n.topic, '--partitions', '3', '--count', '60000', '--rate', '2500', '--invalid-ratio', '0.02']);
    const gen = startTopology(g.args);
    // A short session timeout lets the group give a killed member's partitions away quickly.
    const fastGroup = ['--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000'];
    for (let kill = 0; kill < 3; kill++) {
      const run = startTopology(ingestArgs(n, '--batch-size', '1000', '--batch-wait-ms', '100', '--sink-connections', String(lanes), ...fastGroup));
      const before = (await rowCount(n.table).catch(() => ({ rows: 0 }))).rows;
      await waitUntil('progress', async () => (await rowCount(n.table).catch(() => ({ rows: 0 }))).rows > before, 90_000);
      await new Promise((r) => setTimeout(r, Math.random() * 1500));
      run.child.kill('SIGKILL');
      await run.exited;
    }
    assert.equal(await gen.exited, 0, gen.stderr());
    await ingestToIdle(n);
    const sent = g.read();
    await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: sent.valid, invalid: sent.invalid });
  });
});

import assert from 'node:assert/strict';
import { assertExactlyOnce, generate } from '../helpers/accounting.ts';
import { committedOffsets, db, dropAll, ingestCases, produce, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';
import { javaProduce } from '../helpers/kafka-log.ts';

/**
 * The dead-letter relay publishes from the Postgres outbox, then deletes what it published. A crash between the two
 * leaves published rows in the outbox: the next relay must find them in the topic and publish each only once.
 */
describe('the dead-letter relay after a crash between publishing and deleting', function () {
  this.timeout(240_000);
  const made: { topics: string[]; tables: string[]; groups: string[] } = { topics: [], tables: [], groups: [] };
  const wakeSleepers = () => db().any(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'DELETE FROM pipeline_dead_letters%' AND pid <> pg_backend_pid()`);
  after(async () => {
    await wakeSleepers();
    await db().none('DROP TRIGGER IF EXISTS pipeline_test_slow_delete ON pipeline_dead_letters');
    await dropAll(made.topics, made.tables, made.groups);
  });

  const cases = [
    { foreign: 0, transactional: false, label: '' },
    { foreign: 12_000, transactional: false, label: ', also with 12,000 other messages after them in the topic' },
    { foreign: 200, transactional: true, label: ', also with transactions of another producer after them (offsets that are markers, not messages)' },
  ];
  for (const { foreign, transactional, label } of cases) {
    it(`publishes each dead letter once${label}`, async () => {
      const topic = unique('orders');
      const dlq = `${topic}.dlq`;
      const table = unique('orders_data');
      const group = unique('ingest');
      made.topics.push(topic, dlq);
      made.tables.push(table);
      made.groups.push(group);
      const sent = await generate(['--topic', topic, '--partitions', '2', '--count', '3000', '--rate', '0', '--invalid-ratio', '0.1', '--seed', '3']);
      // The first DELETE of this topic's published dead letters sleeps: the relay is caught after publishing.
      const seq = `${table}_deletes`;
      await db().none(`CREATE SEQUENCE "${seq}"`);
      await db().none(`CREATE OR REPLACE FUNCTION pipeline_test_slow_delete() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
          IF OLD.dlq_topic = '${dlq}' AND nextval('"${seq}"') = 1 THEN PERFORM pg_sleep(600); END IF;
          RETURN OLD;
        END $f$`);
      await db().none('DROP TRIGGER IF EXISTS pipeline_test_slow_delete ON pipeline_dead_letters');
      await db().none(`CREATE TRIGGER pipeline_test_slow_delete BEFORE DELETE ON pipeline_dead_letters FOR EACH ROW EXECUTE FUNCTION pipeline_test_slow_delete()`);
      const run = startTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '2']);
      const published = async () => (await db().one<{ n: number }>(`SELECT count(*)::int AS n FROM pipeline_dead_letters WHERE dlq_topic = $1 AND relay_seq IS NOT NULL`, [dlq])).n;
      const outbox = async () => (await db().one<{ n: number }>(`SELECT count(*)::int AS n FROM pipeline_dead_letters WHERE dlq_topic = $1`, [dlq])).n;
      const sleeping = async () => (await db().one<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE query LIKE 'DELETE FROM pipeline_dead_letters%' AND wait_event = 'PgSleep'`)).n;
      let inTopic = 0;
      try {
        // The relay has published a round and sleeps in its DELETE: those dead letters are both in the topic and in the outbox.
        await waitUntil('a round published and not deleted', async () => {
          if (!(await sleeping())) return false;
          inTopic = (await readTopic(dlq).catch(() => [])).length;
          return inTopic > 0 && inTopic === (await published());
        }, 90_000);
        await waitUntil('every order committed', async () => (await committedOffsets(group)) === 3000, 90_000);
      } finally {
        run.child.kill('SIGKILL');
        await run.exited;
        await wakeSleepers();
      }
      await db().none('DROP TRIGGER pipeline_test_slow_delete ON pipeline_dead_letters');
      assert.ok(await published() > 0 && (await outbox()) === sent.invalid.length, 'the crash left published dead letters in the outbox');
      if (foreign) {
        // Another producer writes to the dead-letter topic after them: the next relay must look past its messages
        // (and, written in transactions, past the commit markers that end each partition, which are no messages).
        const each = foreign / 2;
        const messages = Array.from({ length: foreign }, (_, i) => ({ partition: i < each ? 0 : 1, key: `foreign-${i}` }));
        if (transactional) await javaProduce(dlq, [...messages.map((m) => `none\t${m.partition}\t${m.key}\t{}`), 'flush'], { transactional: true });
        else await produce(messages.map((m) => ({ topic: dlq, partition: m.partition, key: m.key, value: Buffer.from('{}') })));
      }
      const again = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '2', '--stop-when-idle', '3']);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(await outbox(), 0, 'the outbox is empty');
      await assertExactlyOnce({ table, dlqTopic: dlq, valid: sent.valid, invalid: sent.invalid, deadLetter: (k) => !k.startsWith('foreign-') });
    });
  }
});

/**
 * The relay lock is per dead-letter topic. One relay stopped while it holds its lock (SIGSTOP: its session stays
 * open) holds back its own topic's dead letters only.
 */
describe('the dead-letter relay when another relay is stopped while it holds its lock', function () {
  this.timeout(240_000);
  const { fresh, ingest, start, cleanup } = ingestCases();
  const outbox = async (dlq: string) => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM pipeline_dead_letters WHERE dlq_topic = $1', [dlq])).n;
  after(cleanup);

  /** Starts an ingest, waits until its relay has published (it holds its topic's lock from then on), and stops it. */
  async function stoppedHolder(n: ReturnType<typeof fresh>, ...extra: string[]) {
    const sent = await generate(['--topic', n.topic, '--partitions', '2', '--count', '2000', '--rate', '0', '--invalid-ratio', '0.05']);
    const run = start(ingest(n, ...extra));
    await waitUntil('the first relay published', async () => (await readTopic(n.dlq).catch(() => [])).length > 0, 90_000);
    run.child.kill('SIGSTOP');
    return { sent, run };
  }

  it('another pipeline in the same database publishes all its dead letters before it exits', async () => {
    const a = fresh();
    const b = fresh();
    const held = await stoppedHolder(a);
    const sent = await generate(['--topic', b.topic, '--partitions', '2', '--count', '3000', '--rate', '0', '--invalid-ratio', '0.05']);
    const r = await runTopology(ingest(b, '--stop-when-idle', '3'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await outbox(b.dlq), 0, `B's outbox is empty when B has exited:\n${r.stderr}`);
    await assertExactlyOnce({ table: b.table, dlqTopic: b.dlq, valid: sent.valid, invalid: sent.invalid });
    held.run.child.kill('SIGCONT');
    held.run.child.kill('SIGTERM');
    assert.equal(await held.run.exited, 0, held.run.stderr());
    await assertExactlyOnce({ table: a.table, dlqTopic: a.dlq, valid: held.sent.valid, invalid: held.sent.invalid });
  });

  it('an instance of the same pipeline stops after waiting for the holder, says what it left in the outbox, and the holder publishes it', async () => {
    const n = fresh();
    const fastGroup = ['--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000'];
    const held = await stoppedHolder(n, ...fastGroup);
    // B joins the group; once A's session times out B holds every partition and commits the next orders' dead letters.
    const b = start(ingest(n, ...fastGroup));
    const second = await generate(['--topic', n.topic, '--partitions', '2', '--count', '2000', '--rate', '0', '--invalid-ratio', '0.05']);
    await waitUntil('B committed everything', async () => (await committedOffsets(n.group)) === 4000, 120_000);
    const left = await outbox(n.dlq);
    assert.ok(left >= second.invalid.length, `B's dead letters wait in the outbox (${left})`);
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, b.stderr());
    assert.match(b.stderr(), new RegExp(`dead-letter relay: ${left} dead letters of ${n.dlq} are committed and wait in the outbox`), b.stderr());
    // A wakes up and publishes them (its own flushes, if any, are fenced).
    held.run.child.kill('SIGCONT');
    await waitUntil('the outbox emptied', async () => (await outbox(n.dlq)) === 0, 60_000);
    held.run.child.kill('SIGTERM');
    assert.equal(await held.run.exited, 0, held.run.stderr());
    await assertExactlyOnce({ table: n.table, dlqTopic: n.dlq, valid: [...held.sent.valid, ...second.valid], invalid: [...held.sent.invalid, ...second.invalid] });
  });
});

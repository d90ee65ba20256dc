import assert from 'node:assert/strict';
import { OrderFactory } from '../../topologies/order-factory.ts';
import { createTopic, db, dropAll, freePort, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';
import { javaProduce, setAttributes, storedBatches } from '../helpers/kafka-log.ts';

/**
 * A batch the consumer cannot decode, on the real broker: the codec bits of one stored batch are set to 5, a codec
 * no client has, which librdkafka reports exactly as it reports a codec its build lacks ("Not implemented").
 */
describe('a batch that cannot be read', () => {
  const topic = unique('unreadable');
  const table = unique('orders_data');
  const group = unique('ingest');
  after(() => dropAll([topic, `${topic}.dlq`], [table], [group]));

  it('holds its partition there (log line, metric, /readyz 503), and --stop-when-idle exits non-zero naming it; once readable, every record lands once', async () => {
    await createTopic(topic, 2);
    const factory = new OrderFactory(5, 0);
    const ids: string[][] = [[], []];
    const lines: string[] = [];
    for (let batch = 0; batch < 4; batch++) {
      for (const p of [0, 1]) {
        for (let k = 0; k < 100; k++) {
          const order = factory.next();
          ids[p].push(order.key);
          lines.push(`gzip\t${p}\t${order.key}\t${order.value}`);
        }
      }
      lines.push('flush');
    }
    await javaProduce(topic, lines);
    const batches = storedBatches(topic, 0);
    assert.ok(batches.length >= 3, `batches after the one made unreadable (${batches.length} in partition 0)`);
    const bad = batches[1];
    const at = bad.baseOffset;
    assert.ok(at > 0 && at < 300);
    const attributes = setAttributes(bad, 5);
    assert.equal(attributes & 7, 1, 'the batch was gzip');

    const port = await freePort();
    const args = ['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '2', '--stop-when-idle', '6'];
    const run = startTopology(args, { METRICS_PORT: String(port) });
    const get = async (path: string) => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${path}`);
        return { status: res.status, text: await res.text() };
      } catch {
        return { status: 0, text: '' };
      }
    };
    const counted = new RegExp(`pipeline_source_errors_total\\{topology="orders-ingest",topic="${topic}",reason="unsupported-codec"\\} [1-9]`);
    await waitUntil('the source error metric', async () => counted.test((await get('/metrics')).text), 60_000);
    // Readiness is reported every 500 ms: it turns 503 while the partition is held, before the run ends.
    await waitUntil('/readyz 503 while a partition is held', async () => (await get('/readyz')).status === 503, 5_000);
    assert.equal(run.child.exitCode, null, 'still running, holding the partition');
    const code = await run.exited;
    assert.notEqual(code, 0, 'exits non-zero with records left behind');
    assert.match(run.stderr(), new RegExp(`cannot read ${topic}\\[0\\] at offset ${at} \\(unsupported-codec\\)`));
    assert.match(run.stderr(), new RegExp(`records left behind in ${topic}: partition 0 at offset ${at} \\(unsupported-codec`));
    assert.doesNotMatch(run.stderr(), /partition 1 at offset/, 'partition 1 was read to its end');

    const rows = async () => (await db().any<{ order_id: string }>('SELECT order_id FROM $1:name', [table])).map((r) => r.order_id).sort();
    assert.deepEqual(await rows(), [...ids[0].slice(0, at), ...ids[1]].sort(), 'partition 0 up to the batch, partition 1 whole');
    const offsets = await db().any<{ partition: number; next_offset: string }>(
      'SELECT partition, next_offset FROM pipeline_offsets WHERE group_id = $1 AND topic = $2 ORDER BY partition', [group, topic]);
    assert.deepEqual(offsets.map((o) => [o.partition, Number(o.next_offset)]), [[0, at], [1, 400]], 'the offsets stop at the batch');

    // The batch reads again: the next run takes it and what follows, and nothing twice.
    setAttributes(bad, attributes);
    const again = await runTopology(args);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await rows(), [...ids[0], ...ids[1]].sort());
    assert.equal((await readTopic(`${topic}.dlq`)).length, 0, 'no dead letters');
  });
});

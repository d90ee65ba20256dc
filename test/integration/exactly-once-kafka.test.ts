import assert from 'node:assert/strict';
import Kafka from 'node-rdkafka';
import { createTopic, dropAll, generatorReport, header, readTopic, runTopology, startTopology, unique, waitUntil, type Run } from '../helpers/infra.ts';

/** The sum of a topic's high watermarks, asked again at each call, with one consumer until close(). */
async function watermarkReader(topic: string): Promise<(() => Promise<number>) & { close(): Promise<void> }> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': process.env.KAFKA_BROKERS!, 'group.id': unique('watermarks') }, {});
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (err) => (err ? reject(err) : resolve())));
  const read = async () => {
    let sum = 0;
    for (let p = 0; p < 3; p++) {
      sum += await new Promise<number>((resolve, reject) => consumer.queryWatermarkOffsets(topic, p, 5000, (err, w) => (err ? reject(err) : resolve(w.highOffset))));
    }
    return sum;
  };
  return Object.assign(read, { close: () => new Promise<void>((resolve) => consumer.disconnect(() => resolve())) });
}

const fastGroup = ['--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000'];

/** Starts orders-validated and SIGKILLs it once it has partitions and has run for a moment. */
async function startAndKill(args: string[]): Promise<Run> {
  const run = startTopology(args);
  await waitUntil('an assignment', async () => /assigned \S+ partitions \[\d/.test(run.stderr()), 30_000);
  await new Promise((r) => setTimeout(r, 800 + Math.random() * 2000));
  run.child.kill('SIGKILL');
  await run.exited;
  return run;
}

/** The output as a read_committed consumer sees it: each valid order's id, as many times as it is there. */
async function outputIds(topic: string): Promise<string[]> {
  return (await readTopic(topic)).map((m) => (JSON.parse(m.value!.toString()) as { order_id: string }).order_id);
}

/**
 * Kafka to Kafka, killed mid-run: with Kafka transactions every valid order reaches the output once and every invalid
 * one the dead-letter topic once, for a read_committed consumer; at least once, the same kills duplicate records
 * (which shows that the check can fail).
 */
describe('exactly-once into Kafka (Kafka transactions) on the real broker', () => {
  const drops: string[] = [];
  after(async () => {
    await dropAll(drops, [], []);
  });

  it('killed with SIGKILL mid-run, a read_committed consumer sees every valid order once, and every invalid one dead-lettered once', async () => {
    const topic = unique('orders');
    const out = `${topic}.valid`;
    const group = unique('validated');
    drops.push(topic, out, `${topic}.dlq`);
    const gen = startTopology(['orders-generator', '--topic', topic, '--partitions', '3', '--count', '30000', '--rate', '4000', '--invalid-ratio', '0.01']);
    const args = ['orders-validated', '--topic', topic, '--group-id', group, '--partitions', '3', '--batch-size', '300', '--batch-wait-ms', '50', ...fastGroup];
    for (let kill = 0; kill < 4; kill++) await startAndKill(args);
    assert.equal(await gen.exited, 0, gen.stderr());
    const report = generatorReport(gen.stderr());
    const done = await runTopology([...args, '--stop-when-idle', '3']);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stderr, /from Kafka \(transactions\)/);
    const ids = await outputIds(out);
    assert.equal(ids.length, report.valid, 'as many records as valid orders');
    assert.equal(new Set(ids).size, report.valid, 'each once');
    const dead = await readTopic(`${topic}.dlq`);
    assert.equal(dead.length, report.invalid);
    assert.equal(new Set(dead.map((m) => `${header(m, 'source.partition')}/${header(m, 'source.offset')}`)).size, report.invalid);
  });

  it('at least once, the same kills give a read_committed consumer some orders twice', async () => {
    const topic = unique('orders');
    const out = `${topic}.valid`;
    const group = unique('validated');
    drops.push(topic, out, `${topic}.dlq`);
    const args = ['orders-validated', '--topic', topic, '--group-id', group, '--partitions', '3', '--batch-size', '20000', '--processing-guarantee', 'at-least-once', ...fastGroup];
    await createTopic(out, 3);
    const ends = await watermarkReader(out);
    let produced = 0;
    let duplicated = 0;
    let kills = 0;
    try {
      while (kills < 10 && duplicated === 0) {
        // More orders each time, so every run has a flush to make; it is killed the moment its first records of the
        // flush are in the output: produced, and (most of the time) its offsets not yet committed.
        const gen = await runTopology(['orders-generator', '--topic', topic, '--partitions', '3', '--count', '60000', '--rate', '0']);
        assert.equal(gen.code, 0, gen.stderr);
        produced += generatorReport(gen.stderr).valid;
        const before = await ends();
        const run = startTopology(args);
        await waitUntil('output', async () => (await ends()) > before, 60_000);
        run.child.kill('SIGKILL');
        await run.exited;
        kills++;
        const ids = await outputIds(out);
        duplicated = ids.length - new Set(ids).size;
      }
    } finally {
      await ends.close();
    }
    assert.ok(duplicated > 0, `a kill between producing and committing the offsets duplicates what was produced (none after ${kills} kills)`);
    const done = await runTopology([...args, '--stop-when-idle', '3']);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(new Set(await outputIds(out)).size, produced, 'and nothing is lost');
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kafkaStatus, localDatabaseUrl, localKafkaBrokers, startKafka, startPostgres } from '../../pipeline/local/index.ts';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { db, dropAll, header, readTopic, startTopology, unique, waitUntil, type Run } from '../helpers/infra.ts';

/** The embedded default is what the chaos script restarts; an external broker or database is left alone. */
const embedded = () => process.env.KAFKA_BROKERS === localKafkaBrokers() && process.env.DATABASE_URL === localDatabaseUrl();

describe('chaos: SIGKILLs, a Postgres restart and a Kafka restart while orders flow', function () {
  this.timeout(300_000);
  let child: ReturnType<typeof spawn> | undefined;

  after(async function () {
    this.timeout(180_000);
    child?.kill('SIGKILL');
    // Whatever happened midway, leave the broker and the database running for the tests after this one.
    if (embedded()) {
      const log = (line: string) => process.stderr.write(`chaos after: ${line}\n`);
      if (!(await kafkaStatus()).running) await startKafka(log);
      await startPostgres(log);
      await waitUntil('Postgres to answer', async () => db().one('SELECT 1').then(() => true, () => false), 60_000);
    }
  });

  it('npm run chaos: every valid order exactly once in the table, every invalid one exactly once in the dead-letter topic', async () => {
    // About 50 s of generation at a fixed rate, so the faults (each waits for committed progress) land while records flow.
    const args = ['--records', '40000', '--rate', '800', '--kills', '5', '--partitions', '3', '--batch-size', '2000'];
    const c = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'scripts/chaos.ts'), ...args], {
      cwd: projectRoot, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    let out = '';
    let err = '';
    c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await new Promise<number | null>((resolve) => c.on('exit', (x) => resolve(x)));
    child = undefined;
    const last = out.trim().split('\n').pop() ?? '';
    const m = /^produced (\d+), written (\d+), dead-lettered (\d+), duplicated (\d+), missing (\d+)$/.exec(last);
    assert.ok(m, `no final line in:\n${out}\n${err}`);
    const [produced, written, dead, duplicated, missing] = m.slice(1).map(Number);
    const account = /valid (\d+), invalid (\d+); (\d+) kills, (\d+) Postgres restart, (\d+) Kafka restart/.exec(err);
    assert.ok(account, err);
    const [valid, invalid, kills, pgRestarts, kafkaRestarts] = account.slice(1).map(Number);
    assert.equal(code, 0, err);
    assert.equal(produced, 40000);
    assert.equal(duplicated, 0);
    assert.equal(missing, 0);
    assert.equal(written, valid);
    assert.equal(dead, invalid);
    assert.ok(invalid > 0, 'the run had invalid orders');
    assert.equal(kills, 5);
    if (embedded()) {
      assert.equal(pgRestarts, 1);
      assert.equal(kafkaRestarts, 1);
    }
  });
});

describe('two orders-ingest instances in one consumer group', function () {
  this.timeout(300_000);
  const topic = unique('orders');
  const dlq = `${topic}.dlq`;
  const table = unique('orders_data');
  const group = unique('ingest');
  const runs: Run[] = [];
  const reportFile = path.join(os.tmpdir(), `${unique('report')}.json`);

  after(async () => {
    for (const r of runs) r.child.kill('SIGKILL');
    fs.rmSync(reportFile, { force: true });
    await dropAll([topic, dlq], [table], [group]);
  });

  const committed = async () => Number((await db().one<{ n: string }>(
    'SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint AS n FROM pipeline_offsets WHERE group_id = $1 AND topic = $2', [group, topic])).n);
  const ingest = (...extra: string[]) => {
    const r = startTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '4',
      '--batch-size', '1000', '--batch-wait-ms', '100', '--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000', ...extra]);
    runs.push(r);
    return r;
  };
  const assigned = (r: Run) => waitUntil('an assignment', async () => /assigned \S+ partitions \[\d/.test(r.stderr()), 90_000);
  const progress = async () => {
    const before = await committed();
    await waitUntil('committed progress', async () => (await committed()) > before, 90_000);
  };

  it('second started mid-stream, first killed and started again: exactly the valid rows, each invalid one dead-lettered once', async () => {
    const gen = startTopology(['orders-generator', '--topic', topic, '--partitions', '4', '--count', '40000', '--rate', '1000',
      '--invalid-ratio', '0.01', '--report', reportFile]);
    runs.push(gen);
    const a = ingest();
    await assigned(a);
    await progress();
    const b = ingest();
    await assigned(b); // the group rebalanced: each instance owns some partitions now
    await progress();
    a.child.kill('SIGKILL');
    await a.exited;
    await progress(); // b took over a's partitions after its session timed out
    const a2 = ingest();
    await assigned(a2);
    await progress();
    assert.equal(await gen.exited, 0, gen.stderr());
    for (const r of [b, a2]) {
      r.child.kill('SIGTERM');
      assert.equal(await r.exited, 0, r.stderr());
    }
    const last = ingest('--stop-when-idle', '3');
    assert.equal(await last.exited, 0, last.stderr());

    const report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as { valid: string[]; invalid: string[] };
    const rows = await db().map<string>('SELECT order_id::text AS id FROM $1:name', [table], (r: { id: string }) => r.id);
    assert.equal(rows.length, report.valid.length, 'rows = valid orders sent');
    assert.deepEqual(new Set(rows), new Set(report.valid), 'the same order ids');
    const dead = await readTopic(dlq);
    const keys = dead.map((m) => m.key!.toString());
    assert.equal(keys.length, report.invalid.length, 'one dead letter per invalid order');
    assert.deepEqual(new Set(keys), new Set(report.invalid));
    for (const m of dead) assert.notEqual(header(m, 'error.reason'), 'duplicate', 'no valid order delivered twice');
  });
});

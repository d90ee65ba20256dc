import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { kafkaStatus, localDatabaseUrl, localKafkaBrokers, startKafka, startPostgres, stopCluster } from '../../pipeline/local/index.ts';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { db, waitUntil } from '../helpers/infra.ts';

/** The embedded default is what the chaos script restarts; an external broker or database is left alone. */
const embedded = () => process.env.KAFKA_BROKERS === localKafkaBrokers() && process.env.DATABASE_URL === localDatabaseUrl();

interface ChaosResult {
  code: number | null;
  err: string;
  produced: number; written: number; dead: number; duplicated: number; missing: number;
  valid: number; invalid: number; kills: number; pgRestarts: number; kafkaRestarts: number; leaderKills: number; network: number; minInstances: number; maxInstances: number;
}

let chaosChild: ReturnType<typeof spawn> | undefined;

/** Runs scripts/chaos.ts and reads its last line and its accounting line. */
async function chaos(args: string[]): Promise<ChaosResult> {
  const c = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'scripts/chaos.ts'), ...args], {
    cwd: projectRoot, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  chaosChild = c;
  let out = '';
  let err = '';
  c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((resolve) => c.on('exit', (x) => resolve(x)));
  chaosChild = undefined;
  const last = out.trim().split('\n').pop() ?? '';
  const m = /^produced (\d+), written (\d+), dead-lettered (\d+), duplicated (\d+), missing (\d+); /.exec(last);
  assert.ok(m, `no final line in:\n${out}\n${err}`);
  const [produced, written, dead, duplicated, missing] = m.slice(1).map(Number);
  const account = /valid (\d+), invalid (\d+); (\d+) kills, (\d+) Postgres restart, (\d+) Kafka restart, (\d+) leader kills, (\d+) network faults; instances (\d+)\.\.(\d+)/.exec(err);
  assert.ok(account, err);
  const [valid, invalid, kills, pgRestarts, kafkaRestarts, leaderKills, network, minInstances, maxInstances] = account.slice(1).map(Number);
  return { code, err, produced, written, dead, duplicated, missing, valid, invalid, kills, pgRestarts, kafkaRestarts, leaderKills, network, minInstances, maxInstances };
}

/** What every chaos run must show: nothing lost or doubled, every valid order written, every invalid one dead-lettered. */
function exactlyOnce(r: ChaosResult, records: number): void {
  assert.equal(r.code, 0, r.err);
  assert.equal(r.produced, records);
  assert.equal(r.duplicated, 0);
  assert.equal(r.missing, 0);
  assert.equal(r.written, r.valid);
  assert.equal(r.dead, r.invalid);
  assert.ok(r.invalid > 0, 'the run had invalid orders');
}

/** Whatever happened midway, leave the broker and the database running for the tests after this one. */
async function restoreEmbedded(): Promise<void> {
  chaosChild?.kill('SIGKILL');
  if (!embedded()) return;
  const log = (line: string) => process.stderr.write(`chaos after: ${line}\n`);
  if (!(await kafkaStatus()).running) await startKafka(log);
  await startPostgres(log);
  await waitUntil('Postgres to answer', async () => db().one('SELECT 1').then(() => true, () => false), 60_000);
}

describe('chaos: SIGKILLs, a Postgres restart and a Kafka restart while orders flow', function () {
  this.timeout(300_000);
  after(async function () {
    this.timeout(180_000);
    await restoreEmbedded();
  });

  it('npm run chaos: every valid order exactly once in the table, every invalid one exactly once in the dead-letter topic', async () => {
    // 20 s of generation at a fixed rate, so the faults (each waits for committed progress) land while records flow.
    const r = await chaos(['--records', '16000', '--rate', '800', '--kills', '3', '--partitions', '3', '--batch-size', '2000']);
    exactlyOnce(r, 16000);
    assert.equal(r.kills, 3);
    if (embedded()) {
      assert.equal(r.pgRestarts, 1);
      assert.equal(r.kafkaRestarts, 1);
    }
  });
});

describe('chaos on three brokers: a leader kill, instances scaled 1..3, network stalls and drops, SIGKILLs and a Postgres crash', function () {
  this.timeout(420_000);
  after(async function () {
    this.timeout(180_000);
    await restoreEmbedded();
    await stopCluster(); // three JVMs: not kept for the tests after this one
  });

  it('npm run chaos -- --brokers 3: every valid order exactly once, every invalid one dead-lettered once, with the faults it was asked for', async () => {
    // 35 s of generation: about what the faults take.
    const r = await chaos(['--brokers', '3', '--records', '28000', '--rate', '800', '--kills', '1', '--instances', '2', '--max-instances', '3',
      '--kill-broker', '1', '--network-stalls', '2', '--stall-seconds', '3', '--partitions', '3', '--batch-size', '2000']);
    exactlyOnce(r, 28000);
    assert.deepEqual({ kills: r.kills, leaderKills: r.leaderKills, network: r.network, pgRestarts: r.pgRestarts, kafkaRestarts: r.kafkaRestarts, minInstances: r.minInstances, maxInstances: r.maxInstances },
      // The cluster is always the embedded one; Postgres is crashed only when it is the embedded one too.
      { kills: 1, leaderKills: 1, network: 2, pgRestarts: process.env.DATABASE_URL === localDatabaseUrl() ? 1 : 0, kafkaRestarts: 0, minInstances: 1, maxInstances: 3 });
    assert.match(r.err, /SIGKILL broker \d, the leader of/);
    assert.match(r.err, /every partition has its 3 replicas in sync again/);
  });
});

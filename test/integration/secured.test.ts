import assert from 'node:assert/strict';
import { deleteTopics, ensureTopics, partitionCounts } from '../../pipeline/kafka/admin.ts';
import { kafkaConnection } from '../../pipeline/kafka/client-config.ts';
import {
  addKafkaUser, credentials, secureAdminDatabaseUrl, secureEnv, secureKafkaConfig, securePostgres, SECURE_TOPIC, startSecure,
} from '../../pipeline/local/secure.ts';
import { stopSecureKafka } from '../../pipeline/local/kafka.ts';
import { stopPostgres } from '../../pipeline/local/postgres.ts';
import { database } from '../../pipeline/postgres/db.ts';
import { freePort, generatorReport, readTopic, runTopology, startTopology, waitUntil } from '../helpers/infra.ts';

/**
 * npm run local -- start --secure, for real: a broker that takes only TLS and SCRAM-SHA-512 with ACLs under
 * StandardAuthorizer, and a PostgreSQL that takes only TLS, with a role that owns the pipeline's schema only.
 */
describe('secured: TLS and SCRAM-SHA-512 with ACLs on the broker, TLS and a role of its own on PostgreSQL', function () {
  this.timeout(240_000);
  const log = (line: string) => process.stderr.write(`secured: ${line}\n`);
  const OUTSIDER_PASSWORD = 'Outsider4Test';
  const dlq = `${SECURE_TOPIC}.dlq`;
  let env: Record<string, string>;
  let generatorEnv: Record<string, string>;
  let admin: ReturnType<typeof kafkaConnection>;
  const superuser = () => database(secureAdminDatabaseUrl(), 1);
  const secrets = () => Object.values(credentials());

  before(async function () {
    this.timeout(300_000);
    await startSecure(1, log);
    env = secureEnv(1, 'ingest');
    generatorEnv = secureEnv(1, 'generator');
    admin = kafkaConnection(env.KAFKA_BROKERS, [], { KAFKA_CONFIG: secureKafkaConfig('admin', credentials().admin) });
    // A clean slate on a secured default that may have run before: the topics made again (the ACLs name them, and
    // stay), the pipeline's schema emptied.
    await deleteTopics(admin, [SECURE_TOPIC, dlq]);
    await waitUntil('the topics to be gone', async () => (await partitionCounts(admin, [SECURE_TOPIC, dlq])).every((n) => n === 0), 60_000);
    await waitUntil('the topics to be made again', async () => {
      await ensureTopics(admin, [SECURE_TOPIC, dlq].map((name) => ({ name, partitions: 6 }))).catch(() => undefined);
      return (await partitionCounts(admin, [SECURE_TOPIC, dlq])).every((n) => n === 6);
    }, 60_000);
    await superuser().none('DROP SCHEMA IF EXISTS pipeline CASCADE; CREATE SCHEMA pipeline AUTHORIZATION pipeline');
    addKafkaUser(env.KAFKA_BROKERS, 'outsider', OUTSIDER_PASSWORD); // a principal with credentials and no ACL
  });
  after(async function () {
    this.timeout(120_000);
    for (const url of [secureAdminDatabaseUrl(), secureAdminDatabaseUrl('postgres'), env.DATABASE_URL]) await database(url).$pool.end();
    await Promise.all([stopSecureKafka(), stopPostgres('fast', securePostgres)]); // not kept for the tests after these
  });

  const rows = async () => Number((await superuser().one<{ n: string }>('SELECT count(*) AS n FROM pipeline.orders_data')).n);
  // Every group's offsets: a refused ingest with a group of its own must not have committed any either.
  const committed = async () => Number((await superuser().one<{ n: string }>("SELECT coalesce(sum(next_offset), 0) AS n FROM pipeline.pipeline_offsets")).n);

  it('runs end to end: the generator and the ingest each as their own principal, every order once, and no credential in the metrics or the logs', async () => {
    const gen = await runTopology(['orders-generator', '--count', '3000', '--invalid-ratio', '0.02', '--seed', '11'], generatorEnv);
    assert.equal(gen.code, 0, gen.stderr);
    const report = generatorReport(gen.stderr);

    const port = await freePort();
    const ingest = startTopology(['orders-ingest', '--stop-when-idle', '3'], { ...env, METRICS_PORT: String(port) });
    let served = '';
    await waitUntil('the ingest to read', async () => /assigned orders partitions/.test(ingest.stderr()), 60_000);
    for (const page of ['/metrics', '/status.json', '/']) served += await (await fetch(`http://127.0.0.1:${port}${page}`)).text();
    assert.equal(await ingest.exited, 0, ingest.stderr());
    assert.match(served, /pipeline_records_consumed_total/, 'the metrics were served');

    assert.equal(await rows(), report.valid);
    const dead = await readTopic(dlq, 30_000, admin);
    assert.equal(dead.length, report.invalid);
    for (const secret of secrets()) {
      assert.ok(!served.includes(secret), 'a password in /metrics, /status.json or /');
      assert.ok(!(ingest.stdout() + ingest.stderr() + gen.stdout + gen.stderr).includes(secret), 'a password in the output');
    }

    // The role owns the pipeline's tables and nothing else, and reaches no other database.
    const owned = await superuser().any<{ schemaname: string; tablename: string }>("SELECT schemaname, tablename FROM pg_tables WHERE tableowner = 'pipeline'");
    assert.ok(owned.some((t) => t.tablename === 'orders_data') && owned.some((t) => t.tablename === 'pipeline_offsets'), JSON.stringify(owned));
    assert.deepEqual([...new Set(owned.map((t) => t.schemaname))], ['pipeline']);
    const pipelineRole = database(env.DATABASE_URL, 1);
    await assert.rejects(pipelineRole.none('CREATE TABLE public.intruder (x int)'), /permission denied for schema public/);
    await assert.rejects(database(env.DATABASE_URL.replace('/pipeline?', '/postgres?'), 1).one('SELECT 1'), /no pg_hba.conf entry/);
  });

  it('refuses an unauthenticated client, a wrong password, a principal without ACLs, a group not granted and a database client without TLS, each with one line that names the cause, no secret, and nothing written', async () => {
    // Orders waiting to be read, so that a refused ingest that wrote anything would show.
    const gen = await runTopology(['orders-generator', '--count', '500', '--invalid-ratio', '0.02', '--seed', '12'], generatorEnv);
    assert.equal(gen.code, 0, gen.stderr);
    const report = generatorReport(gen.stderr);
    const before = { rows: await rows(), committed: await committed(), dead: (await readTopic(dlq, 30_000, admin)).length };

    const wrong = `Wrong${credentials().ingest}`;
    const cases = [
      { name: 'no TLS, no SASL', args: [] as string[], env: { KAFKA_CONFIG: '' }, code: 2, says: /^Kafka closed the connection of this PLAINTEXT client during the handshake: the listener wants TLS and\/or SASL/m },
      { name: 'a wrong password', env: { KAFKA_CONFIG: secureKafkaConfig('ingest', wrong) }, code: 2, says: /^Kafka refused the credentials of User:ingest \(SASL SCRAM-SHA-512 authentication failed\)/m },
      { name: 'a principal without ACLs', env: { KAFKA_CONFIG: secureKafkaConfig('outsider', OUTSIDER_PASSWORD) }, code: 2, says: /Kafka denies User:outsider creating topic orders, and does not let it see the topic \(TOPIC_AUTHORIZATION_FAILED\)/ },
      { name: 'a group it may not use', args: ['--group-id', 'other'], env: {}, code: 2, says: /^\S+ \[orders-ingest\] failed: Kafka denies User:ingest group other \(GROUP_AUTHORIZATION_FAILED\)/ },
      { name: 'PostgreSQL without TLS', env: { DATABASE_URL: env.DATABASE_URL.replace('sslmode=verify-full', 'sslmode=disable') }, code: 1, says: /no pg_hba.conf entry for host "127.0.0.1", user "pipeline", database "pipeline", no encryption/ },
    ];
    for (const c of cases) {
      const r = await runTopology(['orders-ingest', ...(c.args ?? [])], { ...env, ...c.env });
      const out = r.stdout + r.stderr;
      assert.equal(r.code, c.code, `${c.name}: ${r.stderr}`);
      assert.equal(out.split('\n').filter((l) => c.says.test(l)).length, 1, `${c.name}: one line that says why:\n${r.stderr}`);
      assert.ok(!/^\s+at /m.test(out), `${c.name}: no stack trace:\n${r.stderr}`);
      for (const secret of [...secrets(), wrong, OUTSIDER_PASSWORD]) assert.ok(!out.includes(secret), `${c.name}: a password in the output`);
    }
    assert.deepEqual({ rows: await rows(), committed: await committed(), dead: (await readTopic(dlq, 30_000, admin)).length }, before, 'nothing written');

    // And nothing lost: the ingest with its own credentials takes them all.
    const ingest = await runTopology(['orders-ingest', '--stop-when-idle', '3'], env);
    assert.equal(ingest.code, 0, ingest.stderr);
    assert.equal(await rows(), before.rows + report.valid);
    assert.equal((await readTopic(dlq, 30_000, admin)).length, before.dead + report.invalid);
  });
});

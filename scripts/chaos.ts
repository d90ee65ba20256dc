/**
 * npm run chaos -- --records N --kills K [--rate R] [--seed S] [--partitions P] [--topic T] [--table T] [--group-id G]
 *
 * A Jepsen-style check of orders-ingest on the real broker and the real database: the generator produces N orders
 * at a fixed rate (1% invalid) while orders-ingest is killed with SIGKILL at random moments K times and restarted,
 * and the embedded PostgreSQL and the embedded Kafka broker are each restarted once. Then the ingest drains, and
 * the result is checked by order_id against the keys the generator reports it sent: every valid order exactly once
 * in the table, every invalid one exactly once in the dead-letter topic. The last line is
 * `produced N, written W, dead-lettered D, duplicated X, missing M`; exit 0 only when nothing is duplicated or
 * missing and W and D are exactly the valid and invalid counts.
 *
 * Restarts need the embedded default (pipeline/local); with KAFKA_BROKERS / DATABASE_URL pointing elsewhere the
 * matching restart is skipped and said so.
 */
import {
  clientConfig, closeDatabases, ConfigError, database, type Database, deleteTopics, ensureTopics, errorMessage, helpText, kafkaConnection, type KafkaConnection, type OptionSpec, parseArgs, projectRoot, tableName, topicName,
} from '../pipeline/index.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Kafka from 'node-rdkafka';
import { prng } from '../topologies/orders-generator.ts';
import { ensureInfrastructure, kafkaStatus, localDatabaseUrl, localKafkaBrokers, postgresStatus, startKafka, startPostgres, stopKafka, stopPostgres } from '../pipeline/local/index.ts';

const SPECS: OptionSpec[] = [
  { name: 'records', type: 'int', min: 1, default: 500_000, help: 'orders the generator produces' },
  { name: 'rate', type: 'int', min: 1, default: 5000, help: 'orders per second' },
  { name: 'kills', type: 'int', min: 0, default: 5, help: 'SIGKILLs of orders-ingest at random moments (each followed by a restart)' },
  { name: 'invalid-ratio', type: 'number', min: 0, max: 1, default: 0.01, help: 'share of invalid orders' },
  { name: 'seed', type: 'int', help: 'seed of the generator and of the kill moments (default: random)' },
  { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic' },
  { name: 'topic', type: 'string', help: 'topic (default: a fresh chaos_<id>)' },
  { name: 'table', type: 'string', help: 'table (default: a fresh chaos_orders_<id>)' },
  { name: 'group-id', type: 'string', help: 'consumer group (default: a fresh chaos_<id>)' },
  { name: 'batch-size', type: 'int', min: 1, default: 5000, help: 'orders-ingest --batch-size' },
  { name: 'no-restarts', type: 'bool', help: 'do not restart Postgres and Kafka' },
  { name: 'keep', type: 'bool', help: 'keep the topic, table and offsets at the end' },
  { name: 'help', type: 'bool', help: 'show this help' },
];

const started = Date.now();
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} chaos: ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Child {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  killedByUs: boolean;
}

function startTopology(name: string, args: string[], env: NodeJS.ProcessEnv, logDir: string): Child {
  const file = path.join(logDir, `${name}.log`);
  const out = fs.openSync(file, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'pipeline/cli/main.ts'), ...args], {
    cwd: projectRoot, env, stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return { name, child, exited, killedByUs: false };
}

/** Committed progress of the group: the sum of the next offsets stored in Postgres (valid and invalid records alike). */
async function committed(db: Database, group: string, topic: string): Promise<number | undefined> {
  try {
    const r = await db.one<{ n: string }>('SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint AS n FROM pipeline_offsets WHERE group_id = $1 AND topic = $2', [group, topic]);
    return Number(r.n);
  } catch {
    return undefined; // Postgres is being restarted
  }
}

/** Every message of a topic, from the beginning to the end of each partition. */
async function readTopic(conn: KafkaConnection, topic: string, timeoutMs = 120_000): Promise<Kafka.Message[]> {
  const consumer = new Kafka.KafkaConsumer(clientConfig(conn, {
    'group.id': `chaos-reader-${crypto.randomBytes(4).toString('hex')}`, 'enable.auto.commit': false,
  }) as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (err) => (err ? reject(err) : resolve())));
  try {
    const meta = await new Promise<Kafka.Metadata>((resolve, reject) => consumer.getMetadata({ topic, timeout: 30_000 }, (e, m) => (e ? reject(e) : resolve(m))));
    const partitions = meta.topics.find((t) => t.name === topic)?.partitions.map((p) => p.id) ?? [];
    const ends = new Map<number, number>();
    for (const p of partitions) {
      const wm = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) => consumer.queryWatermarkOffsets(topic, p, 30_000, (e, o) => (e ? reject(e) : resolve(o))));
      if (wm.highOffset > wm.lowOffset) ends.set(p, wm.highOffset);
    }
    if (!ends.size) return [];
    consumer.assign([...ends.keys()].map((partition) => ({ topic, partition, offset: -2 })));
    const out: Kafka.Message[] = [];
    const done = new Set<number>();
    const deadline = Date.now() + timeoutMs;
    while (done.size < ends.size) {
      if (Date.now() > deadline) throw new Error(`reading ${topic} timed out`);
      const msgs = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(5000, (e, m) => (e ? reject(e) : resolve(m))));
      for (const m of msgs) {
        out.push(m);
        if (m.offset >= ends.get(m.partition)! - 1) done.add(m.partition);
      }
    }
    return out;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2), SPECS);
  if (args.names.length) throw new ConfigError(`unexpected argument "${args.names[0]}"`);
  if (args.values.help) {
    process.stdout.write(`usage: npm run chaos -- [flags]\n\nflags:\n${helpText(SPECS)}\n`);
    return 0;
  }
  const v = args.values;
  const records = v.records as number;
  const rate = v.rate as number;
  const kills = v.kills as number;
  const seed = (v.seed as number | undefined) ?? crypto.randomInt(2 ** 31);
  const rand = prng(seed ^ 0x5bd1e995);
  const id = crypto.randomBytes(4).toString('hex');
  const topic = topicName((v.topic as string | undefined) ?? `chaos_${id}`);
  const dlq = topicName(`${topic}.dlq`, '--topic');
  const table = (v.table as string | undefined) ?? `chaos_orders_${id}`;
  const quotedTable = tableName(table);
  const group = (v['group-id'] as string | undefined) ?? `chaos_${id}`;

  // The embedded default can be restarted; a broker or database given from outside is left alone.
  const external = { kafka: process.env.KAFKA_BROKERS, postgres: process.env.DATABASE_URL };
  const endpoints = await ensureInfrastructure({ postgres: true }, (line) => log(line));
  const ownKafka = !v['no-restarts'] && (!external.kafka || external.kafka === localKafkaBrokers()) && (await kafkaStatus()).pid !== undefined;
  const ownPostgres = !v['no-restarts'] && (!external.postgres || external.postgres === localDatabaseUrl()) && (await postgresStatus()).running;
  if (!ownKafka) log(v['no-restarts'] ? 'no Kafka restart (--no-restarts)' : `KAFKA_BROKERS=${external.kafka} is not the embedded broker: skipping the Kafka restart`);
  if (!ownPostgres) log(v['no-restarts'] ? 'no Postgres restart (--no-restarts)' : 'DATABASE_URL is not the embedded PostgreSQL: skipping the Postgres restart');

  const conn = kafkaConnection(endpoints.kafkaBrokers, []);
  const db = database(endpoints.databaseUrl, 2);
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), `chaos-${id}-`));
  const reportFile = path.join(logDir, 'generator-report.json');
  const env: NodeJS.ProcessEnv = { ...process.env, KAFKA_BROKERS: endpoints.kafkaBrokers, DATABASE_URL: endpoints.databaseUrl, METRICS_PORT: '0' };
  log(`run ${id}: ${records} records at ${rate}/s, invalid ratio ${v['invalid-ratio']}, ${kills} kills, seed ${seed}; topic ${topic}, table ${table}, group ${group}; logs in ${logDir}`);

  await ensureTopics(conn, [{ name: topic, partitions: v.partitions as number }, { name: dlq, partitions: v.partitions as number }]);
  const ingestArgs = ['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', String(v.partitions),
    '--batch-size', String(v['batch-size']), '--batch-wait-ms', '200',
    // A killed member's partitions go to its successor once the session times out: keep that short.
    '--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000'];
  const failures: string[] = [];
  let ingests = 0;
  const startIngest = (): Child => {
    const c = startTopology(`ingest-${++ingests}`, ingestArgs, env, logDir);
    void c.exited.then((code) => {
      if (!c.killedByUs) failures.push(`${c.name} exited by itself with code ${code} (see ${path.join(logDir, `${c.name}.log`)})`);
    });
    return c;
  };
  const stopChild = async (c: Child, signal: NodeJS.Signals): Promise<number | null> => {
    c.killedByUs = true;
    c.child.kill(signal);
    return c.exited;
  };

  const generator = startTopology('generator', ['orders-generator', '--topic', topic, '--partitions', String(v.partitions), '--count', String(records),
    '--rate', String(rate), '--invalid-ratio', String(v['invalid-ratio']), '--seed', String(seed), '--report', reportFile], env, logDir);
  generator.killedByUs = true; // its exit is checked below
  let generatorDone = false;
  void generator.exited.then(() => { generatorDone = true; });
  let ingest = startIngest();

  // The faults, in random order, spread over the time the generator runs. Each waits for committed progress
  // since the previous one, so every fault hits an ingest that is working, not one still joining the group.
  const events: ('kill' | 'postgres' | 'kafka')[] = [...Array<'kill'>(kills).fill('kill'), ...(ownPostgres ? ['postgres' as const] : []), ...(ownKafka ? ['kafka' as const] : [])];
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [events[i], events[j]] = [events[j], events[i]];
  }
  const duration = (records / rate) * 1000;
  const done = { kills: 0, postgres: 0, kafka: 0 };
  let mark = (await committed(db, group, topic)) ?? 0;
  for (let i = 0; i < events.length; i++) {
    const at = started + duration * (0.08 + (0.8 * (i + rand())) / events.length);
    const waitFrom = Date.now();
    for (;;) {
      const now = (await committed(db, group, topic)) ?? mark;
      const progressed = now > mark;
      if (progressed && Date.now() >= at) break;
      // Once the generator is done and the backlog is read there is no more progress to wait for.
      if (generatorDone && Date.now() - waitFrom > 15_000) break;
      if (Date.now() - waitFrom > 180_000) {
        failures.push(`no committed progress for 180 s before fault ${i + 1} (${events[i]})`);
        break;
      }
      await sleep(200);
    }
    if (failures.length) break;
    await sleep(rand() * 1500);
    const event = events[i];
    if (event === 'kill') {
      await stopChild(ingest, 'SIGKILL');
      done.kills++;
      log(`fault ${i + 1}/${events.length}: SIGKILL ${ingest.name} (kill ${done.kills}/${kills}); restarting it`);
      ingest = startIngest();
    } else if (event === 'postgres') {
      log(`fault ${i + 1}/${events.length}: stopping PostgreSQL (immediate mode, like a crash)`);
      await stopPostgres('immediate');
      await sleep(2000 + rand() * 2000);
      await startPostgres((line) => log(line));
      done.postgres++;
      log('PostgreSQL is back');
    } else {
      log(`fault ${i + 1}/${events.length}: stopping the Kafka broker`);
      await stopKafka();
      await sleep(2000 + rand() * 2000);
      await startKafka((line) => log(line));
      done.kafka++;
      log('Kafka is back');
    }
    mark = (await committed(db, group, topic)) ?? mark;
  }

  const generatorCode = await generator.exited;
  if (generatorCode !== 0) failures.push(`the generator exited with code ${generatorCode} (see ${path.join(logDir, 'generator.log')})`);
  // Drain: a SIGTERM lets the running ingest commit what it has (once it is up: its handlers must be installed);
  // then one more runs until idle.
  const ingestLog = path.join(logDir, `${ingest.name}.log`);
  for (let waited = 0; waited < 60_000 && !/assigned /.test(fs.readFileSync(ingestLog, 'utf8')); waited += 200) await sleep(200);
  const termCode = await stopChild(ingest, 'SIGTERM');
  if (termCode !== 0) failures.push(`${ingest.name} exited with code ${termCode} on SIGTERM (see ${path.join(logDir, `${ingest.name}.log`)})`);
  log(`generator done; ${ingest.name} stopped with SIGTERM; draining with a last ingest (--stop-when-idle 5)`);
  const last = startTopology(`ingest-${++ingests}-final`, [...ingestArgs, '--stop-when-idle', '5'], env, logDir);
  const lastCode = await last.exited;
  if (lastCode !== 0) failures.push(`${last.name} exited with code ${lastCode} (see ${path.join(logDir, `${last.name}.log`)})`);

  // The check, by order_id.
  if (!fs.existsSync(reportFile)) {
    failures.push('the generator wrote no report');
    for (const f of failures) log(`FAILED: ${f}`);
    return 1;
  }
  const report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as { produced: number; failed: number; valid: string[]; invalid: string[] };
  const outbox = await db.one<{ n: number }>('SELECT count(*)::int AS n FROM pipeline_dead_letters WHERE dlq_topic = $1', [dlq]);
  if (outbox.n) failures.push(`${outbox.n} dead letters still in the outbox, not published`);
  const rows = await db.map<string>(`SELECT order_id::text AS id FROM ${quotedTable}`, [], (r: { id: string }) => r.id);
  const dead = await readTopic(conn, dlq);
  const valid = new Set(report.valid);
  const invalid = new Set(report.invalid);
  const inTable = new Set(rows);
  let duplicated = rows.length - inTable.size;
  let unexpected = 0;
  for (const r of inTable) if (!valid.has(r)) unexpected++;
  const deadCount = new Map<string, number>();
  for (const m of dead) {
    const key = m.key === null || m.key === undefined ? '' : m.key.toString();
    deadCount.set(key, (deadCount.get(key) ?? 0) + 1);
  }
  let wronglyDead = 0;
  for (const [key, n] of deadCount) {
    if (invalid.has(key)) duplicated += n - 1;
    else if (inTable.has(key)) duplicated += n; // a valid order written once and dead-lettered again: delivered twice
    else if (valid.has(key)) wronglyDead += n;
    else unexpected += n;
  }
  let missing = 0;
  for (const id of valid) if (!inTable.has(id)) missing++;
  for (const id of invalid) if (!deadCount.has(id)) missing++;
  if (unexpected) failures.push(`${unexpected} rows or dead letters whose order_id the generator never sent`);
  if (wronglyDead) failures.push(`${wronglyDead} valid orders went to the dead-letter topic instead of the table`);
  if (report.failed) failures.push(`${report.failed} records were not acknowledged by Kafka`);

  log(`valid ${valid.size}, invalid ${invalid.size}; ${done.kills} kills, ${done.postgres} Postgres restart, ${done.kafka} Kafka restart; ${ingests} ingest processes; ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const ok = duplicated === 0 && missing === 0 && rows.length === valid.size && dead.length === invalid.size && failures.length === 0;
  for (const f of failures) log(`FAILED: ${f}`);
  if (!v.keep) {
    await db.none(`DROP TABLE IF EXISTS ${quotedTable}`);
    await db.none('DELETE FROM pipeline_offsets WHERE group_id = $1', [group]);
    await deleteTopics(conn, [topic, dlq]);
    if (ok) fs.rmSync(logDir, { recursive: true, force: true });
  }
  process.stdout.write(`produced ${report.produced}, written ${rows.length}, dead-lettered ${dead.length}, duplicated ${duplicated}, missing ${missing}\n`);
  return ok ? 0 : 1;
}

main().then(
  async (code) => {
    await closeDatabases();
    process.exit(code);
  },
  (err) => {
    process.stderr.write(`${err instanceof ConfigError ? '' : 'chaos: error: '}${errorMessage(err)}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  },
);

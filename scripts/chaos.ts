/**
 * npm run chaos -- --records N --kills K [--brokers 1|3] [--instances N] [--kill-broker L] [--network-stalls S]
 *                  [--rate R] [--seed S] [--partitions P] [--topic T] [--table T] [--group-id G]
 *
 * A Jepsen-style check of orders-ingest on the real broker and the real database: the generator produces N orders
 * at a fixed rate (1% invalid) while faults hit at random moments, each once the ingest has committed progress since
 * the one before:
 * - K SIGKILLs of an ingest instance, each restarted;
 * - one crash of the embedded PostgreSQL (immediate shutdown) and, on the single broker, one restart of Kafka;
 * - with --brokers 3 (the three-node cluster of `npm run local -- start --brokers 3`, started if needed), L SIGKILLs
 *   of the broker leading a partition of the topic, each restarted; its replicas must be back in sync before the
 *   next leader kill and before the end;
 * - with --instances N, N instances in one consumer group (cooperative-sticky rebalancing), scaled up to
 *   --max-instances, down to one (SIGTERM: each leaves the group gracefully) and back to N along the way;
 * - S network faults on the ingest's Postgres connections, through a TCP proxy of our own (pipeline/testing/tcp-proxy.ts):
 *   stalls (every byte held for --stall-seconds) and drops (every connection reset, new ones refused), alternately.
 * Then the ingest drains, and the result is checked by order_id against the keys the generator reports it sent:
 * every valid order exactly once in the table, every invalid one exactly once in the dead-letter topic. The last
 * line is `produced N, written W, dead-lettered D, duplicated X, missing M; ` and the faults that happened; exit 0
 * only when nothing is duplicated or missing and W and D are exactly the valid and invalid counts.
 *
 * Restarts need the embedded default (pipeline/local); with KAFKA_BROKERS / DATABASE_URL pointing elsewhere the
 * matching restart is skipped and said so.
 */
import {
  clientConfig, closeDatabases, ConfigError, database, type Database, deleteTopics, describePartitions, ensureTopics, errorMessage, helpText, kafkaConnection, type KafkaConnection, type OptionSpec, parseArgs, projectRoot, tableName, TcpProxy, topicName,
} from '../pipeline/index.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Kafka from 'node-rdkafka';
import { prng } from '../topologies/orders-generator.ts';
import {
  ensureInfrastructure, kafkaStatus, killClusterNode, localClusterBrokers, localDatabaseUrl, localKafkaBrokers, postgresStatus, startCluster, startClusterNode, startKafka, startPostgres, stopKafka, stopPostgres,
} from '../pipeline/local/index.ts';

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
  { name: 'brokers', type: 'int', min: 1, max: 3, default: 1, help: '1: the single embedded broker; 3: the three-node cluster (started if needed), replication factor 3' },
  { name: 'instances', type: 'int', min: 1, max: 8, default: 1, help: 'ingest instances in the group; with more than one, scaled to --max-instances, down to 1 and back along the way' },
  { name: 'max-instances', type: 'int', min: 1, max: 8, default: 4, help: 'how far --instances scales up' },
  { name: 'kill-broker', type: 'int', min: 0, default: 0, help: 'SIGKILLs of the broker leading a partition of the topic, each restarted (with --brokers 3)' },
  { name: 'network-stalls', type: 'int', min: 0, default: 0, help: 'network faults between ingest and Postgres (a TCP proxy): stalls and drops, alternately' },
  { name: 'stall-seconds', type: 'number', min: 0.5, default: 6, help: 'how long a network fault lasts' },
  { name: 'assignment', type: 'string', choices: ['cooperative-sticky', 'range'], default: 'cooperative-sticky', help: 'partition.assignment.strategy of the ingest instances' },
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
  /** The exit code, or the name of the signal that ended it. */
  exited: Promise<number | NodeJS.Signals | null>;
  killedByUs: boolean;
}

function startTopology(name: string, args: string[], env: NodeJS.ProcessEnv, logDir: string): Child {
  const file = path.join(logDir, `${name}.log`);
  const out = fs.openSync(file, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'pipeline/cli/main.ts'), ...args], {
    cwd: projectRoot, env, stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
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

/** Whether every partition of the topics has `replicas` replicas in sync, polled until timeoutMs. */
async function inSync(conn: KafkaConnection, topics: string[], replicas: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const all = (await Promise.all(topics.map((t) => describePartitions(conn, t)))).flat();
      if (all.length && all.every((p) => p.isr.length >= replicas && p.leader >= 0)) return true;
    } catch { /* a broker is still starting */ }
    await sleep(1000);
  }
  return false;
}

type Fault = 'kill' | 'postgres' | 'kafka' | 'leader' | 'network' | 'scale-up' | 'scale-down';

/**
 * The faults in random order, and the scaling steps in theirs (up to max, down to 1, back to the start) spread
 * among them at random places.
 */
function schedule(rand: () => number, faults: Fault[], instances: number, maxInstances: number): Fault[] {
  const shuffled = [...faults];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  if (instances <= 1 && maxInstances <= 1) return shuffled;
  const top = Math.max(instances, maxInstances);
  const steps: Fault[] = [
    ...Array<Fault>(top - instances).fill('scale-up'), ...Array<Fault>(top - 1).fill('scale-down'), ...Array<Fault>(instances - 1).fill('scale-up'),
  ];
  const out: Fault[] = [];
  let si = 0;
  let fi = 0;
  while (si < steps.length || fi < shuffled.length) {
    const takeStep = fi >= shuffled.length || (si < steps.length && rand() < (steps.length - si) / (steps.length - si + shuffled.length - fi));
    out.push(takeStep ? steps[si++] : shuffled[fi++]);
  }
  return out;
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
  const brokers = v.brokers as number;
  const instances = v.instances as number;
  const maxInstances = instances > 1 ? Math.max(instances, v['max-instances'] as number) : 1;
  const leaderKills = v['kill-broker'] as number;
  const networkFaults = v['network-stalls'] as number;
  const stallMs = (v['stall-seconds'] as number) * 1000;
  if (brokers === 2) throw new ConfigError('--brokers: 1 (the single broker) or 3 (the three-node cluster)');
  if (leaderKills && brokers !== 3) throw new ConfigError('--kill-broker needs --brokers 3: a single broker has no replica to take over');
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
  if (brokers === 3) {
    await startCluster((line) => log(line));
    process.env.KAFKA_BROKERS = localClusterBrokers();
  }
  const endpoints = await ensureInfrastructure({ postgres: true }, (line) => log(line));
  const ownKafka = brokers === 1 && !v['no-restarts'] && (!external.kafka || external.kafka === localKafkaBrokers()) && (await kafkaStatus()).pid !== undefined;
  const ownPostgres = !v['no-restarts'] && (!external.postgres || external.postgres === localDatabaseUrl()) && (await postgresStatus()).running;
  if (!ownKafka && brokers === 1) log(v['no-restarts'] ? 'no Kafka restart (--no-restarts)' : `KAFKA_BROKERS=${external.kafka} is not the embedded broker: skipping the Kafka restart`);
  if (!ownPostgres) log(v['no-restarts'] ? 'no Postgres restart (--no-restarts)' : 'DATABASE_URL is not the embedded PostgreSQL: skipping the Postgres restart');

  const conn = kafkaConnection(endpoints.kafkaBrokers, []);
  const db = database(endpoints.databaseUrl, 2);
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), `chaos-${id}-`));
  const reportFile = path.join(logDir, 'generator-report.json');
  const env: NodeJS.ProcessEnv = { ...process.env, KAFKA_BROKERS: endpoints.kafkaBrokers, DATABASE_URL: endpoints.databaseUrl, METRICS_PORT: '0' };
  // The ingest reaches Postgres through the proxy when there are network faults to make; everything else directly.
  let proxy: TcpProxy | undefined;
  let ingestEnv = env;
  if (networkFaults) {
    const url = new URL(endpoints.databaseUrl);
    proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.port = String(await proxy.listen());
    ingestEnv = { ...env, DATABASE_URL: url.toString() };
  }
  log(`run ${id}: ${records} records at ${rate}/s, invalid ratio ${v['invalid-ratio']}, ${brokers} broker${brokers > 1 ? 's' : ''}, `
    + `${instances} instance${instances > 1 ? `s (scaled 1..${maxInstances}, ${v.assignment})` : ''}, ${kills} kills, ${leaderKills} leader kills, ${networkFaults} network faults, seed ${seed}; `
    + `topic ${topic}, table ${table}, group ${group}; logs in ${logDir}`);

  await ensureTopics(conn, [{ name: topic, partitions: v.partitions as number }, { name: dlq, partitions: v.partitions as number }]);
  const ingestArgs = ['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', String(v.partitions),
    '--batch-size', String(v['batch-size']), '--batch-wait-ms', '200',
    // A killed member's partitions go to its successor once the session times out: keep that short.
    '--kafka', 'session.timeout.ms=6000', '--kafka', 'heartbeat.interval.ms=1000', '--kafka', `partition.assignment.strategy=${v.assignment}`];
  const failures: string[] = [];
  /** What went wrong with a child, with the end of its log, so that a CI run's failure says why without the log dir. */
  const exitFailure = (name: string, code: number | NodeJS.Signals | null, when: string): string => {
    const file = path.join(logDir, `${name}.log`);
    const tail = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-25).map((l) => `    ${name}| ${l}`).join('\n') : '';
    return `${name}${when ? ` ${when}` : ''} ${typeof code === 'string' ? `was ended by ${code}` : `exited with code ${code}`} (see ${file})${tail ? `; its log ends:\n${tail}` : ''}`;
  };
  let ingests = 0;
  const startIngest = (): Child => {
    const c = startTopology(`ingest-${++ingests}`, ingestArgs, ingestEnv, logDir);
    void c.exited.then((code) => {
      if (!c.killedByUs) failures.push(exitFailure(c.name, code, 'by itself:'));
    });
    return c;
  };
  const stopChild = async (c: Child, signal: NodeJS.Signals): Promise<number | NodeJS.Signals | null> => {
    c.killedByUs = true;
    c.child.kill(signal);
    return c.exited;
  };
  const logOf = (c: Child) => path.join(logDir, `${c.name}.log`);
  /** Waits until the instance has installed its signal handlers and joined (its first assignment), up to 60 s. */
  const joined = async (c: Child) => {
    for (let waited = 0; waited < 60_000 && !/assigned /.test(fs.readFileSync(logOf(c), 'utf8')); waited += 200) await sleep(200);
  };

  const generator = startTopology('generator', ['orders-generator', '--topic', topic, '--partitions', String(v.partitions), '--count', String(records),
    '--rate', String(rate), '--invalid-ratio', String(v['invalid-ratio']), '--seed', String(seed), '--report', reportFile], env, logDir);
  generator.killedByUs = true; // its exit is checked below
  let generatorDone = false;
  void generator.exited.then(() => { generatorDone = true; });
  const fleet: Child[] = Array.from({ length: instances }, () => startIngest());

  const faults: Fault[] = [
    ...Array<Fault>(kills).fill('kill'), ...Array<Fault>(leaderKills).fill('leader'), ...Array<Fault>(networkFaults).fill('network'),
    ...(ownPostgres ? ['postgres' as const] : []), ...(ownKafka ? ['kafka' as const] : []),
  ];
  const events = schedule(rand, faults, instances, maxInstances);
  const duration = (records / rate) * 1000;
  const done = { kills: 0, postgres: 0, kafka: 0, leaders: 0, network: 0, minInstances: instances, maxInstances: instances };
  let mark = (await committed(db, group, topic)) ?? 0;
  /** The replicas of a restarted broker catching up (the next leader kill waits for it, and so does the end). */
  let resync: Promise<void> = Promise.resolve();
  for (let i = 0; i < events.length; i++) {
    const at = started + duration * (0.08 + (0.8 * (i + rand())) / events.length);
    const waitFrom = Date.now();
    for (;;) {
      const now = (await committed(db, group, topic)) ?? mark;
      const progressed = now > mark;
      if (progressed && Date.now() >= at) break;
      // Once the generator is done there may be no more progress to wait for (the backlog read): a moment, then on.
      if (generatorDone && Date.now() - waitFrom > 2_000) break;
      if (Date.now() - waitFrom > 180_000) {
        failures.push(`no committed progress for 180 s before fault ${i + 1} (${events[i]})`);
        break;
      }
      await sleep(200);
    }
    if (failures.length) break;
    await sleep(rand() * 1500);
    const event = events[i];
    const n = `${i + 1}/${events.length}`;
    if (event === 'kill') {
      const k = Math.floor(rand() * fleet.length);
      const victim = fleet[k];
      await stopChild(victim, 'SIGKILL');
      done.kills++;
      fleet[k] = startIngest();
      log(`fault ${n}: SIGKILL ${victim.name} (kill ${done.kills}/${kills}); ${fleet[k].name} takes its place`);
    } else if (event === 'scale-up') {
      fleet.push(startIngest());
      done.maxInstances = Math.max(done.maxInstances, fleet.length);
      log(`step ${n}: scaled up to ${fleet.length} instances (${fleet.at(-1)!.name} joins)`);
    } else if (event === 'scale-down') {
      const leaving = fleet.splice(Math.floor(rand() * fleet.length), 1)[0];
      await joined(leaving);
      const code = await stopChild(leaving, 'SIGTERM');
      if (code !== 0) failures.push(exitFailure(leaving.name, code, 'on SIGTERM:'));
      done.minInstances = Math.min(done.minInstances, fleet.length);
      log(`step ${n}: scaled down to ${fleet.length} instance${fleet.length > 1 ? 's' : ''} (${leaving.name} left with SIGTERM, code ${code})`);
    } else if (event === 'postgres') {
      log(`fault ${n}: stopping PostgreSQL (immediate mode, like a crash)`);
      await stopPostgres('immediate');
      await sleep(2000 + rand() * 2000);
      await startPostgres((line) => log(line));
      done.postgres++;
      log('PostgreSQL is back');
    } else if (event === 'kafka') {
      log(`fault ${n}: stopping the Kafka broker`);
      await stopKafka();
      await sleep(2000 + rand() * 2000);
      await startKafka((line) => log(line));
      done.kafka++;
      log('Kafka is back');
    } else if (event === 'leader') {
      await resync; // a second broker down while the first is still catching up would take writes below min.insync.replicas
      const parts = await describePartitions(conn, topic);
      const p = parts[Math.floor(rand() * parts.length)];
      log(`fault ${n}: SIGKILL broker ${p.leader}, the leader of ${topic}[${p.partition}] (leader kill ${done.leaders + 1}/${leaderKills})`);
      await killClusterNode(p.leader);
      await sleep(3000 + rand() * 3000);
      await startClusterNode(p.leader, (line) => log(line));
      done.leaders++;
      log(`broker ${p.leader} is back; the other faults go on while its replicas catch up`);
      const since = Date.now();
      resync = inSync(conn, [topic, dlq], 3, 120_000).then((insync) => {
        log(insync ? `every partition has its 3 replicas in sync again, ${((Date.now() - since) / 1000).toFixed(0)} s after broker ${p.leader}'s restart`
          : `FAILED: the replicas did not come back in sync within 120 s of broker ${p.leader}'s restart`);
        if (!insync) failures.push(`the replicas did not come back in sync within 120 s of broker ${p.leader}'s restart`);
      });
    } else {
      const drop = done.network % 2 === 1;
      log(`fault ${n}: network ${drop ? 'drop' : 'stall'} between the ingest and Postgres for ${stallMs / 1000} s (${drop ? 'every connection reset, new ones refused' : 'every byte held'})`);
      await (drop ? proxy!.drop(stallMs) : proxy!.stall(stallMs));
      done.network++;
      log(`network fault over (${proxy!.counts.accepted} connections so far, ${proxy!.counts.reset} reset, ${proxy!.counts.refused} refused)`);
    }
    mark = (await committed(db, group, topic)) ?? mark;
  }

  await resync;
  const generatorCode = await generator.exited;
  if (generatorCode !== 0) failures.push(exitFailure('generator', generatorCode, ''));
  // Drain: a SIGTERM lets each running instance commit what it has (once it is up: its handlers must be installed);
  // then one more runs until idle.
  for (const c of fleet) await joined(c);
  const codes = await Promise.all(fleet.map((c) => stopChild(c, 'SIGTERM')));
  codes.forEach((code, k) => {
    if (code !== 0) failures.push(exitFailure(fleet[k].name, code, 'on SIGTERM:'));
  });
  log(`generator done; ${fleet.map((c) => c.name).join(', ')} stopped with SIGTERM; draining with a last ingest (--stop-when-idle 5)`);
  const last = startTopology(`ingest-${++ingests}-final`, [...ingestArgs, '--stop-when-idle', '5'], env, logDir);
  const lastCode = await last.exited;
  if (lastCode !== 0) failures.push(exitFailure(last.name, lastCode, ''));
  await proxy?.close();

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

  log(`valid ${valid.size}, invalid ${invalid.size}; ${done.kills} kills, ${done.postgres} Postgres restart, ${done.kafka} Kafka restart, ${done.leaders} leader kills, ${done.network} network faults; `
    + `instances ${done.minInstances}..${done.maxInstances}; ${ingests} ingest processes; ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const ok = duplicated === 0 && missing === 0 && rows.length === valid.size && dead.length === invalid.size && failures.length === 0;
  for (const f of failures) log(`FAILED: ${f}`);
  if (!v.keep) {
    await db.none(`DROP TABLE IF EXISTS ${quotedTable}`);
    await db.none('DELETE FROM pipeline_offsets WHERE group_id = $1', [group]);
    await deleteTopics(conn, [topic, dlq]);
    if (ok) fs.rmSync(logDir, { recursive: true, force: true });
  }
  const invalidShare = report.produced ? `${((100 * invalid.size) / report.produced).toFixed(2)}% invalid` : 'none invalid';
  process.stdout.write(`produced ${report.produced}, written ${rows.length}, dead-lettered ${dead.length}, duplicated ${duplicated}, missing ${missing}; `
    + `${invalidShare}, ${brokers} broker${brokers > 1 ? 's' : ''}, instances ${done.minInstances}..${done.maxInstances}, ${done.leaders} leader kills, ${done.kills} ingest kills, `
    + `${done.postgres} Postgres crash${done.postgres === 1 ? '' : 'es'}, ${done.kafka} Kafka restart${done.kafka === 1 ? '' : 's'}, ${done.network} network stall${done.network === 1 ? '' : 's'}\n`);
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

import { spawn, type ChildProcess } from 'node:child_process';
import Kafka from 'node-rdkafka';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deleteTopics, ensureTopics, kafkaConnection, type KafkaConnection, KafkaProducer, projectRoot, tableName, type Database } from '../pipeline/index.ts';
import { topologyNodeFlags } from '../scripts/node-flags.mjs';
import { num, parseFlags } from './lib/args.ts';
import { procSample, timedRun, type ProcSample } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { cpuDelta, infraCpu } from './lib/infra-cpu.ts';
import { anchorsDir, compileJava, fetchArchive, fetchJars } from './lib/maven.ts';
import { createOrdersTable, prefillOrders } from './lib/orders.ts';
import { fmtInt, fmtMb, fmtRatio, printTable, writeBarChart, writeJson } from './lib/report.ts';

export const anchorsHelp = 'anchors [--count N (1000000; --quick: 100000)] [--partitions 6] [--per-message-seconds 60] [--grace-ms 10000] [--only ours,connect,spark,per-message,revenue,kstreams]';

const KAFKA_VERSION = '4.1.1';
const DEBEZIUM_VERSION = '3.5.0.Final';
const SPARK_VERSION = '4.0.0';

const LABELS: Record<string, string> = { ours: 'orders-ingest', per_message: 'per-message consumer', connect: `Kafka Connect + Debezium JDBC`, spark: 'Spark Structured Streaming' };

/** One consumer's drain of the pre-filled topic into a table, timed from the table's side. */
interface SinkResult {
  rows: number;
  /** First row visible to last, polling count(*) every 0.5 s; and from the process' start to the last row. */
  seconds: number;
  secondsFromStart: number;
  recordsPerS: number;
  cpu: { process: number; postgres?: number; kafka?: number };
  peakRssBytes: number;
}

function sampler(pid: number): { samples: ProcSample[]; stop: () => void } {
  const samples: ProcSample[] = [];
  const timer = setInterval(() => { const s = procSample(pid); if (s) samples.push(s); }, 250);
  return { samples, stop: () => clearInterval(timer) };
}

/**
 * Runs a consumer (a child process) until `expected` rows are in `table`, or no row came for `idleS` seconds after
 * the first, or `maxS` passed; then stops it. The same clock for every consumer: count(*) every 0.5 s.
 */
async function drainIntoTable(db: Database, table: string, expected: number, start: () => ChildProcess, o: { maxS: number; idleS?: number }): Promise<SinkResult> {
  const before = await infraCpu();
  const startedAt = performance.now();
  const child = start();
  let exited = false;
  child.on('exit', () => { exited = true; });
  const s = sampler(child.pid!);
  let first = 0;
  let last = 0;
  let rows = 0;
  let lastCpu: ProcSample | undefined;
  let firstCpu: ProcSample | undefined;
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const n = Number((await db.one<{ n: string }>(`SELECT count(*) AS n FROM ${tableName(table)}`).catch(() => ({ n: '0' }))).n);
    const now = performance.now();
    if (n > rows) {
      if (!first) first = now;
      last = now;
      rows = n;
    }
    lastCpu = procSample(child.pid!) ?? lastCpu;
    firstCpu ??= s.samples[0];
    if (rows >= expected || exited) break;
    if (first && now - last > (o.idleS ?? 15) * 1000) break;
    if (!first && now - startedAt > 180_000) {
      child.kill('SIGKILL');
      throw new Error(`no row in ${table} after 180 s: see the consumer's output (logged above)`);
    }
    if (now - startedAt > o.maxS * 1000) break;
  }
  const after = await infraCpu();
  s.stop();
  if (!exited) {
    child.kill('SIGTERM');
    await new Promise((r) => { child.once('exit', r); setTimeout(r, 30_000); });
  }
  const infra = cpuDelta(before, after);
  const seconds = (last - first) / 1000;
  return {
    rows, seconds, secondsFromStart: (last - startedAt) / 1000, recordsPerS: seconds > 0 ? rows / seconds : NaN,
    cpu: { process: lastCpu?.cpuSeconds ?? NaN, postgres: infra.postgres, kafka: infra.kafka },
    peakRssBytes: Math.max(0, ...s.samples.map((x) => x.hwmBytes)),
  };
}

const perMillion = (cpu: number | undefined, rows: number) => (cpu === undefined || !rows ? NaN : (cpu / rows) * 1e6);

/**
 * npm run bench -- anchors: orders-ingest against what its users would pick instead, in the same minutes, on the
 * same data: Kafka Connect with Debezium's JDBC sink, Spark Structured Streaming, the original per-message
 * consumer; and for the windowed aggregation orders-revenue against Kafka Streams computing the same windows
 * (records/s, and records it dropped as late). Everything Java is fetched with Maven into .local/anchors/ once.
 */
export async function anchorsBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', count: 'number', partitions: 'number', 'per-message-seconds': 'number', 'grace-ms': 'number', only: 'string', echo: 'bool' });
  const count = num(f, 'count', f.quick ? 100_000 : 1_000_000);
  const partitions = num(f, 'partitions', 6);
  const graceMs = num(f, 'grace-ms', 10_000);
  const only = new Set(((f.only as string | undefined) ?? 'ours,connect,spark,per-message,revenue,kstreams').split(','));
  const env = await benchEnv();
  const topics: string[] = [];
  const tables: string[] = [];
  const result: Record<string, unknown> = { benchmark: 'anchors', at: new Date().toISOString(), machine: machine(), parameters: { count, partitions, grace_ms: graceMs } };
  const rows: [string, string, string?][] = [];
  try {
    // 1. Into Postgres: the same topic of orders, every one valid, into a table shaped like orders_data.
    const topic = fresh('bench_anchors');
    topics.push(topic);
    const pre = await prefillOrders(env.kafka, topic, { count, partitions, invalidRatio: 0, seed: 5, batch: 10_000 });
    log(`pre-filled ${fmtInt(pre.produced)} orders in ${pre.seconds.toFixed(1)} s`);
    const sinks: Record<string, SinkResult> = {};
    if (only.has('ours')) {
      const table = fresh('bench_anchors_ours');
      tables.push(table);
      log('orders-ingest (defaults)');
      sinks.ours = await drainIntoTable(env.db, table, pre.valid, () => spawn(process.execPath, [...topologyNodeFlags(), '--import', 'tsx', 'pipeline/cli/main.ts', 'orders-ingest',
        '--topic', topic, '--table', table, '--group-id', fresh('bench_anchors'), '--stop-when-idle', '3', '--metrics-port', '0'],
      { cwd: projectRoot, env: env.childEnv, stdio: f.echo ? 'inherit' : 'ignore' }), { maxS: 900 });
    }
    if (only.has('per-message')) {
      const table = fresh('bench_anchors_pm');
      tables.push(table);
      await createOrdersTable(env.db, table);
      const maxS = num(f, 'per-message-seconds', 60);
      log(`the per-message consumer (one INSERT per order), for ${maxS} s`);
      sinks.per_message = await drainIntoTable(env.db, table, pre.valid, () => spawn(process.execPath, ['--import', 'tsx', 'benchmarks/anchors/per-message.ts', topic, table, fresh('bench_anchors')],
        { cwd: projectRoot, env: env.childEnv, stdio: f.echo ? 'inherit' : 'ignore' }), { maxS });
    }
    if (only.has('connect')) {
      const etopic = fresh('bench_anchors_env');
      topics.push(etopic);
      const bytes = await envelopeTopic(env.kafka, topic, etopic, partitions, count);
      result.connect_envelope_bytes_per_message = bytes.envelope;
      result.plain_bytes_per_message = bytes.plain;
      log(`the same orders in Connect's JSON envelope: ${bytes.envelope.toFixed(0)} bytes a message against ${bytes.plain.toFixed(0)}`);
      const table = fresh('bench_anchors_connect');
      tables.push(table);
      await createOrdersTable(env.db, table);
      log(`Kafka Connect ${KAFKA_VERSION} standalone + Debezium JDBC sink ${DEBEZIUM_VERSION}`);
      sinks.connect = await drainIntoTable(env.db, table, pre.valid, () => startConnect(env.endpoints.kafkaBrokers, env.endpoints.databaseUrl, etopic, table), { maxS: 900, idleS: 30 });
    }
    if (only.has('spark')) {
      const table = fresh('bench_anchors_spark');
      tables.push(table);
      await createOrdersTable(env.db, table);
      log(`Spark Structured Streaming ${SPARK_VERSION}, local[2], foreachBatch JDBC append`);
      sinks.spark = await drainIntoTable(env.db, table, pre.valid, () => startSpark(env.endpoints.kafkaBrokers, env.endpoints.databaseUrl, topic, table), { maxS: 900, idleS: 30 });
    }
    for (const [name, r] of Object.entries(sinks)) {
      result[`${name}_records_per_s`] = r.recordsPerS;
      result[`${name}_rows`] = r.rows;
      result[`${name}_seconds_from_start`] = r.secondsFromStart;
      result[`${name}_cpu_s_per_million`] = perMillion(r.cpu.process, r.rows);
      result[`${name}_postgres_cpu_s_per_million`] = perMillion(r.cpu.postgres, r.rows);
      result[`${name}_kafka_cpu_s_per_million`] = perMillion(r.cpu.kafka, r.rows);
      result[`${name}_peak_rss_bytes`] = r.peakRssBytes;
      rows.push([LABELS[name] ?? name, `${fmtInt(r.recordsPerS)} rows/s`,
        `${fmtInt(r.rows)} rows; ${(perMillion(r.cpu.process, r.rows)).toFixed(1)} + ${(perMillion(r.cpu.postgres, r.rows)).toFixed(1)} (Postgres) CPU s per 1M; peak RSS ${fmtMb(r.peakRssBytes)}`]);
    }
    for (const other of ['connect', 'spark', 'per_message']) {
      if (!sinks.ours || !sinks[other]) continue;
      result[`ours_vs_${other}`] = sinks.ours.recordsPerS / sinks[other].recordsPerS;
      rows.push([`orders-ingest ÷ ${LABELS[other]}`, fmtRatio(result[`ours_vs_${other}`] as number)]);
      const total = (r: SinkResult) => perMillion(r.cpu.process + (r.cpu.postgres ?? NaN), r.rows);
      result[`ours_vs_${other}_total_cpu`] = total(sinks.ours) / total(sinks[other]);
      rows.push([`  total CPU per row (process + Postgres), orders-ingest ÷ ${LABELS[other]}`, fmtRatio(result[`ours_vs_${other}_total_cpu`] as number)]);
    }

    // 2. Windowed revenue over pre-filled orders, event time 1 ms a record (many windows, most of them closing).
    if (only.has('revenue') || only.has('kstreams')) {
      const wtopic = fresh('bench_anchors_w');
      topics.push(wtopic);
      const wpre = await prefillOrders(env.kafka, wtopic, { count, partitions, invalidRatio: 0, seed: 7, batch: 10_000, time: { eventTimeStart: Date.UTC(2026, 0, 1), stepMs: 1 } });
      log(`pre-filled ${fmtInt(wpre.produced)} orders with event time 1 ms apart`);
      if (only.has('revenue')) {
        const table = fresh('bench_anchors_rev');
        tables.push(table);
        log('orders-revenue');
        const { seconds, cpuSeconds } = await timedRun({
          env: env.childEnv, count,
          args: ['orders-revenue', '--stop-when-idle', '2', '--topic', wtopic, '--table', table, '--group-id', fresh('bench_anchors'), '--partitions', String(partitions)],
          echo: f.echo === true,
        });
        result.revenue_records_per_s = count / seconds;
        result.revenue_cpu_s_per_million = (cpuSeconds / count) * 1e6;
        rows.push(['orders-revenue', `${fmtInt(count / seconds)} rec/s`, `${((cpuSeconds / count) * 1e6).toFixed(1)} CPU s per 1M; none dropped (it aggregates per source partition)`]);
      }
      if (only.has('kstreams')) {
        const ks = await runKafkaStreams(env.endpoints.kafkaBrokers, wtopic, count, graceMs, topics);
        result.kstreams_records_per_s = ks.records / ks.seconds;
        result.kstreams_dropped_late = ks.dropped_late;
        result.kstreams_cpu_s_per_million = (ks.cpuSeconds / ks.records) * 1e6;
        result.kstreams_peak_rss_bytes = ks.peakRssBytes;
        rows.push([`Kafka Streams ${KAFKA_VERSION} (grace ${graceMs / 1000} s)`, `${fmtInt(ks.records / ks.seconds)} rec/s`,
          `${((ks.cpuSeconds / ks.records) * 1e6).toFixed(1)} CPU s per 1M; dropped ${fmtInt(ks.dropped_late)} as late; peak RSS ${fmtMb(ks.peakRssBytes)}`]);
        if (result.revenue_records_per_s) {
          result.revenue_vs_kstreams = (result.revenue_records_per_s as number) / (result.kstreams_records_per_s as number);
          rows.push(['orders-revenue ÷ Kafka Streams', fmtRatio(result.revenue_vs_kstreams as number)]);
        }
      }
    }
    writeJson('anchors', result);
    printTable(`anchors: ${fmtInt(count)} orders, ${partitions} partitions, ${os.cpus().length} CPUs`, rows);
    const bars = [
      ...(result.ours_records_per_s ? [{ label: 'orders-ingest', value: result.ours_records_per_s as number, subject: true }] : []),
      ...(result.connect_records_per_s ? [{ label: 'Kafka Connect + Debezium JDBC', value: result.connect_records_per_s as number }] : []),
      ...(result.spark_records_per_s ? [{ label: 'Spark Structured Streaming', value: result.spark_records_per_s as number }] : []),
      ...(result.per_message_records_per_s ? [{ label: 'per-message consumer', value: result.per_message_records_per_s as number }] : []),
      ...(result.revenue_records_per_s ? [{ label: 'orders-revenue', value: result.revenue_records_per_s as number, subject: true }] : []),
      ...(result.kstreams_records_per_s ? [{ label: `Kafka Streams (dropped ${fmtInt(result.kstreams_dropped_late as number)} late)`, value: result.kstreams_records_per_s as number }] : []),
    ];
    writeBarChart('anchors', `records/s over ${fmtInt(count)} orders, same machine, same minutes (higher is better)`, 'rec/s', bars);
  } finally {
    for (const t of tables) await env.db.none(`DROP TABLE IF EXISTS ${tableName(t)}`).catch(() => undefined);
    await deleteTopics(env.kafka, topics).catch(() => undefined);
  }
}

/** The JSON envelope Kafka Connect's JsonConverter needs (schemas.enable=true): the order's schema with every value. */
const ORDER_CONNECT_SCHEMA = JSON.stringify({
  type: 'struct', name: 'order', optional: false, fields: [
    // Debezium's own semantic types, so that its JDBC sink binds a uuid and a timestamptz (plain strings go in as text,
    // which Postgres will not put into those columns).
    { field: 'order_id', type: 'string', name: 'io.debezium.data.Uuid' }, { field: 'order_number', type: 'int64' }, { field: 'product', type: 'string' },
    { field: 'quantity', type: 'int32' }, { field: 'price', type: 'double' }, { field: 'ordered_at', type: 'string', name: 'io.debezium.time.ZonedTimestamp' },
  ],
});

/** The same orders as `from`, each wrapped in the envelope, into a topic of their own; and the bytes per message. */
async function envelopeTopic(conn: KafkaConnection, from: string, to: string, partitions: number, count: number): Promise<{ plain: number; envelope: number }> {
  await ensureTopics(conn, [{ name: to, partitions }]);
  const producer = new KafkaProducer(conn, { 'client.id': 'bench-envelope' });
  await producer.connect();
  let bytes = 0;
  let plain = 0;
  try {
    for (const m of await readAll(conn, from, count)) {
      const value = `{"schema":${ORDER_CONNECT_SCHEMA},"payload":${m.value!.toString()}}`;
      bytes += value.length;
      plain += m.value!.length;
      const out = { topic: to, key: m.key as Buffer, value: Buffer.from(value), partition: m.partition };
      if (!producer.tryProduce(out)) await producer.produce(out);
    }
    await producer.flush(300_000);
  } finally {
    await producer.disconnect();
  }
  return { plain: plain / count, envelope: bytes / count };
}

async function readAll(conn: KafkaConnection, topic: string, count: number): Promise<Kafka.Message[]> {
  const consumer = new Kafka.KafkaConsumer({ 'bootstrap.servers': conn.brokers, 'group.id': fresh('bench-reader'), 'enable.auto.commit': false }, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (e) => (e ? reject(e) : resolve())));
  consumer.subscribe([topic]);
  const out: Kafka.Message[] = [];
  try {
    while (out.length < count) {
      out.push(...await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(10_000, (e, m) => (e ? reject(e) : resolve(m)))));
    }
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
  return out;
}

/**
 * Kafka Connect standalone with Debezium's JDBC sink, tuned as its users would for a bulk load: two tasks,
 * batch.size 20,000 (consumers fetching as many), UNNEST inserts, plain INSERT mode into the pre-made table,
 * stringtype=unspecified so that Postgres casts the uuid and timestamptz text itself.
 */
function startConnect(brokers: string, databaseUrl: string, topic: string, table: string): ChildProcess {
  const libs = fetchJars('kafka-connect', [
    { group: 'org.apache.kafka', artifact: 'connect-runtime', version: KAFKA_VERSION }, { group: 'org.apache.kafka', artifact: 'connect-json', version: KAFKA_VERSION },
  ], log);
  const plugins = fetchArchive('debezium-jdbc', `io.debezium:debezium-connector-jdbc:${DEBEZIUM_VERSION}:tar.gz:plugin`, log);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'connect-'));
  const db = new URL(databaseUrl);
  fs.writeFileSync(path.join(dir, 'worker.properties'), `bootstrap.servers=${brokers}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=${dir}/offsets
offset.flush.interval.ms=10000
plugin.path=${plugins}
plugin.discovery=service_load
listeners=http://127.0.0.1:0
connector.client.config.override.policy=All
consumer.max.poll.records=20000
consumer.fetch.max.bytes=52428800
consumer.max.partition.fetch.bytes=10485760
consumer.auto.offset.reset=earliest
`);
  fs.writeFileSync(path.join(dir, 'jdbc-sink.properties'), `name=${table}
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=2
topics=${topic}
connection.url=jdbc:postgresql://${db.hostname}:${db.port || 5432}${db.pathname}?stringtype=unspecified&reWriteBatchedInserts=true
connection.username=${decodeURIComponent(db.username)}
connection.password=${decodeURIComponent(db.password)}
insert.mode=insert
primary.key.mode=none
schema.evolution=none
collection.name.format=${table}
batch.size=20000
dialect.postgres.unnest.insert.enabled=true
`);
  return spawnLogged('java', ['-Xmx1g', '-cp', `${libs}/*`, 'org.apache.kafka.connect.cli.ConnectStandalone', path.join(dir, 'worker.properties'), path.join(dir, 'jdbc-sink.properties')], dir);
}

/** A JVM whose output goes to <dir>/output.log (a pipe nobody reads would stop it once full). */
function spawnLogged(cmd: string, args: string[], dir: string): ChildProcess {
  const out = fs.openSync(path.join(dir, 'output.log'), 'a');
  const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  log(`  its output: ${path.join(dir, 'output.log')}`);
  return child;
}

/** What Spark on Java 17 needs opened (as spark-submit's launcher adds). */
const SPARK_JAVA_OPTIONS = ['java.lang', 'java.lang.invoke', 'java.lang.reflect', 'java.io', 'java.net', 'java.nio', 'java.util', 'java.util.concurrent',
  'java.util.concurrent.atomic', 'sun.nio.ch', 'sun.nio.cs', 'sun.security.action', 'sun.util.calendar'].map((p) => `--add-opens=java.base/${p}=ALL-UNNAMED`);

/** Spark Structured Streaming 4.0.0 on local[2] (SparkIngest.java), fetched and compiled once. */
function startSpark(brokers: string, databaseUrl: string, topic: string, table: string): ChildProcess {
  const libs = fetchJars('spark', [
    { group: 'org.apache.spark', artifact: 'spark-sql_2.13', version: SPARK_VERSION }, { group: 'org.apache.spark', artifact: 'spark-sql-kafka-0-10_2.13', version: SPARK_VERSION },
    { group: 'org.postgresql', artifact: 'postgresql', version: '42.7.7' },
  ], log);
  const classes = compileJava(path.join(anchorsDir, 'spark'), [path.join(projectRoot, 'benchmarks/anchors/SparkIngest.java')], `${libs}/*`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spark-'));
  const db = new URL(databaseUrl);
  return spawnLogged('java', ['-Xmx2g', ...SPARK_JAVA_OPTIONS, '-Djdk.reflect.useDirectMethodHandle=false', '-cp', `${classes}:${libs}/*`, 'SparkIngest', brokers, topic,
    `jdbc:postgresql://${db.hostname}:${db.port || 5432}${db.pathname}`, decodeURIComponent(db.username), decodeURIComponent(db.password), table, path.join(dir, 'checkpoint')], dir);
}

async function topicNames(brokers: string): Promise<string[]> {
  const p = new Kafka.Producer({ 'bootstrap.servers': brokers });
  await new Promise<void>((resolve, reject) => p.connect({ timeout: 10_000 }, (e) => (e ? reject(e) : resolve())));
  try {
    const meta = await new Promise<Kafka.Metadata>((resolve, reject) => p.getMetadata({ timeout: 10_000 }, (e, m) => (e ? reject(e) : resolve(m))));
    return meta.topics.map((t) => t.name);
  } finally {
    await new Promise<void>((resolve) => p.disconnect(() => resolve()));
  }
}

/** The Kafka Streams anchor: fetched and compiled once, run on the pre-filled topic, its JSON line read. */
async function runKafkaStreams(brokers: string, topic: string, count: number, graceMs: number, topics: string[]): Promise<{ records: number; seconds: number; dropped_late: number; cpuSeconds: number; peakRssBytes: number }> {
  const dir = path.join(anchorsDir, 'kafka-streams');
  const libs = fetchJars('kafka-streams', [{ group: 'org.apache.kafka', artifact: 'kafka-streams', version: KAFKA_VERSION }, { group: 'org.slf4j', artifact: 'slf4j-nop', version: '1.7.36' }], log);
  const classes = compileJava(dir, [path.join(projectRoot, 'benchmarks/anchors/KStreamsRevenue.java')], `${libs}/*`);
  const appId = fresh('bench_anchors_ks');
  const output = `${appId}-windows`;
  topics.push(output);
  await ensureTopics(kafkaConnection(brokers, []), [{ name: output, partitions: 6 }]); // its sink topic: the broker creates none by itself
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kstreams-'));
  log(`Kafka Streams ${KAFKA_VERSION}: groupBy → repartition → 1-minute tumbling window, grace ${graceMs} ms → suppress, exactly_once_v2, 2 threads`);
  const child = spawn('java', ['-Xmx1g', '-cp', `${classes}:${libs}/*`, 'KStreamsRevenue', brokers, topic, appId, output, String(graceMs), String(count), stateDir],
    { cwd: projectRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const s = sampler(child.pid!);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await new Promise((r) => child.on('exit', r));
  s.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
  topics.push(...(await topicNames(brokers)).filter((t) => t.startsWith(`${appId}-`))); // its repartition topic and changelog
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) throw new Error(`Kafka Streams printed no result:\n${out}`);
  const r = JSON.parse(line) as { records: number; seconds: number; dropped_late: number; complete: boolean };
  if (!r.complete) throw new Error(`Kafka Streams saw ${r.records} of ${count} records before its timeout`);
  // Its CPU while it processed: the share of its samples up to the last record (start-up included, as for ours).
  const cpuSeconds = s.samples.at(-1)?.cpuSeconds ?? NaN;
  return { ...r, cpuSeconds, peakRssBytes: Math.max(0, ...s.samples.map((x) => x.hwmBytes)) };
}

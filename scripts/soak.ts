/**
 * npm run soak -- --minutes M --rate R [--sample-s 10] [--partitions P] [--invalid-ratio F] [--warmup-minutes W] [--keep]
 *
 * orders-generator and orders-ingest at a steady rate for M minutes, on the embedded default (or KAFKA_BROKERS /
 * DATABASE_URL). Every sample the ingest's RSS and heap, its consumer lag and the p99 of its flushes over the last
 * interval are read from its /metrics, and kept. At the end the generator stops, the ingest drains and stops, and
 * exactly-once is checked by count: every valid order once in the table (no order_id twice), every invalid one in the
 * dead-letter topic. It writes benchmarks/results/soak-latest.json and soak-latest.svg, and ends with the line
 * `RSS slope S MB/hour, largest lag L; produced N, written W, dead-lettered D, duplicated X, missing M`.
 * The slope is a least-squares fit of RSS over time after the warm-up (the first minutes fill caches and arenas).
 */
import {
  closeDatabases, ConfigError, database, deleteTopics, describePartitions, ensureTopics, errorMessage, helpText, kafkaConnection, type OptionSpec, parseArgs, tableName,
} from '../pipeline/index.ts';
import { ensureInfrastructure } from '../pipeline/local/index.ts';
import { histogramBuckets, histogramQuantile, metricSum, procSample, runTopology, type TopologyRun } from '../benchmarks/lib/child.ts';
import { machine, fresh } from '../benchmarks/lib/env.ts';
import { resultsDir, writeJson } from '../benchmarks/lib/report.ts';
import { writeLineCharts, type Series } from '../benchmarks/lib/line-chart.ts';

const SPECS: OptionSpec[] = [
  { name: 'minutes', type: 'number', min: 0.1, default: 30, help: 'how long the generator runs' },
  { name: 'rate', type: 'int', min: 1, default: 50_000, help: 'orders per second' },
  { name: 'sample-s', type: 'number', min: 1, default: 10, help: 'seconds between two samples' },
  { name: 'warmup-minutes', type: 'number', min: 0, default: 5, help: 'samples before this are left out of the RSS slope' },
  { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic' },
  { name: 'invalid-ratio', type: 'number', min: 0, max: 1, default: 0.001, help: 'share of invalid orders (dead-lettered)' },
  { name: 'keep', type: 'bool', help: 'keep the topic and table at the end' },
  { name: 'help', type: 'bool', help: 'show this help' },
];

const log = (line: string) => process.stderr.write(`${new Date().toISOString()} soak: ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SoakSample {
  /** Minutes since the generator started. */
  minute: number;
  rss_mb: number;
  heap_mb: number;
  lag: number;
  /** p99 of the flushes that ended in the interval before the sample (NaN: none). */
  flush_p99_ms: number;
  rows_per_s: number;
}

/** Least-squares slope of y over x. */
export function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den ? num / den : NaN;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2), SPECS);
  if (args.names.length) throw new ConfigError(`unexpected argument "${args.names[0]}"`);
  if (args.values.help) {
    process.stdout.write(`usage: npm run soak -- [flags]\n\nflags:\n${helpText(SPECS)}\n`);
    return 0;
  }
  const v = args.values;
  const minutes = v.minutes as number;
  const rate = v.rate as number;
  const sampleMs = (v['sample-s'] as number) * 1000;
  const partitions = v.partitions as number;
  const endpoints = await ensureInfrastructure({ postgres: true }, log);
  const env: NodeJS.ProcessEnv = { ...process.env, KAFKA_BROKERS: endpoints.kafkaBrokers, DATABASE_URL: endpoints.databaseUrl };
  const conn = kafkaConnection(endpoints.kafkaBrokers, []);
  const db = database(endpoints.databaseUrl, 2);
  const id = fresh('soak');
  const topic = id;
  const dlq = `${topic}.dlq`;
  const table = `${id}_orders`;
  await ensureTopics(conn, [{ name: topic, partitions }, { name: dlq, partitions }]);
  log(`${minutes} minutes at ${rate} orders/s (invalid ratio ${v['invalid-ratio']}); topic ${topic}, table ${table}; a sample every ${sampleMs / 1000} s`);

  const ingest = await runTopology({
    env, sampleMs: 1000, watch: ['pipeline_consumer_lag'],
    args: ['orders-ingest', '--topic', topic, '--table', table, '--group-id', id, '--partitions', String(partitions)],
  });
  const generator = await runTopology({
    env, sampleMs: 5000, watch: ['pipeline_records_produced_total'],
    args: ['orders-generator', '--topic', topic, '--partitions', String(partitions), '--rate', String(rate), '--invalid-ratio', String(v['invalid-ratio'])],
  });
  const failures: string[] = [];
  const exitedEarly = (run: TopologyRun, name: string) => void run.exited.then((code) => {
    if (!stopping) failures.push(`${name} exited by itself with code ${code}: ${run.stderr.slice(-5).join(' | ')}`);
  });
  let stopping = false;
  exitedEarly(ingest, 'orders-ingest');
  exitedEarly(generator, 'orders-generator');

  const samples: SoakSample[] = [];
  const start = Date.now();
  let prevHist = new Map<number, number>();
  let prevRows = 0;
  let prevAt = start;
  while (Date.now() - start < minutes * 60_000 && !failures.length) {
    await sleep(sampleMs - ((Date.now() - start) % sampleMs));
    let text: string;
    try {
      const res = await fetch(`http://127.0.0.1:${ingest.port}/metrics`, { signal: AbortSignal.timeout(5000) });
      text = await res.text();
    } catch (err) {
      log(`cannot read the ingest's metrics: ${errorMessage(err)}`);
      continue;
    }
    const now = Date.now();
    const proc = procSample(ingest.child.pid!);
    const hist = histogramBuckets(text, 'pipeline_sink_flush_duration_seconds');
    const rows = metricSum(text, 'pipeline_sink_rows_written_total');
    const s: SoakSample = {
      minute: Number(((now - start) / 60_000).toFixed(3)),
      rss_mb: Number(((proc?.rssBytes ?? metricSum(text, 'process_resident_memory_bytes')) / 1048576).toFixed(1)),
      heap_mb: Number((metricSum(text, 'nodejs_heap_size_used_bytes') / 1048576).toFixed(1)),
      lag: metricSum(text, 'pipeline_consumer_lag'),
      flush_p99_ms: Number((histogramQuantile(text, 'pipeline_sink_flush_duration_seconds', 0.99, prevHist) * 1000).toFixed(1)),
      rows_per_s: Math.round((rows - prevRows) / ((now - prevAt) / 1000)),
    };
    prevHist = hist;
    prevRows = rows;
    prevAt = now;
    samples.push(s);
    log(`t=${s.minute.toFixed(1)} min: RSS ${s.rss_mb} MB, heap ${s.heap_mb} MB, lag ${s.lag}, flush p99 ${s.flush_p99_ms} ms, ${s.rows_per_s} rows/s`);
  }

  // The end: the generator stops (its report gives what it sent), the ingest reads the rest and stops.
  stopping = true;
  generator.stop();
  await generator.exited;
  const m = /produced (\d+) records to \S+ \(valid (\d+), invalid (\d+)/.exec(generator.stderr.join('\n'));
  if (!m) failures.push(`the generator printed no report: ${generator.stderr.slice(-3).join(' | ')}`);
  const report = { produced: Number(m?.[1] ?? 0), valid: Number(m?.[2] ?? 0), invalid: Number(m?.[3] ?? 0) };
  log(`generator stopped: ${report.produced} produced; waiting for the ingest to commit everything`);
  const drainStart = Date.now();
  for (;;) {
    const { n } = await db.one<{ n: string }>('SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint AS n FROM pipeline_offsets WHERE group_id = $1 AND topic = $2', [id, topic]);
    if (Number(n) >= report.produced) break;
    if (Date.now() - drainStart > 600_000) {
      failures.push(`the ingest did not commit everything within 10 minutes of the generator's end (${n} of ${report.produced})`);
      break;
    }
    await sleep(1000);
  }
  ingest.stop();
  const ingestCode = await ingest.exited;
  if (ingestCode !== 0) failures.push(`orders-ingest exited with code ${ingestCode} on SIGTERM`);
  const quoted = tableName(table);
  const rows = await db.one<{ n: number; distinct: number }>(`SELECT count(*)::int AS n, count(DISTINCT order_id)::int AS distinct FROM ${quoted}`);
  const dead = (await describePartitions(conn, dlq)).reduce((n, p) => n + p.high - p.low, 0);
  const duplicated = rows.n - rows.distinct + Math.max(0, dead - report.invalid);
  const missing = Math.max(0, report.valid - rows.distinct) + Math.max(0, report.invalid - dead);

  const warm = samples.filter((s) => s.minute >= (v['warmup-minutes'] as number));
  const rssSlope = slope(warm.map((s) => [s.minute / 60, s.rss_mb]));
  const maxLag = Math.max(0, ...samples.map((s) => s.lag));
  const p99s = samples.map((s) => s.flush_p99_ms).filter(Number.isFinite).sort((a, b) => a - b);
  const result = {
    machine: machine(), minutes, rate, sample_s: sampleMs / 1000, warmup_minutes: v['warmup-minutes'],
    rss_slope_mb_per_hour: Number(rssSlope.toFixed(2)), max_lag: maxLag,
    rss_mb_first: warm[0]?.rss_mb, rss_mb_last: warm.at(-1)?.rss_mb, rss_mb_max: Math.max(...samples.map((s) => s.rss_mb)),
    flush_p99_ms_median: p99s[Math.floor(p99s.length / 2)], flush_p99_ms_max: p99s.at(-1),
    produced: report.produced, written: rows.n, dead_lettered: dead, duplicated, missing, drain_s: Math.round((Date.now() - drainStart) / 1000),
    samples,
  };
  const json = writeJson('soak', result);
  const series: Series[] = [
    { title: 'RSS (MB)', points: samples.map((s) => [s.minute, s.rss_mb]) },
    { title: 'heap used (MB)', points: samples.map((s) => [s.minute, s.heap_mb]) },
    { title: 'consumer lag (records)', points: samples.map((s) => [s.minute, s.lag]) },
    { title: 'flush p99 (ms)', points: samples.filter((s) => Number.isFinite(s.flush_p99_ms)).map((s) => [s.minute, s.flush_p99_ms]) },
  ];
  const svg = writeLineCharts('soak', `orders-ingest soak: ${minutes} min at ${rate.toLocaleString('en-US')} orders/s`,
    `RSS slope ${rssSlope.toFixed(2)} MB/hour after minute ${v['warmup-minutes']}; largest lag ${maxLag.toLocaleString('en-US')}; ${rows.n.toLocaleString('en-US')} rows, duplicated ${duplicated}, missing ${missing}`, series, 'minutes');
  log(`wrote ${json} and ${svg} (results in ${resultsDir})`);
  if (!v.keep) {
    await db.none(`DROP TABLE IF EXISTS ${quoted}`);
    await db.none('DELETE FROM pipeline_offsets WHERE group_id = $1', [id]);
    await deleteTopics(conn, [topic, dlq]);
  }
  for (const f of failures) log(`FAILED: ${f}`);
  process.stdout.write(`RSS slope ${rssSlope.toFixed(2)} MB/hour, largest lag ${maxLag}; produced ${report.produced}, written ${rows.n}, dead-lettered ${dead}, duplicated ${duplicated}, missing ${missing}\n`);
  return failures.length || duplicated || missing || rows.n !== report.valid ? 1 : 0;
}

main().then(
  async (code) => {
    await closeDatabases();
    process.exit(code);
  },
  (err) => {
    process.stderr.write(`${err instanceof ConfigError ? '' : 'soak: error: '}${errorMessage(err)}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  },
);

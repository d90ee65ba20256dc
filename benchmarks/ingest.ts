import {
  batchSize, type Database, deleteTopics, type KafkaConnection, type Order, pgp, tableName, validateOrder,
} from '../pipeline/index.ts';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { num, parseFlags } from './lib/args.ts';
import { timedSource } from './lib/baseline.ts';
import { histogramQuantile, metricSum, runTopology, sampleAt, threadCpu, type ThreadCpu, type TopologyRun } from './lib/child.ts';
import { benchEnv, fresh, log, machine, type BenchEnv } from './lib/env.ts';
import { cpuDelta, infraCpu, type InfraCpu } from './lib/infra-cpu.ts';
import { createOrdersTable, ORDER_COLUMNS, prefillOrders } from './lib/orders.ts';
import { INGEST_BATCH_SIZE, INGEST_SINK_CONNECTIONS } from '../topologies/orders-ingest.ts';
import { fmtInt, fmtMb, fmtMs, fmtRatio, printTable, writeBarChart, writeJson, type Row } from './lib/report.ts';

const FLAGS = {
  quick: 'bool', count: 'number', partitions: 'number', 'batch-size': 'number', 'invalid-ratio': 'number', seed: 'number',
  'insert-rows': 'number', 'skip-baseline': 'bool', 'cpu-prof': 'string', keep: 'bool', echo: 'bool', ingest: 'string', 'node-options': 'string', instances: 'number',
  'compare-main-thread': 'bool', compare: 'string', rounds: 'number', 'sink-connections': 'number',
} as const;

export const ingestHelp = `ingest [--count N (1000000; --quick: 100000)] [--partitions 6] [--batch-size 10000] [--invalid-ratio 0]
       [--seed 7] [--insert-rows 1000] [--skip-baseline] [--cpu-prof DIR] [--keep] [--echo] [--ingest "extra flags"] [--node-options "..."]
       [--instances 1 (orders-ingest processes in one consumer group)]
       [--compare "flags" (also time orders-ingest with these extra flags, right after it, for an A/B in the same minutes;
        here and in --ingest, a NAME=value word sets the child's environment, and node:--flag is an option of its node)]
       [--compare-main-thread (the same as --compare "--stage-threads 0")]
       [--rounds 1 (every phase this many times; the round with the median ingest / min(ceilings) is reported, with
        every round's ratios)]
       [--sink-connections N (the ingest's --sink-connections, ${INGEST_SINK_CONNECTIONS} by default; ceiling B uses as many)]`;

export interface Phase {
  records: number;
  seconds: number;
  cpuSeconds?: number;
  infra: InfraCpu;
}

export const rate = (p: Phase) => p.records / p.seconds;

/**
 * Between phases: the tables written so far vacuumed and analysed now, then a checkpoint, so that an autovacuum of the
 * previous phase's million rows (a few CPU seconds) does not run during the next phase and count against it.
 */
export async function settle(db: Database, written: string[] = []): Promise<void> {
  for (const t of written) await db.none(`VACUUM (ANALYZE) ${t}`).catch(() => undefined);
  await db.none('CHECKPOINT');
}

/**
 * Ceiling A: the pipeline's own KafkaSource reading (packed, as orders-ingest reads) and dropping every record, with
 * the largest prefetch measured fastest here (4 MB a partition, 50 MB fetches, 32 MB queued), so the ceiling is not
 * lowered by the pipeline's memory-saving defaults. `stock` reads with node-rdkafka's own consume instead (an
 * object per message), for comparison: what the Kafka side allows a consumer written the usual way.
 */
const LOOP_DELAY = new URL('./lib/loop-delay.mjs', import.meta.url).href;

export const FAST_READ = { 'fetch.max.bytes': 52_428_800, 'max.partition.fetch.bytes': 4_194_304, 'queued.max.messages.kbytes': 32_768 };

async function kafkaCeiling(env: BenchEnv, topic: string, count: number, read: 'packed' | 'stock'): Promise<Phase> {
  const { source, startedAt } = await timedSource(env.kafka, topic, fresh('bench_ceiling_a'), FAST_READ);
  let n = 0;
  let bytes = 0;
  let cpu0 = process.cpuUsage();
  let infra0 = await infraCpu();
  try {
    while (n < count) {
      let got: number;
      if (read === 'packed') {
        const { batch } = await source.poll(2000);
        got = batchSize(batch);
        bytes += batch.values.length;
      } else {
        const batch = await source.pollMessages(2000);
        got = batch.length;
        for (const m of batch) bytes += m.value?.length ?? 0;
      }
      if (n === 0 && got) {
        cpu0 = process.cpuUsage();
        infra0 = await infraCpu();
      }
      n += got;
    }
  } finally {
    const end = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const infra = cpuDelta(infra0, await infraCpu());
    await source.disconnect();
    // eslint-disable-next-line no-unsafe-finally
    return { records: n, seconds: (end - startedAt()) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, infra };
  }
}

/**
 * Ceiling B: the same rows' COPY from memory, one COPY and one transaction per batch, on `connections` connections at
 * once (the ingest's own number of sink connections by default: each takes every n-th batch, as each of the ingest's
 * lanes takes its own partitions). `text` is what the ingest sends; `binary` the same rows in binary COPY format.
 */
async function copyCeiling(db: Database, table: string, batches: (string | Buffer)[], connections: number, format: 'text' | 'binary' = 'text'): Promise<Phase> {
  await createOrdersTable(db, table);
  const conns = await Promise.all(Array.from({ length: connections }, () => db.connect()));
  try {
    const sql = `COPY ${table} (${ORDER_COLUMNS.join(', ')}) FROM STDIN${format === 'binary' ? ' (FORMAT binary)' : ''}`;
    const infra0 = await infraCpu();
    const started = performance.now();
    await Promise.all(conns.map(async (conn, c) => {
      for (let i = c; i < batches.length; i += connections) {
        await conn.none('BEGIN');
        const stream = (conn.client as unknown as { query(q: unknown): NodeJS.WritableStream }).query(copyFrom(sql));
        const buf = typeof batches[i] === 'string' ? Buffer.from(batches[i] as string, 'utf8') : batches[i] as Buffer;
        const chunks: Buffer[] = [];
        for (let j = 0; j < buf.length; j += 1 << 16) chunks.push(buf.subarray(j, j + (1 << 16)));
        await pipeline(Readable.from(chunks), stream);
        await conn.none('COMMIT');
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const infra = cpuDelta(infra0, await infraCpu());
    const records = Number((await db.one(`SELECT count(*) AS n FROM ${table}`)).n);
    return { records, seconds, infra };
  } finally {
    for (const conn of conns) conn.done();
  }
}

/** What the rows of a table hold (every column orders-ingest writes), to check that two ways of writing them agree. */
async function tableDigest(db: Database, table: string): Promise<string> {
  const r = await db.one(`SELECT count(*) AS n, sum(hashtextextended(concat_ws('|', ${ORDER_COLUMNS.join(', ')}), 0)::numeric) AS h FROM ${table}`);
  return `${r.n}:${r.h}`;
}

/**
 * Baseline: what a hand-written consumer does. node-rdkafka's own consume (KafkaSource.pollMessages), JSON.parse, the same ajv validator,
 * multi-row INSERT statements of insertRows rows, one transaction per batch, then a Kafka commit. No overlap.
 */
async function insertBaseline(kafka: KafkaConnection, db: Database, topic: string, table: string, o: { count: number; batch: number; insertRows: number }): Promise<Phase> {
  await createOrdersTable(db, table);
  const cs = new pgp.helpers.ColumnSet(ORDER_COLUMNS, { table: new pgp.helpers.TableName({ table: table.replace(/"/g, '') }) });
  const valid = validateOrder();
  const { source, startedAt } = await timedSource(kafka, topic, fresh('bench_baseline'));
  let n = 0;
  let pending: Order[] = [];
  let last = new Map<number, number>();
  let cpu0 = process.cpuUsage();
  let infra0 = await infraCpu();
  const write = async () => {
    const rows = pending;
    pending = [];
    await db.tx(async (t) => {
      for (let i = 0; i < rows.length; i += o.insertRows) await t.none(pgp.helpers.insert(rows.slice(i, i + o.insertRows), cs));
    });
    source.commitForMonitoring([...last].map(([partition, offset]) => ({ partition, offset: offset + 1 })));
    last = new Map();
  };
  while (n < o.count) {
    const batch = await source.pollMessages(2000);
    if (n === 0 && batch.length) {
      cpu0 = process.cpuUsage();
      infra0 = await infraCpu();
    }
    for (const m of batch) {
      n++;
      last.set(m.partition, m.offset);
      try {
        const v = JSON.parse(m.value!.toString('utf8')) as unknown;
        if (valid(v)) pending.push(v);
      } catch { /* a hand-written consumer would log and skip it */ }
    }
    if (pending.length >= o.batch || n >= o.count) await write();
  }
  const seconds = (performance.now() - startedAt()) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const infra = cpuDelta(infra0, await infraCpu());
  await source.disconnect();
  return { records: n, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, infra };
}

export interface IngestResult extends Phase {
  peakRss: number;
  steadyRss: number;
  startRss: number;
  flushP50: number;
  flushP99: number;
  flushes: number;
  /** Records a poll returned, on average (pipeline_poll_records). */
  meanPoll: number;
  loopDelay: Record<string, number>;
  totalCpuSeconds: number;
  /** The process's CPU seconds from assignment to the last row, by thread (lib/child.ts threadCpu), over its instances. */
  threads: ThreadCpu;
  rows: number;
  exitCode: number;
}

/** A NAME=value word of --ingest or --compare: set in the child's environment rather than passed as a flag. */
const isEnv = (word: string) => /^[A-Z_][A-Z0-9_]*=/.test(word);
/** A node:--flag word of --ingest or --compare: an option of the child's node (V8 flags included). */
const isNodeArg = (word: string) => word.startsWith('node:');

/** The real orders-ingest topology as a child process, timed from partition assignment to the last committed row. */
export async function ingestRun(env: BenchEnv, topic: string, table: string, o: {
  count: number; batch: number; partitions: number; cpuProf?: string; echo: boolean; extra: string[]; nodeArgs: string[]; instances: number;
  /** Called at every sample with performance.now() and the records handled (written or dead-lettered) so far. */
  progress?: (at: number, handled: number) => void;
}): Promise<IngestResult> {
  const group = fresh('bench_ingest');
  let doneAt = 0;
  let infraEnd: InfraCpu | undefined;
  const runs: TopologyRun[] = [];
  // Several instances share the group, the way Kafka Streams scales out: partitions are spread over them.
  const handled = () => runs.reduce((sum, r) => sum + metricSum(r.lastWatched, 'pipeline_sink_rows_written_total') + metricSum(r.lastWatched, 'pipeline_records_invalid_total'), 0);
  for (let i = 0; i < o.instances; i++) {
    runs.push(await runTopology({
      env: { ...env.childEnv, ...Object.fromEntries(o.extra.filter(isEnv).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)])) },
      args: ['orders-ingest', '--stop-when-idle', '2', '--topic', topic, '--table', table, '--group-id', group,
        '--batch-size', String(o.batch), '--partitions', String(o.partitions), ...o.extra.filter((w) => !isEnv(w) && !isNodeArg(w))],
      extraNodeArgs: ['--import', LOOP_DELAY, ...(o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProf}`] : []), ...o.nodeArgs, ...o.extra.filter(isNodeArg).map((w) => w.slice(5))],
      marks: { assigned: /assigned .* partitions/ },
      watch: ['pipeline_sink_rows_written_total', 'pipeline_records_invalid_total'],
      echo: o.echo,
      onSample: (_r, text) => {
        if (doneAt || !text) return;
        o.progress?.(performance.now(), handled());
        if (handled() >= o.count) {
          doneAt = performance.now();
          void infraCpu().then((c) => { infraEnd = c; });
        }
      },
    }));
  }
  let infra0: InfraCpu = {};
  let exited = false;
  const codes = Promise.all(runs.map((r) => r.exited));
  void codes.then(() => { exited = true; });
  const startOf = () => Math.min(...runs.map((r) => r.marks.get('assigned') ?? Infinity));
  const waitAssigned = (async () => {
    while (!Number.isFinite(startOf()) && !exited) await new Promise((r) => setTimeout(r, 20));
    infra0 = await infraCpu();
  })();
  const code = Math.max(...(await codes));
  await waitAssigned.catch(() => undefined);
  const start = startOf();
  if (code !== 0 || !Number.isFinite(start) || !doneAt) {
    throw new Error(`orders-ingest exited with ${code} before committing ${o.count} records:\n${runs.flatMap((r) => r.stderr.slice(-20)).join('\n')}`);
  }
  const sum = (f: (r: TopologyRun) => number) => runs.reduce((acc, r) => acc + f(r), 0);
  const cpuAt = (r: TopologyRun, at: number) => sampleAt(r.samples, at)?.cpuSeconds ?? 0;
  const threads: ThreadCpu = { main: 0, worker: 0, librdkafka: 0, other: 0, others: [] };
  for (const r of runs) {
    const t = threadCpu(r.child.pid!, sampleAt(r.samples, start)!, sampleAt(r.samples, doneAt)!);
    threads.main += t.main;
    threads.worker += t.worker;
    threads.librdkafka += t.librdkafka;
    threads.other += t.other;
    threads.others.push(...t.others);
  }
  const window = runs.flatMap((r) => r.samples.filter((s) => s.at >= start && s.at <= doneAt).map((s) => s.rssBytes)).sort((a, b) => a - b);
  const rows = Number((await env.db.one(`SELECT count(*) AS n FROM ${tableName(table)}`)).n);
  const metrics = runs.map((r) => r.lastMetrics).join('\n');
  return {
    records: o.count, seconds: (doneAt - start) / 1000, cpuSeconds: sum((r) => cpuAt(r, doneAt) - cpuAt(r, start)),
    infra: infraEnd ? cpuDelta(infra0, infraEnd) : {},
    // per instance: the largest of them
    peakRss: Math.max(...runs.flatMap((r) => r.samples.map((s) => s.hwmBytes))),
    startRss: Math.max(...runs.map((r) => sampleAt(r.samples, start)?.rssBytes ?? 0)),
    steadyRss: window.length ? window[Math.floor(window.length / 2)] : NaN,
    flushP50: histogramQuantile(metrics, 'pipeline_sink_flush_duration_seconds', 0.5),
    flushP99: histogramQuantile(metrics, 'pipeline_sink_flush_duration_seconds', 0.99),
    flushes: metricSum(metrics, 'pipeline_sink_flush_duration_seconds_count'),
    meanPoll: metricSum(metrics, 'pipeline_poll_records_sum') / metricSum(metrics, 'pipeline_poll_records_count'),
    totalCpuSeconds: sum((r) => r.samples.at(-1)?.cpuSeconds ?? 0),
    threads,
    loopDelay: loopDelay(runs[0].stderr),
    rows, exitCode: code,
  };
}

/** The child's event-loop delay (benchmarks/lib/loop-delay.mjs), over its whole life. */
function loopDelay(stderr: string[]): Record<string, number> {
  const line = stderr.find((l) => l.startsWith('[bench] event-loop delay'));
  const out: Record<string, number> = {};
  if (line) for (const m of line.matchAll(/(p50|p99|max|mean) ([\d.]+)/g)) out[`${m[1]}_ms`] = Number(m[2]);
  return out;
}

function threadsPerMillion(r: IngestResult) {
  const t = r.threads;
  return {
    main: perMillion(r, t.main), worker: perMillion(r, t.worker), librdkafka: perMillion(r, t.librdkafka), other: perMillion(r, t.other),
    each_other: t.others.map((v) => perMillion(r, v)),
  };
}

function threadsRow(label: string, r: IngestResult): Row {
  const t = threadsPerMillion(r);
  return [label, [t.main, t.worker, t.librdkafka, t.other].map((v) => v.toFixed(2)).join(' / '),
    `worker: the busiest other Node thread; other (V8's and libuv's): ${t.each_other.slice(0, 6).map((v) => v.toFixed(2)).join(', ')}`];
}

export function perMillion(p: Phase, s: number | undefined): number {
  return s === undefined ? NaN : (s / p.records) * 1e6;
}

export async function ingestBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, FLAGS);
  const quick = f.quick === true;
  const count = num(f, 'count', quick ? 100_000 : 1_000_000);
  const partitions = num(f, 'partitions', 6);
  const batch = num(f, 'batch-size', INGEST_BATCH_SIZE); // orders-ingest's
  // Ceiling B commits at least 20,000 rows a transaction: more rows a transaction only make COPY alone faster, and the
  // ingest's flushes (two lanes of 10,000, each reading ahead up to twice that) reach that size.
  const ceilingBatch = Math.max(batch, 20_000);
  const invalidRatio = num(f, 'invalid-ratio', 0);
  const seed = num(f, 'seed', 7);
  const insertRows = num(f, 'insert-rows', 1000);
  const instances = num(f, 'instances', 1);
  const env = await benchEnv();
  const topic = fresh('bench_orders');
  const rounds = num(f, 'rounds', 1);
  const tables: string[] = [];
  log(`ingest benchmark: ${count} records, ${partitions} partitions, batch ${batch}, topic ${topic}${rounds > 1 ? `, ${rounds} rounds` : ''}`);
  try {
    const pre = await prefillOrders(env.kafka, topic, { count, partitions, invalidRatio, seed, batch: ceilingBatch, copy: 'text+binary' });
    log(`pre-filled ${pre.produced} records (${pre.valid} valid) in ${pre.seconds.toFixed(1)} s`);
    // By default the child runs as `npm run topology` runs it (package.json: a 256 MB old-space cap).
    const nodeArgs = typeof f['node-options'] === 'string' ? f['node-options'].split(/\s+/).filter(Boolean) : ['--max-old-space-size=256'];
    const extra = typeof f.ingest === 'string' ? f.ingest.split(/\s+/).filter(Boolean) : [];
    const connections = num(f, 'sink-connections', INGEST_SINK_CONNECTIONS);
    if (f['sink-connections'] !== undefined) extra.push('--sink-connections', String(connections));
    const compareFlags = typeof f.compare === 'string' ? f.compare.split(/\s+/).filter(Boolean) : f['compare-main-thread'] ? ['--stage-threads', '0'] : undefined;

    /** Every phase once, back to back on the same topic, so that its ratios compare numbers of the same minutes. */
    const measureRound = async (round: number) => {
      const names = { ceiling: fresh('bench_copy'), ceiling1: fresh('bench_copy1'), binary: fresh('bench_copy_bin'), ingest: fresh('bench_ingest'), compared: fresh('bench_ingest_b'), baseline: fresh('bench_insert') };
      const t = Object.fromEntries(Object.entries(names).map(([k, v]) => [k, tableName(v)])) as Record<keyof typeof names, string>;
      tables.push(...Object.values(t));
      if (rounds > 1) log(`round ${round + 1} of ${rounds}`);
      await settle(env.db);
      log('ceiling A: KafkaSource reading only');
      const a = await kafkaCeiling(env, topic, count, 'packed');
      log(`  ${fmtInt(rate(a))} records/s`);
      log("  and with node-rdkafka's own consume (an object per message)");
      const stock = await kafkaCeiling(env, topic, count, 'stock');
      log(`  ${fmtInt(rate(stock))} records/s`);

      await settle(env.db);
      log(`ceiling B: COPY from memory, ${connections} connection(s) as the ingest has, one transaction per batch`);
      const b = await copyCeiling(env.db, t.ceiling, pre.copyBatches, connections);
      log(`  ${fmtInt(rate(b))} rows/s`);
      await settle(env.db, [t.ceiling]);
      log('  and in binary COPY format, the same rows and connections');
      const bin = await copyCeiling(env.db, t.binary, pre.binaryBatches, connections, 'binary');
      log(`  ${fmtInt(rate(bin))} rows/s`);
      const [textDigest, binaryDigest] = [await tableDigest(env.db, t.ceiling), await tableDigest(env.db, t.binary)];
      if (textDigest !== binaryDigest) throw new Error(`the binary COPY wrote other rows than the text one (${binaryDigest} against ${textDigest})`);
      await settle(env.db, [t.binary]);
      log('  and in text on one connection');
      const b1 = connections === 1 ? b : await copyCeiling(env.db, t.ceiling1, pre.copyBatches, 1);
      log(`  ${fmtInt(rate(b1))} rows/s`);

      await settle(env.db, [t.ceiling1]);
      log('orders-ingest (child process)');
      const ing = await ingestRun(env, topic, names.ingest, { count, batch, partitions, cpuProf: f['cpu-prof'] as string | undefined, echo: f.echo === true, extra, nodeArgs, instances });
      log(`  ${fmtInt(rate(ing))} records/s, ${ing.rows} rows`);
      if (ing.rows !== pre.valid) throw new Error(`orders-ingest wrote ${ing.rows} rows, expected ${pre.valid}`);

      let compared: IngestResult | undefined;
      if (compareFlags) {
        await settle(env.db, [t.ceiling, t.ingest]);
        log(`orders-ingest ${compareFlags.join(' ')} (child process)`);
        compared = await ingestRun(env, topic, names.compared, { count, batch, partitions, echo: f.echo === true, extra: [...extra, ...compareFlags], nodeArgs, instances });
        log(`  ${fmtInt(rate(compared))} records/s, ${compared.rows} rows`);
        if (compared.rows !== pre.valid) throw new Error(`orders-ingest ${compareFlags.join(' ')} wrote ${compared.rows} rows, expected ${pre.valid}`);
      }

      let base: Phase | undefined;
      if (!f['skip-baseline']) {
        await settle(env.db, [t.ceiling, t.ingest, t.compared]);
        log(`baseline: the same consumer with multi-row INSERT (${insertRows} rows a statement)`);
        base = await insertBaseline(env.kafka, env.db, topic, t.baseline, { count, batch, insertRows });
        log(`  ${fmtInt(rate(base))} records/s`);
      }
      // The next round starts from an empty database again.
      if (!f.keep) for (const x of Object.values(t)) await env.db.none(`DROP TABLE IF EXISTS ${x}`).catch(() => undefined);
      return { a, stock, b, bin, b1, ing, compared, base, vsMin: rate(ing) / Math.min(rate(a), rate(b)), vsBase: base ? rate(ing) / rate(base) : NaN };
    };
    const all: Awaited<ReturnType<typeof measureRound>>[] = [];
    for (let r = 0; r < rounds; r++) all.push(await measureRound(r));
    // The round whose ingest / min(ceilings) is the median stands for the run: its numbers are all of the same minutes.
    const { a, stock, b, bin, b1, ing, compared, base } = [...all].sort((x, y) => x.vsMin - y.vsMin)[Math.floor((all.length - 1) / 2)];
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)];

    const minCeiling = Math.min(rate(a), rate(b));
    const result = {
      benchmark: 'ingest',
      at: new Date().toISOString(),
      machine: machine(),
      parameters: { count, partitions, batch_size: batch, sink_connections: connections, ceiling_copy_batch: ceilingBatch, ceiling_copy_connections: connections, invalid_ratio: invalidRatio, seed, insert_rows_per_statement: insertRows, key: 'uuidv7', ingest_extra_flags: extra, ingest_node_options: nodeArgs, ingest_instances: instances },
      ingest_records_per_s: rate(ing),
      ingest_compared: compared ? {
        extra_flags: compareFlags, records_per_s: rate(compared), cpu_seconds_per_million: perMillion(compared, compared.cpuSeconds),
        postgres_cpu_seconds_per_million: perMillion(compared, compared.infra.postgres), steady_rss_bytes: compared.steadyRss, mean_poll_records: compared.meanPoll,
        thread_cpu_seconds_per_million: threadsPerMillion(compared),
      } : null,
      ceiling_kafka_records_per_s: rate(a),
      ceiling_kafka_stock_consume_records_per_s: rate(stock),
      ceiling_copy_records_per_s: rate(b),
      ceiling_copy_binary_records_per_s: rate(bin),
      ceiling_copy_one_connection_records_per_s: rate(b1),
      binary_vs_text_copy: rate(bin) / rate(b),
      baseline_insert_records_per_s: base ? rate(base) : null,
      ingest_vs_min_ceiling: rate(ing) / minCeiling,
      ingest_vs_min_ceiling_binary: rate(ing) / Math.min(rate(a), rate(bin)),
      ingest_vs_baseline: base ? rate(ing) / rate(base) : null,
      rounds: all.map((r) => ({
        ingest_records_per_s: rate(r.ing), ceiling_kafka_records_per_s: rate(r.a), ceiling_copy_records_per_s: rate(r.b),
        ceiling_copy_binary_records_per_s: rate(r.bin), ceiling_copy_one_connection_records_per_s: rate(r.b1),
        postgres_cpu_seconds_per_million_copy_text: perMillion(r.b, r.b.infra.postgres), postgres_cpu_seconds_per_million_copy_binary: perMillion(r.bin, r.bin.infra.postgres),
        baseline_insert_records_per_s: r.base ? rate(r.base) : null, ingest_vs_min_ceiling: r.vsMin, ingest_vs_baseline: r.base ? r.vsBase : null,
        ...(r.compared ? { compared_records_per_s: rate(r.compared), compared_cpu_seconds_per_million: perMillion(r.compared, r.compared.cpuSeconds), ingest_cpu_seconds_per_million: perMillion(r.ing, r.ing.cpuSeconds) } : {}),
      })),
      median_over_rounds: { ingest_vs_min_ceiling: median(all.map((r) => r.vsMin)), ingest_vs_baseline: base ? median(all.map((r) => r.vsBase)) : null },
      ingest_seconds: ing.seconds,
      ingest_cpu_seconds_per_million: perMillion(ing, ing.cpuSeconds),
      ingest_thread_cpu_seconds_per_million: threadsPerMillion(ing),
      ingest_total_cpu_seconds: ing.totalCpuSeconds,
      ingest_peak_rss_bytes: ing.peakRss,
      ingest_steady_rss_bytes: ing.steadyRss,
      ingest_rss_at_assignment_bytes: ing.startRss,
      ingest_flush_p50_seconds: ing.flushP50,
      ingest_flush_p99_seconds: ing.flushP99,
      ingest_flushes: ing.flushes,
      ingest_mean_poll_records: ing.meanPoll,
      ingest_event_loop_delay: ing.loopDelay,
      postgres_cpu_seconds_per_million: {
        ingest: perMillion(ing, ing.infra.postgres), ceiling_kafka: perMillion(a, a.infra.postgres), ceiling_copy: perMillion(b, b.infra.postgres),
        ceiling_copy_binary: perMillion(bin, bin.infra.postgres), ceiling_copy_one_connection: perMillion(b1, b1.infra.postgres), baseline_insert: base ? perMillion(base, base.infra.postgres) : null,
      },
      postgres_cpu_utilisation: {
        ingest: (ing.infra.postgres ?? NaN) / ing.seconds, ceiling_copy: (b.infra.postgres ?? NaN) / b.seconds, ceiling_copy_binary: (bin.infra.postgres ?? NaN) / bin.seconds,
        ceiling_copy_one_connection: (b1.infra.postgres ?? NaN) / b1.seconds, baseline_insert: base ? (base.infra.postgres ?? NaN) / base.seconds : null,
      },
      kafka_broker_cpu_seconds_per_million: { ingest: perMillion(ing, ing.infra.kafka), ceiling_kafka: perMillion(a, a.infra.kafka) },
      consumer_cpu_seconds_per_million: { ceiling_kafka: perMillion(a, a.cpuSeconds), ceiling_kafka_stock_consume: perMillion(stock, stock.cpuSeconds), baseline_insert: base ? perMillion(base, base.cpuSeconds) : null },
      targets: { vs_min_ceiling: 0.6, vs_baseline: 2.5, records_per_s: 100_000, steady_rss_bytes: 300 * 1048576 },
    };
    const file = writeJson('ingest', result);
    const rows: Row[] = [
      [instances > 1 ? `orders-ingest (${instances} processes)` : 'orders-ingest (child process)', `${fmtInt(rate(ing))} rec/s`, `${ing.seconds.toFixed(2)} s, ${fmtInt(ing.flushes)} flushes, polls of ${fmtInt(ing.meanPoll)} on average`],
      ...(compared ? [[`orders-ingest ${compareFlags!.join(' ')}`, `${fmtInt(rate(compared))} rec/s`,
        `${perMillion(compared, compared.cpuSeconds).toFixed(2)} CPU s per 1M, Postgres ${perMillion(compared, compared.infra.postgres).toFixed(2)}; steady RSS ${fmtMb(compared.steadyRss)}; polls of ${fmtInt(compared.meanPoll)}`] as Row] : []),
      ['ceiling A: Kafka read only', `${fmtInt(rate(a))} rec/s`, `packed, as orders-ingest reads; ${perMillion(a, a.cpuSeconds).toFixed(2)} CPU s per 1M`],
      ["  node-rdkafka's own consume", `${fmtInt(rate(stock))} rec/s`, `an object per message; ${perMillion(stock, stock.cpuSeconds).toFixed(2)} CPU s per 1M`],
      ['ceiling B: COPY from memory', `${fmtInt(rate(b))} rec/s`, `batches of ${ceilingBatch}, ${connections} connection(s) as the ingest; Postgres ${perMillion(b, b.infra.postgres).toFixed(2)} CPU s per 1M`],
      ['  the same in binary COPY', `${fmtInt(rate(bin))} rec/s`, `${fmtRatio(rate(bin) / rate(b))} of text; Postgres ${perMillion(bin, bin.infra.postgres).toFixed(2)} CPU s per 1M`],
      ['  text on one connection', `${fmtInt(rate(b1))} rec/s`, `Postgres ${perMillion(b1, b1.infra.postgres).toFixed(2)} CPU s per 1M`],
      ['baseline: multi-row INSERT', base ? `${fmtInt(rate(base))} rec/s` : 'skipped', `${insertRows} rows a statement`],
      ['ingest / min(ceilings)', fmtRatio(result.ingest_vs_min_ceiling), 'target >= 0.60'],
      ['  with ceiling B in binary COPY', fmtRatio(result.ingest_vs_min_ceiling_binary), 'the format the ingest writes by default'],
      ['ingest / baseline', base ? fmtRatio(result.ingest_vs_baseline!) : 'n/a', 'target >= 2.50'],
      ['ingest CPU s per 1M records', result.ingest_cpu_seconds_per_million.toFixed(2), `node process (total incl. startup ${ing.totalCpuSeconds.toFixed(1)} s)`],
      threadsRow('  by thread: main / worker / librdkafka / other', ing),
      ...(compared ? [threadsRow(`  the same, ${compareFlags!.join(' ')}`, compared)] : []),
      ['Postgres CPU s per 1M: ingest', result.postgres_cpu_seconds_per_million.ingest.toFixed(2), `busy ${(result.postgres_cpu_utilisation.ingest * 100).toFixed(0)}% of a core`],
      ['Postgres CPU s per 1M: COPY', result.postgres_cpu_seconds_per_million.ceiling_copy.toFixed(2), `busy ${(result.postgres_cpu_utilisation.ceiling_copy * 100).toFixed(0)}% of a core`],
      ['Postgres CPU s per 1M: Kafka read', result.postgres_cpu_seconds_per_million.ceiling_kafka.toFixed(2), 'what it spends when nothing writes (autovacuum, checkpoints)'],
      ['ingest peak RSS', fmtMb(ing.peakRss), `steady (median) ${fmtMb(ing.steadyRss)}, at start ${fmtMb(ing.startRss)}`],
      ['event-loop delay p50 / p99 / max', `${ing.loopDelay.p50_ms ?? NaN} / ${ing.loopDelay.p99_ms ?? NaN} / ${ing.loopDelay.max_ms ?? NaN} ms`, 'what each round trip of a flush waits behind'],
      ['flush latency p50 / p99', `${fmtMs(ing.flushP50)} / ${fmtMs(ing.flushP99)}`, 'BEGIN..COMMIT, from the histogram'],
    ];
    if (all.length > 1) {
      rows.push(...all.map((r, i): Row => [`round ${i + 1}: ingest / min(ceilings), / baseline`, `${fmtRatio(r.vsMin)}, ${r.base ? fmtRatio(r.vsBase) : 'n/a'}`,
        `ingest ${fmtInt(rate(r.ing))}, A ${fmtInt(rate(r.a))}, B ${fmtInt(rate(r.b))}, baseline ${r.base ? fmtInt(rate(r.base)) : 'n/a'}${r.compared ? `, compared ${fmtInt(rate(r.compared))}` : ''} rec/s`]));
      rows.push(['median over rounds', `${fmtRatio(result.median_over_rounds.ingest_vs_min_ceiling)}, ${base ? fmtRatio(result.median_over_rounds.ingest_vs_baseline!) : 'n/a'}`, 'the table above is the median round']);
    }
    printTable(`ingest: ${fmtInt(count)} records, ${partitions} partitions, batch ${fmtInt(batch)}${all.length > 1 ? `, round ${all.indexOf(all.find((r) => r.ing === ing)!) + 1} of ${all.length} (the median)` : ''}`, rows);
    const svg = writeBarChart('ingest', `ingest: ${fmtInt(count)} order records into Postgres, records/s (higher is better)`, 'rec/s', [
      { label: 'orders-ingest', value: rate(ing), subject: true },
      { label: 'ceiling A: Kafka read only', value: rate(a) },
      { label: 'ceiling B: COPY from memory', value: rate(b) },
      { label: 'baseline: multi-row INSERT', value: base ? rate(base) : NaN },
    ], `${result.machine.cpus} cores shared by broker, database and pipeline; ingest/min(ceilings) ${result.ingest_vs_min_ceiling.toFixed(2)}, ingest/baseline ${result.ingest_vs_baseline?.toFixed(2) ?? 'n/a'}`);
    log(`wrote ${file} and ${svg}`);
  } finally {
    if (!f.keep) {
      for (const t of tables) await env.db.none(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
      await deleteTopics(env.kafka, [topic, `${topic}.dlq`]).catch(() => undefined);
    }
  }
}

import {
  deleteTopics, tableName,
} from '../pipeline/index.ts';
import { num, parseFlags } from './lib/args.ts';
import { timedRun, topologyRegistered } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { prefillOrders } from './lib/orders.ts';
import { fmtInt, fmtMb, printTable, writeBarChart, writeJson } from './lib/report.ts';

export const revenueHelp = 'revenue [--topology orders-revenue] [--count N (1000000; --quick: 100000)] [--partitions 6] [--batch-size 10000] [--echo] [--cpu-prof DIR (a CPU profile of the topology)]';

/**
 * A windowed aggregation's throughput on the same kind of pre-filled topic as the ingest benchmark, timed from
 * partition assignment until every record is consumed and the last flush committed. Skips, with a message, when
 * the topology is not registered.
 */
export async function revenueBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', topology: 'string', count: 'number', partitions: 'number', 'batch-size': 'number', echo: 'bool', 'cpu-prof': 'string' });
  const name = (f.topology as string | undefined) ?? 'orders-revenue';
  const count = num(f, 'count', f.quick ? 100_000 : 1_000_000);
  const partitions = num(f, 'partitions', 6);
  const batch = num(f, 'batch-size', 10_000);
  const env = await benchEnv();
  if (!(await topologyRegistered(name, env.childEnv))) {
    process.stdout.write(`revenue: skipped, topology "${name}" is not registered (npm run topology -- --list)\n`);
    return;
  }
  const topic = fresh('bench_revenue');
  const table = fresh('bench_revenue');
  try {
    // Simulated event time, 1 ms a record, so the run spans many one-minute windows and most of them close.
    const pre = await prefillOrders(env.kafka, topic, { count, partitions, invalidRatio: 0, seed: 7, batch, time: { eventTimeStart: Date.UTC(2026, 0, 1), stepMs: 1 } });
    log(`pre-filled ${pre.produced} records in ${pre.seconds.toFixed(1)} s; ${name} (child process)`);
    const { run, seconds, cpuSeconds: cpu } = await timedRun({
      env: env.childEnv, count,
      args: [name, '--stop-when-idle', '2', '--topic', topic, '--table', table, '--group-id', fresh('bench_revenue'), '--partitions', String(partitions), '--batch-size', String(batch)],
      echo: f.echo === true,
      extraNodeArgs: typeof f['cpu-prof'] === 'string' ? ['--cpu-prof', `--cpu-prof-dir=${f['cpu-prof']}`] : [],
    });
    const windows = Number((await env.db.one(`SELECT count(*) AS n FROM ${tableName(table)}`).catch(() => ({ n: NaN }))).n);
    const result = {
      benchmark: 'revenue', at: new Date().toISOString(), machine: machine(), parameters: { topology: name, count, partitions, batch_size: batch, event_time_step_ms: 1 },
      records_per_s: count / seconds, cpu_seconds_per_million: (cpu / count) * 1e6,
      peak_rss_bytes: Math.max(...run.samples.map((s) => s.hwmBytes)), window_rows: windows,
    };
    writeJson('revenue', result);
    printTable(`revenue: ${name} over ${fmtInt(count)} records, ${partitions} partitions`, [
      [`${name} (child process)`, `${fmtInt(result.records_per_s)} rec/s`, `${seconds.toFixed(2)} s`],
      ['CPU s per 1M records', result.cpu_seconds_per_million.toFixed(2)],
      ['peak RSS', fmtMb(result.peak_rss_bytes)],
      ['window rows written', fmtInt(windows)],
    ]);
    writeBarChart('revenue', `${name}: records/s over ${fmtInt(count)} orders (higher is better)`, 'rec/s', [{ label: name, value: result.records_per_s, subject: true }]);
  } finally {
    await env.db.none(`DROP TABLE IF EXISTS ${tableName(table)}`).catch(() => undefined);
    await deleteTopics(env.kafka, [topic, `${topic}.dlq`]).catch(() => undefined);
  }
}

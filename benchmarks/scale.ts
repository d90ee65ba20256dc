import { deleteTopics, tableName } from '../pipeline/index.ts';
import { num, parseFlags } from './lib/args.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { prefillOrders } from './lib/orders.ts';
import { fmtInt, fmtMb, printTable, writeBarChart, writeJson, type Row } from './lib/report.ts';
import { ingestRun, type IngestResult, perMillion, rate, settle } from './ingest.ts';
import { INGEST_BATCH_SIZE, INGEST_SINK_CONNECTIONS } from '../topologies/orders-ingest.ts';

const FLAGS = { quick: 'bool', counts: 'string', connections: 'string', 'connections-count': 'number', partitions: 'number', seed: 'number', echo: 'bool', keep: 'bool' } as const;

export const scaleHelp = `scale [--counts 100000,1000000,10000000 (--quick: 20000,100000,500000)] [--connections 1,2,4]
       [--connections-count 1000000 (the records of the connections runs; --quick: 100000)] [--partitions 6] [--seed 11] [--keep]
       (orders-ingest with its defaults over each count of pre-filled orders into an empty table, then over one count
        with each number of sink connections: records/s, CPU per 1M of the process and of Postgres, the rate in each
        tenth of the run as the table grows, and the table's and its index's size at the end)`;

const list = (s: string | boolean | undefined, dflt: number[]) => (typeof s === 'string' ? s.split(',').map((x) => Number(x.replace(/_/g, ''))) : dflt);

interface ScaleRun {
  label: string;
  records: number;
  connections: number;
  records_per_s: number;
  seconds: number;
  cpu_s_per_million: number;
  postgres_cpu_s_per_million: number;
  /** records/s in each tenth of the records, first to last: flat when the cost per record does not grow with the table. */
  rate_by_tenth: number[];
  /** The last tenth's rate over the second's (the first includes the start, the first flush's wait). */
  last_vs_second_tenth: number;
  table_bytes: number;
  index_bytes: number;
  peak_rss_bytes: number;
}

/**
 * records/s in each tenth of the run, from (time, records handled) samples; none when a tenth is less than two flushes
 * of every connection (rows become visible a flush at a time, so a smaller tenth measures the flushes' steps).
 */
function tenths(points: [number, number][], start: number, count: number, flushRows: number): number[] {
  if (count / 10 < 2 * flushRows) return [];
  const out: number[] = [];
  let prev: [number, number] = [start, 0];
  for (let k = 1; k <= 10; k++) {
    const goal = (count * k) / 10;
    const at = points.find((p) => p[1] >= goal);
    if (!at) break;
    out.push(Math.round((at[1] - prev[1]) / Math.max(1e-3, (at[0] - prev[0]) / 1000)));
    prev = at;
  }
  return out;
}

export async function scaleBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, FLAGS);
  const quick = f.quick === true;
  const counts = list(f.counts, quick ? [20_000, 100_000, 500_000] : [100_000, 1_000_000, 10_000_000]);
  const connectionsList = list(f.connections, [1, 2, 4]);
  const connectionsCount = num(f, 'connections-count', quick ? 100_000 : 1_000_000);
  const partitions = num(f, 'partitions', 6);
  const seed = num(f, 'seed', 11);
  const env = await benchEnv();
  const topics = new Map<number, string>();
  const tables: string[] = [];
  const runs: ScaleRun[] = [];
  const nodeArgs = ['--max-old-space-size=256'];
  log(`scale benchmark: ${counts.join(', ')} records; ${connectionsList.join(', ')} sink connections over ${connectionsCount}; ${partitions} partitions`);
  try {
    for (const count of new Set([...counts, connectionsCount])) {
      const topic = fresh('bench_scale');
      const pre = await prefillOrders(env.kafka, topic, { count, partitions, invalidRatio: 0, seed, batch: INGEST_BATCH_SIZE, copy: 'none' });
      log(`pre-filled ${fmtInt(pre.produced)} records into ${topic} in ${pre.seconds.toFixed(1)} s`);
      topics.set(count, topic);
    }
    const measure = async (label: string, count: number, connections: number) => {
      const name = fresh('bench_scale');
      const table = tableName(name);
      tables.push(table);
      await settle(env.db);
      log(`${label}: orders-ingest over ${fmtInt(count)} records, ${connections} sink connection(s)`);
      const points: [number, number][] = [];
      const r: IngestResult = await ingestRun(env, topics.get(count)!, name, {
        count, batch: INGEST_BATCH_SIZE, partitions, echo: f.echo === true, nodeArgs, instances: 1,
        extra: connections === INGEST_SINK_CONNECTIONS ? [] : ['--sink-connections', String(connections)],
        progress: (at, handled) => points.push([at, handled]),
      });
      if (r.rows !== count) throw new Error(`orders-ingest wrote ${r.rows} rows of ${count}`);
      const size = await env.db.one(`SELECT pg_table_size('${table}')::bigint AS t, pg_indexes_size('${table}')::bigint AS i`);
      // From the last sample with nothing handled yet: the first tenth includes the first flush's wait.
      const byTenth = tenths(points, points.filter((p) => p[1] === 0).at(-1)?.[0] ?? points[0]?.[0] ?? 0, count, INGEST_BATCH_SIZE * connections);
      const run: ScaleRun = {
        label, records: count, connections, records_per_s: rate(r), seconds: r.seconds,
        cpu_s_per_million: perMillion(r, r.cpuSeconds), postgres_cpu_s_per_million: perMillion(r, r.infra.postgres),
        rate_by_tenth: byTenth, last_vs_second_tenth: byTenth.length === 10 ? byTenth[9] / byTenth[1] : NaN,
        table_bytes: Number(size.t), index_bytes: Number(size.i), peak_rss_bytes: r.peakRss,
      };
      runs.push(run);
      log(`  ${fmtInt(run.records_per_s)} records/s, ${run.cpu_s_per_million.toFixed(2)} + ${run.postgres_cpu_s_per_million.toFixed(2)} CPU s per 1M; by tenth ${byTenth.map(fmtInt).join(' ')}`);
      if (!f.keep) await env.db.none(`DROP TABLE IF EXISTS ${table}`);
      return run;
    };
    for (const count of counts) await measure(`${fmtInt(count)} records`, count, INGEST_SINK_CONNECTIONS);
    for (const c of connectionsList) {
      const same = runs.find((r) => r.records === connectionsCount && r.connections === c);
      if (!same) await measure(`${c} connection(s), ${fmtInt(connectionsCount)}`, connectionsCount, c);
    }
    const byCount = counts.map((c) => runs.find((r) => r.records === c && r.connections === INGEST_SINK_CONNECTIONS)!);
    const byConn = connectionsList.map((c) => runs.find((r) => r.records === connectionsCount && r.connections === c)!);
    const smallest = byCount[0];
    const largest = byCount.at(-1)!;
    const next = byCount.at(-2) ?? smallest;
    const totalCpu = (r: ScaleRun) => r.cpu_s_per_million + r.postgres_cpu_s_per_million;
    const result = {
      benchmark: 'scale', at: new Date().toISOString(), machine: machine(),
      parameters: { counts, connections: connectionsList, connections_count: connectionsCount, partitions, seed, batch_size: INGEST_BATCH_SIZE, default_sink_connections: INGEST_SINK_CONNECTIONS },
      by_count: byCount, by_connections: byConn,
      largest_vs_smallest_records_per_s: largest.records_per_s / smallest.records_per_s,
      largest_vs_smallest_cpu_per_record: totalCpu(largest) / totalCpu(smallest),
      // The two largest counts: past the start-up's fixed cost, what the growing table alone does to the rate.
      largest_vs_next_records_per_s: largest.records_per_s / next.records_per_s,
      largest_vs_next_cpu_per_record: totalCpu(largest) / totalCpu(next),
    };
    const file = writeJson('scale', result);
    const row = (r: ScaleRun, label = r.label): Row => [label, `${fmtInt(r.records_per_s)} rec/s`,
      `${r.cpu_s_per_million.toFixed(2)} + ${r.postgres_cpu_s_per_million.toFixed(2)} CPU s per 1M (process + Postgres); last tenth ${Number.isFinite(r.last_vs_second_tenth) ? `${r.last_vs_second_tenth.toFixed(2)} x the second` : 'n/a'}; table ${fmtMb(r.table_bytes)} + index ${fmtMb(r.index_bytes)}`];
    printTable(`scale: orders-ingest, ${partitions} partitions, batch ${fmtInt(INGEST_BATCH_SIZE)}`, [
      ...byCount.map((r) => row(r)),
      ...byConn.map((r) => row(r, `${r.connections} connection(s), ${fmtInt(r.records)}`)),
      ['largest / smallest count, records/s', result.largest_vs_smallest_records_per_s.toFixed(2), 'the smallest carries the start-up (JIT, first flush) over fewer records'],
      ['largest / smallest count, CPU per record', result.largest_vs_smallest_cpu_per_record.toFixed(2), ''],
      [`${fmtInt(largest.records)} / ${fmtInt(next.records)} records, records/s`, result.largest_vs_next_records_per_s.toFixed(2), 'flat is 1'],
      [`${fmtInt(largest.records)} / ${fmtInt(next.records)} records, CPU per record`, result.largest_vs_next_cpu_per_record.toFixed(2), 'flat is 1'],
    ]);
    const svg = writeBarChart('scale', 'scale: orders-ingest records/s by records and by sink connections (higher is better)', 'rec/s', [
      ...byCount.map((r) => ({ label: `${fmtInt(r.records)} records, ${r.connections} conn.`, value: r.records_per_s, subject: true })),
      ...byConn.map((r) => ({ label: `${fmtInt(r.records)} records, ${r.connections} conn.`, value: r.records_per_s })),
    ], `${result.machine.cpus} cores shared by broker, database and pipeline; ${fmtInt(largest.records)} / ${fmtInt(next.records)} records: ${result.largest_vs_next_records_per_s.toFixed(2)} in records/s, ${result.largest_vs_next_cpu_per_record.toFixed(2)} in CPU per record`);
    log(`wrote ${file} and ${svg}`);
  } finally {
    if (!f.keep) {
      for (const t of tables) await env.db.none(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
      await deleteTopics(env.kafka, [...topics.values()].flatMap((t) => [t, `${t}.dlq`])).catch(() => undefined);
    }
  }
}

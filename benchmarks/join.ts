import { deleteTopics, tableName } from '../pipeline/index.ts';
import { num, parseFlags } from './lib/args.ts';
import { runTopology, timedRun } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { fmtInt, fmtRatio, printTable, writeBarChart, writeJson } from './lib/report.ts';

export const joinHelp = 'join [--count N (300000; --quick: 50000)] [--partitions 6] [--batch-size 10000] [--echo]';

interface Variant {
  label: string;
  args: string[];
  /** Records it consumes in all (a repartition topic's too): what timedRun waits for. */
  consumes: number;
}

/**
 * The joins' throughput on one pre-filled set of topics, against orders-revenue (a windowed aggregation with no join)
 * over the same orders in the same minutes: orders-enriched with products as a global table, and as a table through
 * a repartition topic, and orders-paid (orders left-joined with payments within 10 minutes). Each is timed from its
 * partition assignment until everything is consumed and the last flush committed, in orders per second.
 */
export async function joinBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', count: 'number', partitions: 'number', 'batch-size': 'number', echo: 'bool' });
  const count = num(f, 'count', f.quick ? 50_000 : 300_000);
  const partitions = num(f, 'partitions', 6);
  const batch = num(f, 'batch-size', 10_000);
  const env = await benchEnv();
  const orders = fresh('bench_join_orders');
  const payments = fresh('bench_join_payments');
  const products = fresh('bench_join_products');
  const tables: string[] = [];
  const groups: string[] = [];
  const child = (args: string[]) => runTopology({ env: env.childEnv, args, echo: f.echo === true }).then(async (r) => {
    const code = await r.exited;
    if (code !== 0) throw new Error(`${args[0]} exited with ${code}:\n${r.stderr.slice(-10).join('\n')}`);
    return r;
  });
  try {
    // Simulated event time, 10 ms an order: a 10-minute join window holds 60,000 orders at most.
    await child(['products-generator', '--topic', products, '--partitions', String(partitions), '--seed', '7']);
    const gen = await child(['orders-generator', '--topic', orders, '--payments-topic', payments, '--partitions', String(partitions), '--count', String(count), '--rate', '0',
      '--seed', '7', '--event-time-start', '2026-01-01T00:00:00Z', '--event-time-step-ms', '10', '--payments-ratio', '0.5', '--payment-delay-ms', '30000']);
    const paid = Number(/and (\d+) payments/.exec(gen.stderr.join('\n'))?.[1] ?? NaN);
    log(`pre-filled ${fmtInt(count)} orders, ${fmtInt(paid)} payments and the products`);
    const common = (name: string) => {
      const table = fresh(`bench_${name}`);
      const group = fresh(`bench_${name}`);
      tables.push(table, `${table}_partials`);
      groups.push(group);
      return ['--stop-when-idle', '2', '--topic', orders, '--table', table, '--group-id', group, '--partitions', String(partitions), '--batch-size', String(batch)];
    };
    const variants: Variant[] = [
      { label: 'orders-revenue (no join)', args: ['orders-revenue', ...common('revenue')], consumes: count },
      { label: 'orders-enriched, global table', args: ['orders-enriched', ...common('enriched'), '--products-topic', products], consumes: count },
      { label: 'orders-enriched, table (repartition)', args: ['orders-enriched', ...common('enriched_table'), '--products-topic', products, '--products-join', 'table'], consumes: 2 * count + 20 },
      { label: 'orders-paid, stream-stream join', args: ['orders-paid', ...common('paid'), '--payments-topic', payments], consumes: count + paid },
    ];
    const results: { label: string; records_per_s: number; cpu_seconds_per_million: number; seconds: number }[] = [];
    for (const v of variants) {
      log(v.label);
      const { seconds, cpuSeconds } = await timedRun({ env: env.childEnv, count: v.consumes, args: v.args, echo: f.echo === true });
      results.push({ label: v.label, records_per_s: count / seconds, cpu_seconds_per_million: (cpuSeconds / count) * 1e6, seconds });
    }
    const base = results[0].records_per_s;
    writeJson('join', {
      benchmark: 'join', at: new Date().toISOString(), machine: machine(), parameters: { count, payments: paid, partitions, batch_size: batch, event_time_step_ms: 10 },
      results: results.map((r) => ({ ...r, vs_revenue: r.records_per_s / base })),
    });
    printTable(`join: ${fmtInt(count)} orders (${fmtInt(paid)} payments), ${partitions} partitions; orders per second, ratio to orders-revenue in the same run`,
      results.map((r) => [r.label, `${fmtInt(r.records_per_s)} orders/s`, `${fmtRatio(r.records_per_s / base)} · ${r.cpu_seconds_per_million.toFixed(1)} CPU s per 1M orders`]));
    writeBarChart('join', `joins: orders/s over ${fmtInt(count)} orders (higher is better)`, 'orders/s',
      results.map((r, i) => ({ label: r.label, value: r.records_per_s, subject: i > 0 })));
  } finally {
    for (const t of tables) await env.db.none(`DROP TABLE IF EXISTS ${tableName(t)}`).catch(() => undefined);
    await env.db.none('DELETE FROM pipeline_offsets WHERE group_id LIKE ANY($1)', [groups.map((g) => `${g}%`)]).catch(() => undefined);
    await env.db.none('DELETE FROM pipeline_watermarks WHERE application_id = ANY($1)', [groups]).catch(() => undefined);
    await deleteTopics(env.kafka, [orders, payments, products, `${orders}.dlq`, ...groups.flatMap((g) => [`${g}.dlq`, `${g}-products-join-left-repartition`,
      `${g}-products-join-changelog`, `${g}-category-store-changelog`, `${g}-revenue-store-changelog`, `${g}-payments-join-changelog`])]).catch(() => undefined);
  }
}

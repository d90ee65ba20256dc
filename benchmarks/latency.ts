import {
  deleteTopics, ensureTopics, KafkaProducer, tableName,
} from '../pipeline/index.ts';
import { OrderFactory } from '../topologies/orders-generator.ts';
import { num, parseFlags } from './lib/args.ts';
import { runTopology } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { createOrdersTable } from './lib/orders.ts';
import { fmtInt, fmtMb, printTable, writeBarChart, writeJson } from './lib/report.ts';
import { INGEST_BATCH_SIZE } from '../topologies/orders-ingest.ts';

export const latencyHelp = 'latency [--rate 20000] [--seconds 60 (--quick: 15)] [--warmup 5] [--partitions 6] [--batch-size 10000] [--batch-wait-ms 250] [--echo]';

/**
 * Produce-to-committed-row latency. Every order carries its produce time (ordered_at = the clock when it was
 * produced); a statement trigger on the benchmark's table sends, by NOTIFY, how many rows of each 10 ms of
 * ordered_at a COPY wrote. Postgres delivers a NOTIFY only when its transaction commits, so the moment it arrives
 * is the moment those rows became visible: latency = arrival - ordered_at.
 */
function triggerSql(table: string, fn: string, channel: string): string[] {
  return [
    `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
     DECLARE payload text; unit int := 10;
     BEGIN
       LOOP
         SELECT unit || ';' || min(b) || ';' || string_agg((b - mb) || ':' || n, ',') INTO payload FROM (
           SELECT b, n, min(b) OVER () AS mb FROM (
             SELECT floor(extract(epoch FROM ordered_at) * 1000 / unit)::bigint AS b, count(*) AS n FROM new_rows GROUP BY 1) g) s;
         EXIT WHEN payload IS NULL OR length(payload) < 7900;
         unit := unit * 10; -- a very long flush: coarser buckets, so the payload fits a NOTIFY
       END LOOP;
       IF payload IS NOT NULL THEN PERFORM pg_notify('${channel}', payload); END IF;
       RETURN NULL;
     END $$`,
    `CREATE TRIGGER ${fn} AFTER INSERT ON ${table} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`,
  ];
}

export async function latencyBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', rate: 'number', seconds: 'number', warmup: 'number', partitions: 'number', 'batch-size': 'number', 'batch-wait-ms': 'number', echo: 'bool' });
  const rate = num(f, 'rate', 20_000);
  const seconds = num(f, 'seconds', f.quick ? 15 : 60);
  const warmup = num(f, 'warmup', 5);
  const partitions = num(f, 'partitions', 6);
  const batch = num(f, 'batch-size', INGEST_BATCH_SIZE);
  const batchWait = num(f, 'batch-wait-ms', 250); // orders-ingest's default
  const env = await benchEnv();
  const topic = fresh('bench_latency');
  const tableRaw = fresh('bench_latency');
  const table = tableName(tableRaw);
  const fn = `${tableRaw}_notify`;
  const channel = tableRaw;
  await ensureTopics(env.kafka, [{ name: topic, partitions }, { name: `${topic}.dlq`, partitions }]);
  await createOrdersTable(env.db, table);
  for (const sql of triggerSql(table, fn, channel)) await env.db.none(sql);

  // latency histogram in ms: latency -> rows, for rows produced after the warm-up
  const hist = new Map<number, number>();
  let committed = 0;
  let steadyFrom = Infinity;
  const listener = await env.db.connect({ direct: true });
  listener.client.on('notification', (msg: { channel: string; payload?: string }) => {
    if (msg.channel !== channel || !msg.payload) return;
    const arrived = Date.now();
    const [unitText, baseText, list] = msg.payload.split(';');
    const unit = Number(unitText);
    const base = Number(baseText);
    for (const part of list.split(',')) {
      const [d, n] = part.split(':').map(Number);
      committed += n;
      const producedAt = (base + d) * unit + unit / 2;
      if (producedAt < steadyFrom) continue;
      const ms = Math.max(0, Math.round(arrived - producedAt));
      hist.set(ms, (hist.get(ms) ?? 0) + n);
    }
  });
  await listener.none(`LISTEN ${channel}`);

  const run = await runTopology({
    env: env.childEnv,
    args: ['orders-ingest', '--topic', topic, '--table', tableRaw, '--group-id', fresh('bench_latency'), '--partitions', String(partitions),
      '--batch-size', String(batch), '--batch-wait-ms', String(batchWait)],
    marks: { assigned: /assigned .* partitions/ },
    echo: f.echo === true,
    sampleMs: 500,
  });
  let exited = false;
  void run.exited.then(() => { exited = true; });
  try {
    while (!run.marks.has('assigned')) {
      if (exited) throw new Error(`orders-ingest exited early:\n${run.stderr.slice(-10).join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const producer = new KafkaProducer(env.kafka, { 'client.id': 'bench-latency' });
    await producer.connect();
    const factory = new OrderFactory(7, 0);
    log(`latency: ${rate} records/s for ${seconds} s into orders-ingest (batch ${batch}, wait ${batchWait} ms), warm-up ${warmup} s`);
    const started = Date.now();
    steadyFrom = started + warmup * 1000;
    const total = rate * seconds;
    let sent = 0;
    while (sent < total) {
      const now = Date.now();
      const allowed = Math.min(total, Math.floor(((now - started) * rate) / 1000)) - sent;
      for (let i = 0; i < allowed; i++) {
        const g = factory.next(now);
        const m = { topic, key: g.key, value: Buffer.from(g.value), timestamp: now };
        if (!producer.tryProduce(m)) await producer.produce(m);
        sent++;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const sendSeconds = (Date.now() - started) / 1000;
    await producer.flush();
    await producer.disconnect();
    const deadline = Date.now() + 60_000;
    while (committed < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (committed < total) throw new Error(`only ${committed} of ${total} rows were committed within 60 s after the last was produced`);
    const sorted = [...hist].sort((a, b) => a[0] - b[0]);
    const rows = sorted.reduce((s, [, n]) => s + n, 0);
    const q = (p: number) => {
      let acc = 0;
      for (const [ms, n] of sorted) if ((acc += n) >= p * rows) return ms;
      return NaN;
    };
    const steadyRss = run.samples.filter((s) => s.at > performance.now() - seconds * 1000).map((s) => s.rssBytes).sort((a, b) => a - b);
    const result = {
      benchmark: 'latency', at: new Date().toISOString(), machine: machine(),
      parameters: { rate, seconds, warmup_seconds: warmup, partitions, batch_size: batch, batch_wait_ms: batchWait, achieved_produce_rate: total / sendSeconds },
      rows_measured: rows, p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: sorted.at(-1)?.[0] ?? NaN,
      ingest_steady_rss_bytes: steadyRss[Math.floor(steadyRss.length / 2)] ?? NaN,
      targets: { p99_ms: 1000 },
    };
    writeJson('latency', result);
    printTable(`latency: produce -> committed row at ${fmtInt(rate)} records/s for ${seconds} s (after ${warmup} s warm-up)`, [
      ['rows measured', fmtInt(rows)],
      ['p50', `${fmtInt(result.p50_ms)} ms`],
      ['p90', `${fmtInt(result.p90_ms)} ms`],
      ['p99', `${fmtInt(result.p99_ms)} ms`, 'target < 1,000 ms'],
      ['max', `${fmtInt(result.max_ms)} ms`],
      ['ingest RSS (median)', fmtMb(result.ingest_steady_rss_bytes)],
    ]);
    writeBarChart('latency', `latency: produce to committed row at ${fmtInt(rate)} records/s, ms (lower is better)`, 'ms', [
      { label: 'p50', value: result.p50_ms }, { label: 'p90', value: result.p90_ms }, { label: 'p99', value: result.p99_ms, subject: true }, { label: 'max', value: result.max_ms },
    ], `orders-ingest, batch ${batch} / ${batchWait} ms, ${partitions} partitions`);
  } finally {
    run.stop();
    await run.exited;
    await listener.none(`UNLISTEN ${channel}`).catch(() => undefined);
    listener.done();
    await env.db.none(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    await env.db.none(`DROP FUNCTION IF EXISTS ${fn}()`).catch(() => undefined);
    await deleteTopics(env.kafka, [topic, `${topic}.dlq`]).catch(() => undefined);
  }
}

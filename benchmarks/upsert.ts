import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  compileSchema, deleteTopics, ensureTopics, KafkaProducer, pgp, tableName, type Database, type KafkaConnection,
} from '../pipeline/index.ts';
import { customers } from '../examples/producer.ts';
import { num, parseFlags } from './lib/args.ts';
import { timedSource } from './lib/baseline.ts';
import { timedRun } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { fmtInt, fmtRatio, printTable, writeBarChart, writeJson } from './lib/report.ts';

export const upsertHelp = 'upsert [--count N (1000000; --quick: 100000)] [--partitions 6] [--batch-size 10000] [--update-ratio 0.2] [--delete-ratio 0.02] [--insert-rows 1000] [--sink-connections N] [--echo]';

/** The example customers without their address: flat rows of scalars, so the direct reader takes them (as orders). */
const SCHEMA = (() => {
  const s = JSON.parse(fs.readFileSync(new URL('../examples/customer.schema.json', import.meta.url), 'utf8')) as { properties: Record<string, unknown> };
  delete s.properties.address;
  return s;
})();
const COLUMNS = ['customer_id', 'name', 'email', 'tier', 'credit', 'updated_at'];

interface Phase {
  records: number;
  seconds: number;
  cpuSeconds: number;
}

async function prefill(kafka: KafkaConnection, topic: string, o: { count: number; partitions: number; updates: number; deletes: number }) {
  await ensureTopics(kafka, [{ name: topic, partitions: o.partitions }]);
  const producer = new KafkaProducer(kafka, { 'client.id': 'bench-prefill' });
  await producer.connect();
  const live = new Map<number, Record<string, unknown>>();
  let tombstones = 0;
  let i = 0;
  try {
    for (const r of customers(o.count, 7, o.updates, o.deletes, live)) {
      let value: Buffer | null = null;
      if (r.value) {
        const { address: _address, ...flat } = r.value;
        value = Buffer.from(JSON.stringify(flat));
      } else tombstones++;
      const m = { topic, key: r.key, value };
      if (!producer.tryProduce(m)) await producer.produce(m);
      if ((++i & 4095) === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await producer.flush(300_000);
  } finally {
    await producer.disconnect();
  }
  return { live: live.size, tombstones };
}

/** kafka-to-postgres as a child process, timed from partition assignment to the flush that committed the last record. */
async function connector(env: Awaited<ReturnType<typeof benchEnv>>, config: object, count: number, batch: number, extra: string[], echo: boolean): Promise<Phase> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-upsert-')), 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  const { seconds, cpuSeconds } = await timedRun({
    env: env.childEnv, echo, count,
    args: ['kafka-to-postgres', '--config', file, '--stop-when-idle', '2', '--batch-size', String(batch), '--group-id', fresh('bench_upsert'), ...extra],
  });
  return { records: count, seconds, cpuSeconds };
}

/**
 * The baseline: what a hand-written upserting consumer does. node-rdkafka's consume, JSON.parse and the same ajv
 * validation, the last record of each key in the batch, then one transaction a batch: DELETE ... WHERE key = ANY for
 * the tombstones, multi-row INSERT ... ON CONFLICT DO UPDATE of insertRows rows a statement; then a Kafka commit.
 */
async function baseline(kafka: KafkaConnection, db: Database, topic: string, table: string, o: { count: number; batch: number; insertRows: number }): Promise<Phase> {
  const cs = new pgp.helpers.ColumnSet(COLUMNS, { table: new pgp.helpers.TableName({ table }) });
  const update = COLUMNS.slice(1).map((c) => `${pgp.as.name(c)} = EXCLUDED.${pgp.as.name(c)}`).join(', ');
  const valid = compileSchema(SCHEMA);
  const { source, startedAt } = await timedSource(kafka, topic, fresh('bench_upsert_baseline'));
  let n = 0;
  let pending = new Map<number, Record<string, unknown> | null>();
  let last = new Map<number, number>();
  let cpu0 = process.cpuUsage();
  const write = async () => {
    const ops = pending;
    pending = new Map();
    const upserts = [...ops.values()].filter((v) => v !== null);
    const deletes = [...ops].filter(([, v]) => v === null).map(([k]) => k);
    await db.tx(async (t) => {
      if (deletes.length) await t.none(`DELETE FROM ${tableName(table)} WHERE customer_id = ANY($1::int[])`, [deletes]);
      for (let i = 0; i < upserts.length; i += o.insertRows) {
        await t.none(`${pgp.helpers.insert(upserts.slice(i, i + o.insertRows), cs)} ON CONFLICT (customer_id) DO UPDATE SET ${update}`);
      }
    });
    source.commitForMonitoring([...last].map(([partition, offset]) => ({ partition, offset: offset + 1 })));
    last = new Map();
  };
  let records = 0;
  while (n < o.count) {
    const batch = await source.pollMessages(2000);
    if (n === 0 && batch.length) cpu0 = process.cpuUsage();
    for (const m of batch) {
      n++;
      last.set(m.partition, m.offset);
      const id = Number(m.key?.toString());
      if (m.value === null) {
        pending.set(id, null);
        records++;
        continue;
      }
      try {
        const v = JSON.parse(m.value.toString('utf8')) as Record<string, unknown>;
        if (valid(v)) {
          pending.delete(id); // the later record of a key goes last
          pending.set(id, { tier: null, credit: null, ...v });
          records++;
        }
      } catch { /* a hand-written consumer would log and skip it */ }
    }
    if (records >= o.batch || n >= o.count) {
      await write();
      records = 0;
    }
  }
  const seconds = (performance.now() - startedAt()) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await source.disconnect();
  return { records: n, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/**
 * Upsert mode against append mode on the same records (customers: 20% updates, 2% deletes), and against a
 * hand-written multi-row INSERT ... ON CONFLICT consumer, in the same run, each from a fresh table: records/s from
 * partition assignment to the last commit. Every table is checked against the others at the end: the two upserting
 * ones must hold the same rows.
 */
export async function upsertBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', count: 'number', partitions: 'number', 'batch-size': 'number', 'update-ratio': 'number', 'delete-ratio': 'number', 'insert-rows': 'number', 'sink-connections': 'number', echo: 'bool' });
  const count = num(f, 'count', f.quick ? 100_000 : 1_000_000);
  const partitions = num(f, 'partitions', 6);
  const batch = num(f, 'batch-size', 10_000);
  const insertRows = num(f, 'insert-rows', 1000);
  const extra = f['sink-connections'] === undefined ? [] : ['--sink-connections', String(f['sink-connections'])];
  const env = await benchEnv();
  const topic = fresh('bench_customers');
  const schemaFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-upsert-schema-')), 'customer.schema.json');
  fs.writeFileSync(schemaFile, JSON.stringify(SCHEMA));
  const tables = { upsert: fresh('bench_upsert'), append: fresh('bench_append'), baseline: fresh('bench_upsert_base') };
  try {
    const pre = await prefill(env.kafka, topic, { count, partitions, updates: num(f, 'update-ratio', 0.2), deletes: num(f, 'delete-ratio', 0.02) });
    log(`pre-filled ${fmtInt(count)} customer records (${fmtInt(pre.tombstones)} tombstones, ${fmtInt(pre.live)} customers at the end)`);
    const pipeline = (name: string, table: string, over: object) => ({ pipelines: [{ name, topic, schema: schemaFile, table, autoCreate: true, ...over }] });
    log('kafka-to-postgres, upsert with deletes');
    const up = await connector(env, pipeline('bench-upsert', tables.upsert, { key: ['customer_id'], mode: 'upsert', deleteOnTombstone: true }), count, batch, extra, f.echo === true);
    log('kafka-to-postgres, append (no key: every record a row, tombstones dead letters)');
    const ap = await connector(env, pipeline('bench-append', tables.append, {}), count, batch, extra, f.echo === true);
    log(`baseline: multi-row INSERT ... ON CONFLICT, ${insertRows} rows a statement`);
    await env.db.none(`CREATE TABLE ${tableName(tables.baseline)} (LIKE ${tableName(tables.upsert)} INCLUDING ALL)`);
    const base = await baseline(env.kafka, env.db, topic, tables.baseline, { count, batch, insertRows });
    const rows = async (t: string) => Number((await env.db.one(`SELECT count(*) AS n FROM ${tableName(t)}`)).n);
    const differ = Number((await env.db.one(`SELECT count(*) AS n FROM (SELECT * FROM ${tableName(tables.upsert)} EXCEPT SELECT * FROM ${tableName(tables.baseline)}) d`)).n);
    const counts = { upsert: await rows(tables.upsert), append: await rows(tables.append), baseline: await rows(tables.baseline) };
    if (counts.upsert !== pre.live || counts.baseline !== pre.live || differ !== 0) {
      throw new Error(`the tables disagree: upsert ${counts.upsert}, baseline ${counts.baseline} rows (${pre.live} customers), ${differ} rows differ`);
    }
    const rate = (p: Phase) => p.records / p.seconds;
    const result = {
      benchmark: 'upsert', at: new Date().toISOString(), machine: machine(),
      parameters: { count, partitions, batch_size: batch, insert_rows: insertRows, tombstones: pre.tombstones, customers: pre.live },
      upsert_records_per_s: rate(up), append_records_per_s: rate(ap), baseline_records_per_s: rate(base),
      upsert_vs_append: rate(up) / rate(ap), upsert_vs_baseline: rate(up) / rate(base),
      cpu_seconds_per_million: { upsert: (up.cpuSeconds / count) * 1e6, append: (ap.cpuSeconds / count) * 1e6, baseline: (base.cpuSeconds / count) * 1e6 },
      rows: counts, targets: { vs_append: 0.5, vs_baseline: 3 },
    };
    writeJson('upsert', result);
    printTable(`upsert: ${fmtInt(count)} customer records (20% updates, 2% deletes), ${partitions} partitions`, [
      ['kafka-to-postgres, upsert + deletes', `${fmtInt(result.upsert_records_per_s)} rec/s`, `${up.seconds.toFixed(2)} s, ${fmtInt(counts.upsert)} rows`],
      ['kafka-to-postgres, append', `${fmtInt(result.append_records_per_s)} rec/s`, `${ap.seconds.toFixed(2)} s, ${fmtInt(counts.append)} rows`],
      ['baseline: INSERT ... ON CONFLICT', `${fmtInt(result.baseline_records_per_s)} rec/s`, `${base.seconds.toFixed(2)} s, ${insertRows} rows a statement`],
      ['upsert / append', fmtRatio(result.upsert_vs_append), 'target >= 0.50'],
      ['upsert / baseline', fmtRatio(result.upsert_vs_baseline), 'target >= 3.00'],
    ]);
    writeBarChart('upsert', `customers into Postgres: records/s over ${fmtInt(count)} records (higher is better)`, 'rec/s', [
      { label: 'upsert', value: result.upsert_records_per_s, subject: true },
      { label: 'append', value: result.append_records_per_s },
      { label: 'INSERT ... ON CONFLICT', value: result.baseline_records_per_s },
    ]);
  } finally {
    for (const t of Object.values(tables)) await env.db.none(`DROP TABLE IF EXISTS ${tableName(t)}`).catch(() => undefined);
    await deleteTopics(env.kafka, [topic, `${topic}.dlq`]).catch(() => undefined);
  }
}

import {
  deleteTopics, ensureTopics, KafkaProducer,
} from '../pipeline/index.ts';
import { OrderFactory } from '../topologies/orders-generator.ts';
import { num, parseFlags } from './lib/args.ts';
import { metricSum, runTopology } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { fmtInt, fmtMb, fmtRatio, printTable, writeBarChart, writeJson } from './lib/report.ts';

export const generatorHelp = 'generator [--count N (1000000; --quick: 200000)] [--partitions 6] [--seed 7] [--echo]';

/**
 * The producer ceiling: the pipeline's KafkaProducer (same settings) sending pre-serialized orders in a tight loop,
 * packed as the generator sends them (producePacked, 10,000 a call) or, for comparison, with one produce() a message
 * and a delivery-report event each (node-rdkafka's own way).
 */
async function producerCeiling(env: Awaited<ReturnType<typeof benchEnv>>, topic: string, count: number, seed: number, how: 'packed' | 'per-message'): Promise<{ rate: number; cpuPerMillion: number }> {
  const factory = new OrderFactory(seed, 0);
  const keys: string[] = new Array(count);
  const values: Buffer[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const g = factory.next();
    keys[i] = g.key;
    values[i] = Buffer.from(g.value);
  }
  const batches: { values: Uint8Array; valueEnds: Uint32Array; keys: Uint8Array; keyEnds: Uint32Array }[] = [];
  if (how === 'packed') {
    for (let s = 0; s < count; s += 10_000) {
      const part = values.slice(s, s + 10_000);
      const partKeys = keys.slice(s, s + 10_000);
      const ends = (xs: { length: number }[]) => {
        const out = new Uint32Array(xs.length);
        for (let i = 0, at = 0; i < xs.length; i++) out[i] = at += xs[i].length;
        return out;
      };
      batches.push({ values: Buffer.concat(part), valueEnds: ends(part), keys: Buffer.from(partKeys.join(''), 'latin1'), keyEnds: ends(partKeys) });
    }
  }
  const producer = new KafkaProducer(env.kafka, { 'client.id': 'bench-producer-ceiling' });
  await producer.connect();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const ts = Date.now();
  if (how === 'packed') {
    for (const b of batches) {
      await producer.producePacked(topic, b);
      await new Promise<void>((r) => setImmediate(r));
    }
  } else {
    for (let i = 0; i < count; i++) {
      const m = { topic, key: keys[i], value: values[i], timestamp: ts };
      if (!producer.tryProduce(m)) await producer.produce(m);
      if ((i & 8191) === 8191) await new Promise<void>((r) => setImmediate(r));
    }
  }
  await producer.flush(300_000);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (producer.delivered !== count) throw new Error(`the producer ceiling delivered ${producer.delivered} of ${count}`);
  await producer.disconnect();
  return { rate: count / seconds, cpuPerMillion: ((cpu.user + cpu.system) / 1e6 / count) * 1e6 };
}

export async function generatorBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', count: 'number', partitions: 'number', seed: 'number', echo: 'bool' });
  const count = num(f, 'count', f.quick ? 200_000 : 1_000_000);
  const partitions = num(f, 'partitions', 6);
  const seed = num(f, 'seed', 7);
  const env = await benchEnv();
  const topics = { gen: fresh('bench_gen'), ceiling: fresh('bench_gen_ceiling'), perMessage: fresh('bench_gen_per_message') };
  try {
    await ensureTopics(env.kafka, Object.values(topics).map((name) => ({ name, partitions })));
    log(`generator benchmark: ${count} records, ${partitions} partitions`);
    log('producer ceiling: pre-serialized messages, packed');
    const ceiling = await producerCeiling(env, topics.ceiling, count, seed, 'packed');
    log(`  ${fmtInt(ceiling.rate)} records/s`);
    log('  and with one produce() a message');
    const perMessage = await producerCeiling(env, topics.perMessage, count, seed, 'per-message');
    log(`  ${fmtInt(perMessage.rate)} records/s`);
    log('orders-generator (child process)');
    let first: { at: number; n: number } | undefined;
    let doneAt = 0;
    let cpuFirst = 0;
    let cpuDone = 0;
    const run = await runTopology({
      env: env.childEnv,
      args: ['orders-generator', '--count', String(count), '--rate', '0', '--seed', String(seed), '--topic', topics.gen, '--partitions', String(partitions)],
      echo: f.echo === true,
      marks: { started: /^\S+ kafka /, produced: /produced \d+ records to/ },
      onSample: (r, text) => {
        if (!text || doneAt) return;
        const n = metricSum(text, 'pipeline_records_produced_total');
        const s = r.samples.at(-1);
        if (!first && n > 0) {
          first = { at: performance.now(), n };
          cpuFirst = s?.cpuSeconds ?? 0;
        }
        if (n >= count) {
          doneAt = performance.now();
          cpuDone = s?.cpuSeconds ?? 0;
        }
      },
    });
    const code = await run.exited;
    // A short run can end between two samples: then the final log line marks the end.
    if (!doneAt && run.marks.has('produced')) {
      doneAt = run.marks.get('produced')!;
      cpuDone = run.samples.at(-1)?.cpuSeconds ?? 0;
    }
    if (code !== 0 || !first || !doneAt) throw new Error(`orders-generator exited with ${code}:\n${run.stderr.slice(-10).join('\n')}`);
    const rate = (count - first.n) / ((doneAt - first.at) / 1000);
    const cpuPerMillion = ((cpuDone - cpuFirst) / (count - first.n)) * 1e6;
    const peakRss = Math.max(...run.samples.map((s) => s.hwmBytes));
    log(`  ${fmtInt(rate)} records/s`);
    const result = {
      benchmark: 'generator', at: new Date().toISOString(), machine: machine(), parameters: { count, partitions, seed, rate: 0 },
      generator_records_per_s: rate, producer_ceiling_records_per_s: ceiling.rate, generator_vs_ceiling: rate / ceiling.rate,
      producer_per_message_records_per_s: perMessage.rate, producer_per_message_cpu_seconds_per_million: perMessage.cpuPerMillion,
      generator_cpu_seconds_per_million: cpuPerMillion, producer_ceiling_cpu_seconds_per_million: ceiling.cpuPerMillion,
      generator_peak_rss_bytes: peakRss, targets: { records_per_s: 200_000 },
    };
    writeJson('generator', result);
    printTable(`generator: ${fmtInt(count)} orders, ${partitions} partitions, --rate 0`, [
      ['orders-generator (child process)', `${fmtInt(rate)} rec/s`, `CPU ${cpuPerMillion.toFixed(2)} s per 1M, peak RSS ${fmtMb(peakRss)}`],
      ['producer ceiling (pre-serialized)', `${fmtInt(ceiling.rate)} rec/s`, `packed; CPU ${ceiling.cpuPerMillion.toFixed(2)} s per 1M`],
      ['  one produce() a message', `${fmtInt(perMessage.rate)} rec/s`, `node-rdkafka's own way; CPU ${perMessage.cpuPerMillion.toFixed(2)} s per 1M`],
      ['generator / ceiling', fmtRatio(rate / ceiling.rate)],
      ['target', '200,000 rec/s'],
    ]);
    writeBarChart('generator', `generator: orders produced per second (higher is better)`, 'rec/s', [
      { label: 'orders-generator', value: rate, subject: true },
      { label: 'producer ceiling (packed)', value: ceiling.rate },
      { label: 'one produce() a message', value: perMessage.rate },
    ], `${count.toLocaleString('en-US')} records, ${partitions} partitions, idempotent producer`);
  } finally {
    await deleteTopics(env.kafka, Object.values(topics)).catch(() => undefined);
  }
}

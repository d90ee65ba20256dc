import {
  binaryEncoders, compileJsonRows, CopyRowsBuilder, type CopyValue, encodeRows, formatCheck, type Order, orderSchema, parseJson, type StageContext, type StreamRecord, validate, validateOrder,
} from '../pipeline/index.ts';
import { ORDER_COLUMNS, orderRow } from '../topologies/orders-ingest-plan.ts';
import { OrderFactory } from '../topologies/orders-generator.ts';
import { num, parseFlags } from './lib/args.ts';
import { log, machine } from './lib/env.ts';
import { fmtInt, printTable, writeBarChart, writeJson } from './lib/report.ts';

export const stagesHelp = 'stages [--count 200000 (--quick: 50000)] [--rounds 7] [--seed 7]';

const ctx: StageContext = { deadLetter: () => undefined, late: () => undefined };

/** Records as the runtime builds them from Kafka messages: key and value bytes, nothing parsed yet. */
function makeRecords(values: Buffer[], keys: Buffer[]): StreamRecord[] {
  const out: StreamRecord[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = { topic: 'orders', partition: i % 6, offset: i, timestamp: 0, rawKey: keys[i], key: keys[i].toString(), headers: undefined, raw: values[i], value: values[i] } as StreamRecord;
  }
  return out;
}

/** The map step: each record's row values (the sink's row function), kept in the record for the encoding step. */
function mapToValues(batch: StreamRecord[]): StreamRecord[] {
  for (const r of batch) r.value = orderRow(r.value as Order);
  return batch;
}

/** COPY encoding as the runtime does it: every row of a polled batch into one buffer of COPY text, with line ends and keys. */
function copyEncode(batch: StreamRecord[]): number {
  return encodeRows(batch, (r) => r.value as CopyValue[], 0, () => {
    throw new Error('a record could not be encoded');
  }).text.length;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function stagesBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { quick: 'bool', count: 'number', rounds: 'number', seed: 'number' });
  const count = num(f, 'count', f.quick ? 50_000 : 200_000);
  const rounds = num(f, 'rounds', 7);
  const factory = new OrderFactory(num(f, 'seed', 7), 0);
  const values: Buffer[] = [];
  const keys: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const g = factory.next();
    values.push(Buffer.from(g.value));
    keys.push(Buffer.from(g.key));
  }
  const parse = parseJson();
  const valid = validate(validateOrder());
  const POLL = 1000;
  const direct = compileJsonRows(orderSchema(), ORDER_COLUMNS, formatCheck);
  if (!direct) throw new Error('the order schema has no direct reader');
  // orders_data's column types, as the sink reads them from pg_type: the direct reader's rows in binary COPY.
  const encoders = binaryEncoders(['uuid', 'int8', 'text', 'int4', 'numeric', 'timestamptz'], direct.columnKinds);
  if (!encoders) throw new Error('orders_data has no binary encoders');
  const binaryRows = { types: ['uuid', 'int8', 'text', 'int4', 'numeric', 'timestamptz'] };
  const t: Record<string, number[]> = { parse: [], validate: [], map: [], copy: [], together: [], direct: [], binary: [] };
  log(`stages: ${count} records, ${rounds} rounds`);
  for (let round = 0; round < rounds; round++) {
    // Separately: each stage timed on the output of the previous one.
    let recs = makeRecords(values, keys);
    let t0 = performance.now();
    const parsed = parse.process(recs, ctx);
    t.parse.push(performance.now() - t0);
    t0 = performance.now();
    const validated = valid.process(parsed, ctx) as StreamRecord<Order>[];
    t.validate.push(performance.now() - t0);
    t0 = performance.now();
    const rows = mapToValues(validated);
    t.map.push(performance.now() - t0);
    t0 = performance.now();
    for (let i = 0; i < rows.length; i += POLL) copyEncode(rows.slice(i, i + POLL));
    t.copy.push(performance.now() - t0);
    if (rows.length !== count) throw new Error(`${count - rows.length} records were rejected`);
    // Together, in batches of POLL records as the runtime polls them.
    recs = makeRecords(values, keys);
    t0 = performance.now();
    for (let i = 0; i < recs.length; i += POLL) copyEncode(mapToValues(valid.process(parse.process(recs.slice(i, i + POLL), ctx), ctx)));
    t.together.push(performance.now() - t0);
    // The direct reader (codec/json-rows.ts): each value's bytes straight into its COPY row, the rows of a poll in one buffer.
    t0 = performance.now();
    for (let i = 0; i < count; i += POLL) {
      const rows = new CopyRowsBuilder(0, POLL);
      for (let j = i; j < Math.min(i + POLL, count); j++) {
        if (!direct.read(values[j], 0, values[j].length)) throw new Error(`the direct reader gave up on ${values[j].toString()}`);
        direct.write(values[j], rows);
      }
    }
    t.direct.push(performance.now() - t0);
    // The same, each row in binary COPY (codec/copy-binary.ts), as the ingest writes it by default.
    t0 = performance.now();
    for (let i = 0; i < count; i += POLL) {
      const rows = new CopyRowsBuilder(0, POLL, undefined, 1, binaryRows);
      for (let j = i; j < Math.min(i + POLL, count); j++) {
        if (!direct.read(values[j], 0, values[j].length) || !direct.writeBinary(values[j], rows, encoders)) throw new Error(`no binary row for ${values[j].toString()}`);
      }
    }
    t.binary.push(performance.now() - t0);
  }
  const ns = (k: string) => (median(t[k].slice(1)) * 1e6) / count; // first round warms up the JIT
  const result = {
    benchmark: 'stages', at: new Date().toISOString(), machine: machine(), parameters: { count, rounds, poll_batch: POLL },
    ns_per_record: { parse: ns('parse'), validate: ns('validate'), map: ns('map'), copy_encode: ns('copy'), together: ns('together'), direct: ns('direct'), direct_binary: ns('binary') },
    records_per_s_together: 1e9 / ns('together'),
    records_per_s_direct: 1e9 / ns('direct'),
  };
  writeJson('stages', result);
  const n = result.ns_per_record;
  printTable(`stages: ns per record (median of ${rounds - 1} rounds of ${fmtInt(count)} records)`, [
    ['parse (isUtf8 + JSON.parse)', `${fmtInt(n.parse)} ns`],
    ['validate (ajv, order schema)', `${fmtInt(n.validate)} ns`],
    ['map (record -> row values)', `${fmtInt(n.map)} ns`],
    ['COPY encoding (rows -> one buffer a poll)', `${fmtInt(n.copy_encode)} ns`],
    [`together (batches of ${POLL})`, `${fmtInt(n.together)} ns`, `= ${fmtInt(result.records_per_s_together)} records/s on one core`],
    ['direct (bytes -> checked COPY row, json-rows.ts)', `${fmtInt(n.direct)} ns`, `= ${fmtInt(result.records_per_s_direct)} records/s on one core, ${(n.together / n.direct).toFixed(1)} x together`],
    ['direct, binary COPY row (copy-binary.ts)', `${fmtInt(n.direct_binary)} ns`, `${(n.direct_binary / n.direct).toFixed(2)} x the text row`],
  ]);
  writeBarChart('stages', 'stages: nanoseconds per record (lower is better)', 'ns', [
    { label: 'parse', value: n.parse }, { label: 'validate', value: n.validate }, { label: 'map', value: n.map },
    { label: 'COPY encoding', value: n.copy_encode }, { label: 'together', value: n.together },
    { label: 'direct', value: n.direct, subject: true }, { label: 'direct, binary', value: n.direct_binary, subject: true },
  ], 'the Node work per record, without Kafka or Postgres');
}

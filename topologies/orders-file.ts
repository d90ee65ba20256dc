import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  ConfigError, countLines, decodePosition, ensureTopics, FileSource, formatOf, lineReader, MAX_POLL_RECORDS, numericProperties, type Order, orderSchema,
  readCsvHeader, readFileRecords, registryFromEnv, retry, runPlan, StreamsBuilder, tableName, topicName, type FileFormat, type Stage,
  type StreamRecord, defineTopology, type TopologyPlan, validateOrder, valueSerializer, type ValueSerializer,
} from '../pipeline/index.ts';
import { ORDER_COLUMNS, orderRow, ORDERS_TABLE_SQL } from './orders-ingest.ts';
import { dlqTopicOf } from './run-plan.ts';

/** RFC 9562 name-based UUID (version 5, SHA-1) in a namespace of this project. */
const NAMESPACE = Buffer.from('6f2d1c9e4b7a4e0f9a51d3c8b2e7f401', 'hex');
export function uuidV5(name: string): string {
  const b = crypto.createHash('sha1').update(NAMESPACE).update(name).digest().subarray(0, 16);
  b[6] = 0x50 | (b[6] & 0x0f);
  b[8] = 0x80 | (b[8] & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Replay r > 0 of a looped file gets fresh ids and numbers so rows stay unique: the order id is derived from
 * (group, replay, original id) — the same on every read of that replay, so a batch re-read after a crash carries
 * the same ids (in --to-topic mode the consumer's duplicate check then catches a re-sent record) — and the order
 * number is moved up by replay × the largest number in the file.
 */
export function replayOrder(value: Record<string, unknown>, replay: number, stride: number, group: string): Record<string, unknown> {
  if (replay === 0) return value;
  const out = { ...value };
  if (typeof out.order_id === 'string') out.order_id = uuidV5(`${group}/${replay}/${out.order_id}`);
  if (typeof out.order_number === 'number' && Number.isInteger(out.order_number)) out.order_number += replay * stride;
  return out;
}

/** What the lines of a file become: orders (replayed ones with fresh ids and numbers), or dead letters. */
export interface FileOrdersOptions {
  format: FileFormat;
  /** The CSV header (line 1). */
  header: string[] | undefined;
  /** Lines of the file when it is looped (positions are replay × lines + line), else undefined. */
  lines: number | undefined;
  /** The largest order number in the file: replay r moves numbers up by r × stride. */
  stride: number;
  group: string;
}

/**
 * The stage that reads a file's lines (FileSource) as orders: parse (CSV by the header, or NDJSON), the replay's
 * fresh ids and numbers, validate. A line that cannot be read or is not a valid order is its dead letter, with a
 * message that starts with its line number; a valid one goes on keyed by its order_id.
 */
export function fileOrders(o: FileOrdersOptions): Stage<Buffer | null, Order> {
  const read = lineReader(o.format, o.header, numericProperties(orderSchema()));
  const validator = validateOrder();
  return {
    name: 'file-orders',
    process(batch, ctx) {
      const out: StreamRecord<Order>[] = [];
      for (const r of batch) {
        const { replay, line } = decodePosition(r.offset, o.lines);
        const rec = read({ line, text: r.raw!.toString() });
        if (!rec.ok) {
          ctx.deadLetter(r, rec.reason, rec.message);
          continue;
        }
        const value = replayOrder(rec.value, replay, o.stride, o.group);
        if (!validator(value)) {
          ctx.deadLetter(r, 'schema', `line ${line}: ${validator.errorText()}`);
          continue;
        }
        // Stages change records in place (records.ts): this one becomes its order.
        const order = r as StreamRecord<unknown> as StreamRecord<Order>;
        order.value = value;
        order.key = value.order_id;
        out.push(order);
      }
      return out;
    },
  };
}

/** A file's orders into the orders table, or into a topic (then serialized as the registry, if any, says). */
export function ordersFilePlan(source: string, o: FileOrdersOptions, sink: { table: string } | { topic: string; serializer: ValueSerializer }): TopologyPlan {
  const b = new StreamsBuilder('orders-file');
  const orders = b.stream(source).process<string, Order>(`parse ${o.format} -> replay -> validate (schemas/order.schema.json)`, () => fileOrders(o));
  if ('table' in sink) {
    orders.toPostgres({ table: sink.table, columns: ORDER_COLUMNS, row: orderRow, keyColumns: ['order_id'], createSql: ORDERS_TABLE_SQL });
  } else {
    orders.toTopic(sink.topic, (order) => ({ key: order.order_id, value: sink.serializer.encode(JSON.stringify(order)) }));
  }
  return b.build();
}

export const ordersFile = defineTopology({
  name: 'orders-file',
  description: 'Loads orders from a CSV or NDJSON file (--file) through the order schema into orders_data with COPY, exactly once (or into topic orders with --to-topic); --loop replays it forever.',
  uses: { kafka: true, postgres: true },
  options: [
    { name: 'file', type: 'string', help: 'the CSV (with a header line) or NDJSON file to load (orders-file)' },
    { name: 'format', type: 'string', choices: ['csv', 'ndjson'], help: 'file format (default: from the extension, .csv or .ndjson/.jsonl)' },
    { name: 'loop', type: 'bool', help: 'replay the file forever, each replay with fresh order ids and numbers' },
    { name: 'rate', type: 'int', min: 0, help: 'records per second, 0 = as fast as possible (orders-file default: 0, with --loop 1000)' },
    { name: 'to-topic', type: 'bool', help: 'send the valid orders to --topic (default orders) instead of Postgres' },
    { name: 'topic', type: 'string', default: 'orders', help: 'topic to produce to, or read from' },
    { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic when it is created' },
    { name: 'table', type: 'string', default: 'orders_data', help: 'Postgres table the orders go to' },
    { name: 'dlq-topic', type: 'string', help: 'dead-letter topic (default: <topic>.dlq)' },
    { name: 'group-id', type: 'string', help: 'key of the offsets in Postgres (orders-file default: orders-file)' },
    { name: 'batch-size', type: 'int', min: 1, max: 1_000_000, default: 10_000, help: 'records per flush (one transaction)' },
    { name: 'batch-wait-ms', type: 'int', min: 1, max: 600_000, default: 500, help: 'longest time a record waits for its flush' },
  ],
  topics: (v) => ({ reads: [], writes: v['to-topic'] ? [v.topic, dlqTopicOf(v)] : [] }),
  validate(v) {
    const file = fileOf(v);
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new ConfigError(`--file: "${file}" is not a readable file`);
    formatFor(v, file);
    topicName(v.topic);
    if (v['dlq-topic'] !== undefined) topicName(v['dlq-topic'], '--dlq-topic');
    tableName(v.table);
  },
  describe(v) {
    const topic = v.topic;
    const file = v.file;
    return [
      `Topology orders-file (group ${v['group-id'] ?? 'orders-file'})`,
      `  source  file ${file ?? '<--file>'} (${v.format ?? (file && formatOf(file)) ?? 'csv or ndjson'}, line by line${v.loop ? ', replayed forever' : ''}; position in pipeline_offsets)`,
      `  stage   parse -> validate (schemas/order.schema.json) -> map (order -> ${v['to-topic'] ? 'message' : 'COPY row'})`,
      v['to-topic']
        ? `  sink    topic ${topic} (idempotent producer, key = order_id; position committed after every acknowledged batch)`
        : `  sink    Postgres table ${v.table} (COPY, rows + file position in one transaction)`,
      `  dlq     topic ${dlqTopicOf(v)} (through outbox table pipeline_dead_letters; source.offset = the line number, with --loop replay × lines + line)`,
    ].join('\n');
  },
  async run(ctx, v) {
    const file = fs.realpathSync(path.resolve(fileOf(v)));
    const format = formatFor(v, file);
    const loop = v.loop === true;
    const toTopic = v['to-topic'] === true;
    const topic = v.topic;
    const dlqTopic = dlqTopicOf(v);
    const groupId = v['group-id'] ?? 'orders-file';
    const partitions = v.partitions;
    const numeric = numericProperties(orderSchema());
    const options: FileOrdersOptions = {
      format, group: groupId,
      header: format === 'csv' ? await readCsvHeader(file) : undefined,
      lines: loop ? await countLines(file) : undefined,
      stride: loop ? await largestOrderNumber(file, format, numeric) : 0,
    };
    let sink: Parameters<typeof ordersFilePlan>[2] = { table: v.table };
    if (toTopic) {
      try {
        await retry('creating the topic', () => ensureTopics(ctx.kafka, [{ name: topic, partitions }]), ctx.log, ctx.signal);
        sink = { topic, serializer: await retry('registering the order schema', () => valueSerializer(topic, orderSchema(), registryFromEnv()), ctx.log, ctx.signal) };
      } catch {
        return; // stopped while waiting
      }
    }
    ctx.log(`loading ${file} (${format})${loop ? ', replayed forever' : ''} into ${toTopic ? `topic ${topic}` : `table ${v.table}`}`);
    const batchSize = v['batch-size'];
    await runPlan('orders-file', ordersFilePlan(`file:${file}`, options, sink), ctx, {
      partitions, dlqTopic, groupId,
      // A flush holds at most a batch (no reading ahead): with --to-topic, a crash re-sends at most one batch.
      batch: { maxRecords: batchSize, maxWaitMs: v['batch-wait-ms'], readAhead: 0 },
      maxPollRecords: Math.min(MAX_POLL_RECORDS, batchSize), lanes: 1, stageThreads: 0, directJson: false,
      source: { create: (listener) => new FileSource({ file, header: format === 'csv', loop, rate: v.rate ?? (loop ? 1000 : 0) }, listener), partitions: 1 },
    });
    ctx.log(`${ctx.signal.aborted ? 'stopped' : 'finished'} loading ${file}`);
  },
});

function fileOf(v: { file: string | undefined }): string {
  if (v.file === undefined) throw new ConfigError('orders-file needs --file <path to a .csv or .ndjson file>');
  return v.file;
}

/** --format, or the file's extension's. */
function formatFor(v: { format: FileFormat | undefined }, file: string): FileFormat {
  const format = v.format ?? formatOf(file);
  if (format === undefined) throw new ConfigError(`--file: cannot tell the format of "${file}" from its extension: add --format csv or --format ndjson`);
  return format;
}

/** The stride of order numbers between replays: the largest order_number in the file (at least 1). */
async function largestOrderNumber(file: string, format: FileFormat, numeric: ReadonlySet<string>): Promise<number> {
  let max = 1;
  for await (const r of readFileRecords(file, format, 1, numeric)) {
    const n = r.ok ? r.value.order_number : undefined;
    if (typeof n === 'number' && Number.isSafeInteger(n) && n > max) max = n;
  }
  return max;
}

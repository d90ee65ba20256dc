import {
  ConfigError, countLines, type Database, type DeadLetter, type DeadLetterReason, DeadLetterRelay, encodeRows, ensureDeadLetterTable, ensureOffsetsTable, ensureTopics, errorMessage, FencedError, type FileFormat, formatOf, inFlushTransaction, isRetriable, KafkaProducer, loadOffsets, numericProperties, type Order, orderSchema, PostgresCopySink, Progress, readFileRecords, registryFromEnv, retry, segmentOf, sleep, type StreamRecord, tableName, topicName, type Topology, validateOrder, valueSerializer, type ValueSerializer, withSetupLock,
} from '../pipeline/index.ts';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ORDER_COLUMNS, orderRow, ORDERS_TABLE_SQL } from './orders-ingest.ts';

/** The orders_data table, the same shape orders-ingest writes (created when missing). */
async function ensureOrdersTable(db: Database, table: string): Promise<void> {
  await withSetupLock(db, async (t) => {
    await t.none(ORDERS_TABLE_SQL.replace('$TABLE', table));
  });
}

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

/**
 * A position in a looped file as one number for pipeline_offsets: replay × lines + the next line (1-based).
 * The end of replay r and the start of replay r+1 are the same number, as they are the same place.
 */
export function encodePosition(replay: number, nextLine: number, lines: number): number {
  return replay * lines + nextLine;
}
export function decodePosition(stored: number, lines: number | undefined): { replay: number; nextLine: number } {
  if (stored <= 0) return { replay: 0, nextLine: 1 };
  if (!lines) return { replay: 0, nextLine: stored };
  const replay = Math.floor((stored - 1) / lines);
  return { replay, nextLine: stored - replay * lines };
}

interface Item {
  line: number;
  text: string;
  order: Order;
}

class Batch {
  items: Item[] = [];
  deadLetters: DeadLetter[] = [];
  next = 0;
  startedAt = Date.now();
  get count(): number {
    return this.items.length + this.deadLetters.length;
  }
}

export const ordersFile: Topology = {
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
  topics: (v) => ({ reads: [], writes: v['to-topic'] ? [v.topic as string, (v['dlq-topic'] as string | undefined) ?? `${v.topic as string}.dlq`] : [] }),
  validate(v) {
    const file = v.file as string | undefined;
    if (file === undefined) throw new ConfigError('orders-file needs --file <path to a .csv or .ndjson file>');
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new ConfigError(`--file: "${file}" is not a readable file`);
    if (v.format === undefined && formatOf(file) === undefined) throw new ConfigError(`--file: cannot tell the format of "${file}" from its extension: add --format csv or --format ndjson`);
    topicName(v.topic as string);
    if (v['dlq-topic'] !== undefined) topicName(v['dlq-topic'] as string, '--dlq-topic');
    tableName(v.table as string);
  },
  describe(v) {
    const topic = v.topic as string;
    const file = v.file as string | undefined;
    return [
      `Topology orders-file (group ${(v['group-id'] as string | undefined) ?? 'orders-file'})`,
      `  source  file ${file ?? '<--file>'} (${(v.format as string | undefined) ?? (file && formatOf(file)) ?? 'csv or ndjson'}, line by line${v.loop ? ', replayed forever' : ''}; position in pipeline_offsets)`,
      `  stage   parse -> validate (schemas/order.schema.json) -> map (order -> ${v['to-topic'] ? 'message' : 'COPY row'})`,
      v['to-topic']
        ? `  sink    topic ${topic} (idempotent producer, key = order_id; position committed after every acknowledged batch)`
        : `  sink    Postgres table ${v.table} (COPY, rows + file position in one transaction)`,
      `  dlq     topic ${(v['dlq-topic'] as string | undefined) ?? `${topic}.dlq`} (through outbox table pipeline_dead_letters; source.offset = line number)`,
    ].join('\n');
  },
  async run(ctx, v) {
    const file = fs.realpathSync(path.resolve(v.file as string));
    const format = ((v.format as string | undefined) ?? formatOf(file)) as FileFormat;
    const source = `file:${file}`;
    const loop = v.loop === true;
    const rate = (v.rate as number | undefined) ?? (loop ? 1000 : 0);
    const toTopic = v['to-topic'] === true;
    const topic = v.topic as string;
    const dlqTopic = (v['dlq-topic'] as string | undefined) ?? `${topic}.dlq`;
    const table = tableName(v.table as string);
    const groupId = (v['group-id'] as string | undefined) ?? 'orders-file';
    const batchSize = v['batch-size'] as number;
    const batchWaitMs = v['batch-wait-ms'] as number;
    const db = ctx.database();
    const partitions = v.partitions as number;

    const setup = async () => {
      await ensureTopics(ctx.kafka, [{ name: dlqTopic, partitions }, ...(toTopic ? [{ name: topic, partitions }] : [])]);
      await ensureOffsetsTable(db);
      await ensureDeadLetterTable(db);
      if (!toTopic) await ensureOrdersTable(db, table);
    };
    try {
      await retry('preparing topics and tables', setup, ctx.log, ctx.signal);
    } catch {
      return; // stopped while waiting
    }
    const numeric = numericProperties(orderSchema());
    const lines = loop ? await countLines(file) : undefined;
    const stride = loop ? await largestOrderNumber(file, format, numeric) : 0;
    const stored = (await retry('reading the file position', () => loadOffsets(db, groupId, source, [0]), ctx.log, ctx.signal)).get(0) ?? -1;
    let expected = stored;
    let { replay, nextLine } = decodePosition(stored, lines);
    ctx.log(`loading ${file} (${format}) from line ${nextLine}${loop ? `, replay ${replay}` : ''} into ${toTopic ? `topic ${topic}` : `table ${v.table}`}`);

    let producer: KafkaProducer | undefined;
    let serializer: ValueSerializer | undefined;
    if (toTopic) {
      serializer = await retry('registering the order schema', () => valueSerializer(topic, orderSchema(), registryFromEnv()), ctx.log, ctx.signal);
      producer = new KafkaProducer(ctx.kafka, { 'client.id': 'orders-file' });
      await retry('connecting to Kafka', () => producer!.connect(), ctx.log, ctx.signal);
    }
    const relay = new DeadLetterRelay(db, ctx.kafka, ctx.metrics, ctx.log);
    relay.start();
    ctx.setReady(true);
    const validator = validateOrder();
    const sink = new PostgresCopySink({ name: `to-${v.table as string}`, table: v.table as string, columns: ORDER_COLUMNS, dlqTopic });
    const progress = new Progress('orders-file', 'rec');
    progress.start();

    const flush = async (batch: Batch) => {
      if (!batch.count) return;
      if (producer && serializer && batch.items.length) {
        for (const it of batch.items) await producer.produce({ topic, key: it.order.order_id, value: serializer.encode(JSON.stringify(it.order)) });
        await producer.flush(120_000);
      }
      const move = { partition: 0, expected, next: batch.next };
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await writeBatch(db, sink, toTopic, source, groupId, move, batch, dlqTopic);
          progress.invalid += batch.deadLetters.length + r.rejected;
          ctx.metrics.rowsWritten.inc({ topology: 'orders-file', table: v.table as string }, r.written);
          if (batch.deadLetters.length + r.rejected) relay.poke();
          break;
        } catch (err) {
          if (err instanceof FencedError || !isRetriable(err)) throw err;
          // Whatever became of the transaction, Postgres says where the file stands: retry, or go on if it landed.
          const now = (await retry('reading the file position', () => loadOffsets(db, groupId, source, [0]), ctx.log)).get(0);
          if (now === move.next) break;
          if (now !== move.expected) throw new FencedError(source, [0]);
          if (attempt === 0 || attempt % 10 === 0) ctx.log(`flush failed, retrying: ${errorMessage(err)}`);
          await sleep(Math.min(5000, 250 * 2 ** Math.min(attempt, 5)));
        }
      }
      expected = batch.next;
      progress.total += batch.count;
    };

    const startedAt = Date.now();
    let sent = 0;
    let batch = new Batch();
    try {
      reading: for (;;) {
        for await (const rec of readFileRecords(file, format, nextLine, numeric)) {
          if (ctx.signal.aborted) break reading;
          if (rate > 0) {
            while (sent >= ((Date.now() - startedAt) * rate) / 1000 && !ctx.signal.aborted) {
              if (batch.count && Date.now() - batch.startedAt >= batchWaitMs) {
                await flush(batch);
                batch = new Batch();
              }
              await sleep(Math.max(1, Math.min(20, 1000 / rate)), ctx.signal);
            }
            if (ctx.signal.aborted) break reading;
          }
          sent++;
          if (!batch.count) batch.startedAt = Date.now();
          batch.next = lines ? encodePosition(replay, rec.nextLine, lines) : rec.nextLine;
          const deadLetter = (reason: DeadLetterReason, message: string): DeadLetter => ({
            dlqTopic, key: null, value: Buffer.from(rec.text), reason, message,
            headers: [{ 'source.line': String(rec.line) }, ...(loop ? [{ 'source.replay': String(replay) }] : [])],
            sourceTopic: source, sourcePartition: 0, sourceOffset: rec.line,
          });
          if (!rec.ok) {
            batch.deadLetters.push(deadLetter(rec.reason, rec.message));
          } else {
            const value = replayOrder(rec.value, replay, stride, groupId);
            if (validator(value)) batch.items.push({ line: rec.line, text: rec.text, order: value });
            else batch.deadLetters.push(deadLetter('schema', `line ${rec.line}: ${validator.errorText()}`));
          }
          if (batch.count >= batchSize || Date.now() - batch.startedAt >= batchWaitMs) {
            await flush(batch);
            batch = new Batch();
          }
        }
        if (!loop || ctx.signal.aborted) break;
        replay++;
        nextLine = 1;
      }
      await flush(batch);
    } finally {
      progress.stop();
      await relay.stop();
      await producer?.disconnect();
    }
    ctx.log(`${ctx.signal.aborted ? 'stopped' : 'finished'}: ${progress.total} records committed (${progress.invalid} to ${dlqTopic}), next line ${decodePosition(expected, lines).nextLine}`);
  },
};

/** One flush: the file position (fenced), the rows (COPY) and the dead letters, in one transaction. */
async function writeBatch(db: Database, sink: PostgresCopySink, toTopic: boolean, source: string, groupId: string,
  move: { partition: number; expected: number; next: number }, batch: Batch, dlqTopic: string): Promise<{ written: number; rejected: number }> {
  const { written, rejected } = await inFlushTransaction(db, groupId, source, [move], batch.deadLetters, async (conn, rejected) => {
    if (toTopic || !batch.items.length) return 0;
    const records: StreamRecord<Order>[] = batch.items.map((it) => ({
      topic: source, partition: 0, offset: it.line, timestamp: undefined, key: it.order.order_id, rawKey: null,
      headers: [{ 'source.line': String(it.line) }], raw: Buffer.from(it.text), value: it.order,
    }));
    // A value COPY cannot carry (a NUL character): that line's dead letter, not the batch's end.
    const rows = encodeRows(records, (r) => orderRow(r.value as Order), 0, (r, reason, message) => rejected.push({
      dlqTopic, key: null, value: r.raw, headers: r.headers, reason, message: `line ${r.offset}: ${message}`,
      sourceTopic: source, sourcePartition: 0, sourceOffset: r.offset,
    }));
    return sink.copySegments(conn, [segmentOf(rows)], rejected);
  });
  return { written, rejected: rejected.length };
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

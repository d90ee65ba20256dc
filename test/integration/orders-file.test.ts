import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { decodeWireFormat } from '../../pipeline/schema/wire-format.ts';
import { startRegistry } from '../helpers/schema-registry.ts';
import { db, dropAll, header, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';

const SAMPLE_CSV = path.join(projectRoot, 'data/orders-sample.csv');
const SAMPLE_NDJSON = path.join(projectRoot, 'data/orders-sample.ndjson');

/** Rows of a table; 0 while the table does not exist yet (42P01), any other database error is thrown. */
async function rowCount(table: string): Promise<{ rows: number; distinct: number }> {
  return db().one<{ rows: number; distinct: number }>('SELECT count(*)::int AS rows, count(DISTINCT order_id)::int AS distinct FROM $1:name', [table])
    .catch((err: { code?: string }) => {
      if (err.code === '42P01') return { rows: 0, distinct: 0 };
      throw err;
    });
}

/** A CSV of 20,000 orders, every 997th line invalid (negative quantity): the valid ids, and the bad lines' numbers. */
function bigFile(file: string): { valid: string[]; badLines: number[] } {
  const lines = ['order_id,order_number,product,quantity,price,ordered_at'];
  const valid: string[] = [];
  const badLines: number[] = [];
  for (let i = 1; i <= 20_000; i++) {
    const id = crypto.randomUUID();
    if (i % 997 === 0) {
      lines.push(`${id},${i},Lamp,-1,1.00,2026-01-01T00:00:00Z`);
      badLines.push(i + 1);
    } else {
      lines.push(`${id},${i},Lamp,1,${(i % 500) / 10 + 1},2026-01-01T00:00:00Z`);
      valid.push(id);
    }
  }
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return { valid, badLines };
}

/** The sample CSV's order ids by line number (line 1 is the header). */
function csvIds(file: string): Map<number, string> {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  return new Map(lines.map((l, i) => [i + 1, l.split(',')[0]] as const).filter(([n, id]) => n > 1 && id));
}

describe('orders-file on real Kafka and Postgres', () => {
  const topics: string[] = [];
  const tables: string[] = [];
  const groups: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orders-file-'));
  const fresh = () => {
    const n = { table: unique('orders_file'), dlq: `${unique('orders')}.dlq`, topic: unique('orders'), group: unique('orders-file') };
    tables.push(n.table);
    topics.push(n.dlq, n.topic);
    groups.push(n.group);
    return n;
  };
  const args = (n: ReturnType<typeof fresh>, file: string, ...extra: string[]) =>
    ['orders-file', '--file', file, '--table', n.table, '--dlq-topic', n.dlq, '--group-id', n.group, '--partitions', '1', ...extra];
  after(async () => {
    await dropAll(topics, tables, groups);
    await db().none('DELETE FROM pipeline_dead_letters WHERE dlq_topic = ANY($1)', [topics]).catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('loads the sample CSV: rows = valid lines, each bad line in the DLQ with its line number, exit 0', async () => {
    const n = fresh();
    const r = await runTopology(args(n, SAMPLE_CSV));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await rowCount(n.table), { rows: 116, distinct: 116 });
    const dead = await readTopic(n.dlq);
    assert.deepEqual(dead.map((m) => Number(header(m, 'source.offset'))).sort((a, b) => a - b), [17, 42, 73, 99]);
    for (const m of dead) {
      const line = header(m, 'source.offset')!;
      assert.match(header(m, 'error.message')!, new RegExp(`^line ${line}: `));
      assert.equal(header(m, 'source.topic'), `file:${fs.realpathSync(SAMPLE_CSV)}`);
      assert.equal(m.value!.toString(), fs.readFileSync(SAMPLE_CSV, 'utf8').split('\n')[Number(line) - 1], 'the original line');
    }
    const again = await runTopology(args(n, SAMPLE_CSV));
    assert.equal(again.code, 0, again.stderr);
    // A second run resumes at the end: the rows are exactly the valid lines' ids and the dead letters the 4 bad
    // lines, each once (a re-read would add `duplicate` dead letters and the bad lines again).
    const bad = [17, 42, 73, 99];
    const valid = [...csvIds(SAMPLE_CSV)].filter(([line]) => !bad.includes(line)).map(([, id]) => id);
    assert.equal(valid.length, 116);
    const rows = (await db().any<{ id: string }>('SELECT order_id::text AS id FROM $1:name', [n.table])).map((r) => r.id);
    assert.deepEqual(rows.sort(), [...valid].sort());
    assert.deepEqual((await readTopic(n.dlq)).map((m) => Number(header(m, 'source.offset'))).sort((a, b) => a - b), bad, 'each bad line dead-lettered once');
  });

  it('loads the sample NDJSON with the malformed line dead-lettered', async () => {
    const n = fresh();
    const r = await runTopology(args(n, SAMPLE_NDJSON));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await rowCount(n.table), { rows: 19, distinct: 19 });
    const dead = await readTopic(n.dlq);
    assert.deepEqual(dead.map((m) => [header(m, 'source.offset'), header(m, 'error.reason')]), [['10', 'malformed-json']]);
  });

  it('survives kill -9 mid-file: a restart resumes after the last committed line, no duplicates, no losses', async () => {
    const n = fresh();
    const file = path.join(tmp, 'big.csv');
    const { valid, badLines } = bigFile(file);
    const invalid = badLines.length;
    for (let kill = 0; kill < 2; kill++) {
      const run = startTopology(args(n, file, '--rate', '5000', '--batch-size', '500', '--batch-wait-ms', '100'));
      const before = (await rowCount(n.table)).rows;
      await waitUntil('progress', async () => (await rowCount(n.table)).rows > before + 1000, 60_000);
      run.child.kill('SIGKILL');
      await run.exited;
    }
    assert.ok((await rowCount(n.table)).rows < 20_000 - invalid, 'killed before the end');
    const r = await runTopology(args(n, file));
    assert.equal(r.code, 0, r.stderr);
    const rows = (await db().any<{ id: string }>('SELECT order_id::text AS id FROM $1:name', [n.table])).map((x) => x.id);
    assert.deepEqual(rows.sort(), [...valid].sort(), 'the rows are exactly the valid lines');
    const dead = await readTopic(n.dlq);
    assert.deepEqual(dead.map((m) => Number(header(m, 'source.offset'))).sort((a, b) => a - b), badLines, 'each bad line dead-lettered once');
  });

  it('--to-topic survives kill -9 mid-file: every valid line reaches the topic, at most a batch again, and orders-ingest then has each once', async () => {
    const n = fresh();
    const file = path.join(tmp, 'big-to-topic.csv');
    const { valid, badLines } = bigFile(file);
    const toTopic = (...extra: string[]) => args(n, file, '--to-topic', '--topic', n.topic, ...extra);
    const sentCount = async () => (await readTopic(n.topic).catch(() => [])).length;
    for (let kill = 0; kill < 2; kill++) {
      const run = startTopology(toTopic('--rate', '5000', '--batch-size', '500', '--batch-wait-ms', '100'));
      const before = await sentCount();
      await waitUntil('progress', async () => (await sentCount()) > before + 1000, 60_000);
      run.child.kill('SIGKILL');
      await run.exited;
    }
    assert.ok((await sentCount()) < valid.length, 'killed before the end');
    const r = await runTopology(toTopic());
    assert.equal(r.code, 0, r.stderr);
    // At least once: every valid line is in the topic; a restart re-sends at most what the killed run had sent past
    // its last committed position (a batch of 500 per kill here).
    const keys = (await readTopic(n.topic)).map((m) => m.key!.toString());
    assert.deepEqual([...new Set(keys)].sort(), [...valid].sort(), 'every valid line in the topic, nothing else');
    const resent = keys.length - valid.length;
    assert.ok(resent <= 2 * 500, `${resent} re-sent after 2 kills`);
    assert.deepEqual((await readTopic(n.dlq)).map((m) => Number(header(m, 'source.offset'))).sort((a, b) => a - b), badLines,
      'each bad line dead-lettered once');
    // Downstream the ids decide: orders-ingest writes each once; a re-sent one is a `duplicate` dead letter.
    const ingestDlq = `${n.topic}.dlq`;
    topics.push(ingestDlq);
    const ingest = await runTopology(['orders-ingest', '--topic', n.topic, '--table', n.table, '--group-id', `${n.group}-ingest`, '--partitions', '1', '--stop-when-idle', '2']);
    groups.push(`${n.group}-ingest`);
    assert.equal(ingest.code, 0, ingest.stderr);
    const rows = (await db().any<{ id: string }>('SELECT order_id::text AS id FROM $1:name', [n.table])).map((x) => x.id);
    assert.deepEqual(rows.sort(), [...valid].sort());
    const duplicates = (await readTopic(ingestDlq).catch(() => [])).map((m) => header(m, 'error.reason'));
    assert.equal(duplicates.length, resent);
    assert.ok(duplicates.every((d) => d === 'duplicate'));
  });

  it('--to-topic sends the valid orders to the topic, keyed by order_id, and the bad lines to the DLQ', async () => {
    const n = fresh();
    const r = await runTopology(args(n, SAMPLE_CSV, '--to-topic', '--topic', n.topic));
    assert.equal(r.code, 0, r.stderr);
    const sent = await readTopic(n.topic);
    assert.equal(sent.length, 116);
    for (const m of sent) assert.equal(m.key!.toString(), (JSON.parse(m.value!.toString()) as { order_id: string }).order_id);
    assert.equal((await readTopic(n.dlq)).length, 4);
    assert.equal((await rowCount(n.table)).rows, 0, 'nothing written to Postgres');
  });

  it('--to-topic with a schema registry (the real one) writes the wire format, and orders-ingest loads it', async () => {
    const n = fresh();
    const stub = await startRegistry();
    try {
      const r = await runTopology(args(n, SAMPLE_CSV, '--to-topic', '--topic', n.topic), { SCHEMA_REGISTRY_URL: stub.url });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(stub.requests.includes(`POST /subjects/${n.topic}-value/versions`));
      const sent = await readTopic(n.topic);
      const ids = [...new Set(sent.map((m) => decodeWireFormat(m.value!)?.schemaId))];
      assert.ok(ids.length === 1 && Number.isInteger(ids[0]), `one registered schema id: ${ids.join(',')}`);
      const ingest = await runTopology(['orders-ingest', '--topic', n.topic, '--table', n.table, '--group-id', n.group, '--dlq-topic', n.dlq,
        '--partitions', '1', '--stop-when-idle', '2'], { SCHEMA_REGISTRY_URL: stub.url });
      assert.equal(ingest.code, 0, ingest.stderr);
      assert.deepEqual(await rowCount(n.table), { rows: 116, distinct: 116 });
    } finally {
      await stub.close();
    }
  });

  it('--loop replays the file with fresh order ids and numbers, at --rate, until SIGINT', async () => {
    const n = fresh();
    const run = startTopology(args(n, SAMPLE_NDJSON, '--loop', '--rate', '400', '--batch-wait-ms', '100'));
    await waitUntil('three replays', async () => (await rowCount(n.table)).rows >= 19 * 3, 60_000);
    run.child.kill('SIGINT');
    assert.equal(await run.exited, 0, run.stderr());
    const { rows } = await rowCount(n.table);
    // A replay that reused an id would make a `duplicate` dead letter (order_id is the key); the only dead letters are
    // the file's one malformed line, once a replay that reached it.
    const dead = (await readTopic(n.dlq)).map((m) => header(m, 'error.reason'));
    assert.deepEqual([...new Set(dead)], ['malformed-json'], `dead letters: ${dead.join(',')}`);
    assert.ok(dead.length >= 3 && dead.length <= Math.ceil(rows / 19) + 1, `${dead.length} dead letters for ${rows} rows`);
    const originals = await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name WHERE order_id::text = ANY($2)', [n.table,
      fs.readFileSync(SAMPLE_NDJSON, 'utf8').split('\n').map((l) => /"order_id":\s*"([^"]+)"/.exec(l)?.[1]).filter(Boolean)]);
    assert.ok(originals.n <= 19, 'at most the first replay keeps the file\'s ids');
    const numbers = await db().one<{ n: number }>('SELECT count(DISTINCT order_number)::int AS n FROM $1:name', [n.table]);
    assert.equal(numbers.n, rows, 'and fresh order numbers');
  });
});

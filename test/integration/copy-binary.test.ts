import assert from 'node:assert/strict';
import { BINARY_HEADER, BINARY_TRAILER, binaryEncoders, binaryKeyText, type ColumnEncoder, type JsonKind } from '../../pipeline/codec/copy-binary.ts';
import type { Connection } from '../../pipeline/postgres/db.ts';
import { copyIn as copy } from '../../pipeline/sinks/postgres-copy.ts';
import { createTopic, db, dropAll, header, produce, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';
import { OrderFactory } from '../../topologies/order-factory.ts';

/**
 * Each binary encoder against Postgres itself: every value an encoder takes must give, COPYed in binary, what the
 * same bytes give COPYed as text (the value stored, or the same error), for the column types and typmods the
 * ingest meets. The values are what the direct reader hands the encoders (a JSON string's content, a JSON number's
 * bytes as the reader reads them).
 */
interface Column {
  type: string;
  /** pg_type's name, what the encoders are chosen by. */
  typname: string;
  kind: JsonKind;
  /** Values the encoder must take. */
  takes: string[];
  /** Values it must leave to the text COPY. */
  leaves: string[];
}

const COLUMNS: Column[] = [
  {
    type: 'uuid', typname: 'uuid', kind: 'string',
    takes: ['0190f5a2-7b3c-7def-8abc-0123456789ab', '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
    leaves: ['0190F5A2-7B3C-7DEF-8ABC-0123456789AB', '{0190f5a2-7b3c-7def-8abc-0123456789ab}', '0190f5a27b3c7def8abc0123456789ab', '0190f5a2-7b3c-7def-8abc-0123456789ag', 'urn:uuid:0190f5a2-7b3c-7def-8abc-0123456789ab'],
  },
  { type: 'smallint', typname: 'int2', kind: 'number', takes: ['0', '-1', '32767', '-32768'], leaves: ['32768', '-32769', '1.5'] },
  { type: 'integer', typname: 'int4', kind: 'number', takes: ['0', '7', '-42', '2147483647', '-2147483648'], leaves: ['2147483648', '-2147483649', '2.5'] },
  { type: 'bigint', typname: 'int8', kind: 'number', takes: ['0', '1', '-1', '4294967296', '-4294967297', '123456789012345', '-999999999999999'], leaves: ['0.5'] },
  {
    type: 'numeric', typname: 'numeric', kind: 'number',
    takes: ['0', '1', '-1', '0.1', '9.99', '12.345', '10000', '100000000', '0.0001', '0.000001', '1234.5678', '-98765.4321', '123456789012345', '3.14159265358979', '10000.0001', '0.00010001', '99990000', '-0.5'],
    leaves: [],
  },
  { type: 'numeric(12,2)', typname: 'numeric', kind: 'number', takes: ['9.99', '12.345', '12.355', '-0.005', '9999999999.99', '9999999999.995', '10000000000', '0.001'], leaves: [] },
  { type: 'double precision', typname: 'float8', kind: 'number', takes: ['0', '0.1', '1.5', '-2.25', '123456789012345', '0.000001', '3.14159265358979', '9.99'], leaves: [] },
  { type: 'text', typname: 'text', kind: 'string', takes: ['', 'Widget', 'a b~c', '0'], leaves: [] },
  { type: 'varchar(5)', typname: 'varchar', kind: 'string', takes: ['abc', 'abcde', 'abcdef'], leaves: [] },
  { type: 'text', typname: 'text', kind: 'number', takes: ['12.5', '-3'], leaves: [] },
  {
    type: 'timestamptz', typname: 'timestamptz', kind: 'string',
    takes: ['2026-11-28T10:00:00.000Z', '2026-11-28T10:00:00Z', '2024-02-29T23:59:59.999999+14:00', '0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999999Z',
      '1969-12-31T23:59:59.5-00:30', '2000-01-01T00:00:00+00:00', '1900-03-01T12:34:56.123+05:45', '2100-02-28T00:00:00-14:00', '1582-10-10T00:00:00Z', '2000-02-29T12:00:00.1Z'],
    leaves: ['2023-02-29T00:00:00Z', '1900-02-29T00:00:00Z', '2026-13-01T00:00:00Z', '2026-04-31T00:00:00Z', '2026-12-01T24:00:00Z', '2026-12-31T23:59:60Z',
      '2026-01-01T00:00:00.1234567Z', '2026-01-01t00:00:00z', '2026-01-01T00:00:00', '2026-01-01 00:00:00Z', '0000-01-01T00:00:00Z', '2026-01-01T00:00:00+15:00',
      '2026-01-01T00:00:00+0530', '2026-01-01T00:00:00.Z', '2026-01-01T00:60:00Z'],
  },
  { type: 'timestamptz(3)', typname: 'timestamptz', kind: 'string', takes: ['2026-11-28T10:00:00.9995Z', '2026-11-28T10:00:00.12345+01:00'], leaves: [] },
];

const bytes = (s: string) => Buffer.from(s, 'latin1');

/** value through encoder as a binary COPY field, or undefined when the encoder leaves it. */
function encode(encoder: ColumnEncoder, value: string): Buffer | undefined {
  const src = bytes(value);
  const out = Buffer.alloc(64 + src.length);
  const end = encoder(src, 0, src.length, out, 0);
  return end < 0 ? undefined : out.subarray(0, end);
}

/** The stored value as text, or the error's code and message. */
async function outcome(conn: Connection, table: string, sql: string, data: Buffer[]): Promise<string> {
  await conn.none('SAVEPOINT v');
  try {
    await copy(conn, sql, data);
    const r = await conn.one<{ v: string }>(`SELECT v::text AS v FROM ${table}`);
    await conn.none('ROLLBACK TO SAVEPOINT v');
    return `value ${r.v}`;
  } catch (err) {
    await conn.none('ROLLBACK TO SAVEPOINT v');
    const e = err as { code?: string; message: string };
    return `error ${e.code}: ${e.message}`;
  }
}

/** Random values of the reader's JSON numbers: at most 15 digits, no trailing zero in a fraction, no -0. */
function randomNumber(next: () => number): string {
  const intDigits = Math.floor(next() * 12);
  const fracDigits = Math.floor(next() * Math.min(6, 15 - intDigits) + (intDigits === 0 ? 1 : 0));
  let int = intDigits === 0 ? '0' : String(1 + Math.floor(next() * 9));
  for (let k = 1; k < intDigits; k++) int += Math.floor(next() * 10);
  let frac = '';
  for (let k = 0; k < fracDigits; k++) frac += Math.floor(next() * 10);
  frac = frac.replace(/0+$/, '');
  const s = frac ? `${int}.${frac}` : int;
  return s !== '0' && next() < 0.3 ? `-${s}` : s;
}

function randomTimestamp(next: () => number): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const first = -62135596800000; // 0001-01-01T00:00:00Z (Date.UTC takes years below 100 as 19xx)
  const last = 253402300799000; // 9999-12-31T23:59:59Z
  const t = new Date(first + Math.floor(next() * (last - first)));
  const fraction = next() < 0.5 ? '' : `.${String(Math.floor(next() * 1e6)).padStart(6, '0').slice(0, 1 + Math.floor(next() * 6))}`;
  const offset = next() < 0.4 ? 'Z' : `${next() < 0.5 ? '-' : '+'}${pad(Math.floor(next() * 14))}:${pad(Math.floor(next() * 60))}`;
  const text = `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}T${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}${fraction}${offset}`;
  return text.startsWith('0000') ? '0001-01-01T00:00:00Z' : text;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('binary COPY encoders, against Postgres', function () {
  this.timeout(120_000);
  const table = unique('copy_binary');

  it('store what text COPY stores, and fail as it fails, for every value they take', async () => {
    const conn = await db().connect();
    try {
      await conn.none('BEGIN');
      for (const c of COLUMNS) {
        const t = `${table}_${c.typname}`;
        await conn.none(`CREATE TEMP TABLE ${t} (v ${c.type})`);
        const [encoder] = binaryEncoders([c.typname], [c.kind])!;
        for (const value of c.takes) {
          const field = encode(encoder, value);
          assert.ok(field, `${c.type} takes ${value}`);
          const binary = await outcome(conn, t, `COPY ${t} (v) FROM STDIN (FORMAT binary)`, [BINARY_HEADER, Buffer.from([0, 1]), field, BINARY_TRAILER]);
          const text = await outcome(conn, t, `COPY ${t} (v) FROM STDIN`, [bytes(`${value}\n`)]);
          assert.equal(binary, text, `${c.type} ${value}`);
        }
        for (const value of c.leaves) assert.equal(encode(encoder, value), undefined, `${c.type} leaves ${value} to text`);
        await conn.none(`DROP TABLE ${t}`);
      }
      await conn.none('ROLLBACK');
    } finally {
      conn.done();
    }
  });

  it('store what text COPY stores for thousands of random numbers and timestamps', async () => {
    const next = seeded(20261203);
    const numbers = Array.from({ length: 3000 }, () => randomNumber(next));
    const stamps = Array.from({ length: 3000 }, () => randomTimestamp(next));
    const sets: [string, JsonKind, string[]][] = [['numeric', 'number', numbers], ['float8', 'number', numbers], ['int8', 'number', numbers.filter((v) => !v.includes('.'))], ['timestamptz', 'string', stamps]];
    const conn = await db().connect();
    try {
      await conn.none('BEGIN');
      for (const [type, kind, values] of sets) {
        const [id, encoder] = binaryEncoders(['int4', type], ['number', kind])!;
        const t = `${table}_r_${type}`;
        await conn.none(`CREATE TEMP TABLE ${t}_b (id int, v ${type}); CREATE TEMP TABLE ${t}_t (id int, v ${type})`);
        const tuples: Buffer[] = [BINARY_HEADER];
        values.forEach((v, i) => {
          const field = encode(encoder, v);
          assert.ok(field, `${type} takes ${v}`);
          tuples.push(Buffer.from([0, 2]), encode(id, String(i))!, field);
        });
        tuples.push(BINARY_TRAILER);
        await copy(conn, `COPY ${t}_b (id, v) FROM STDIN (FORMAT binary)`, tuples);
        await copy(conn, `COPY ${t}_t (id, v) FROM STDIN`, [bytes(values.map((v, i) => `${i}\t${v}\n`).join(''))]);
        const differ = await conn.any(`SELECT b.id, b.v::text AS binary, t.v::text AS text FROM ${t}_b b JOIN ${t}_t t USING (id) WHERE b.v IS DISTINCT FROM t.v OR b.v::text <> t.v::text LIMIT 5`);
        assert.deepEqual(differ, [], `${type}: rows that differ`);
        assert.equal((await conn.one(`SELECT count(*)::int AS n FROM ${t}_b`)).n, values.length);
      }
      await conn.none('ROLLBACK');
    } finally {
      conn.done();
    }
  });

  it('prints a binary key back as the COPY text of its row', () => {
    const types = ['uuid', 'int8', 'text', 'int4', 'int2'];
    const values = ['0190f5a2-7b3c-7def-8abc-0123456789ab', '-123456789012345', 'Widget', '-7', '300'];
    const encoders = binaryEncoders(types, ['string', 'number', 'string', 'number', 'number'])!;
    const fields = values.map((v, c) => encode(encoders[c], v)!);
    const tuple = Buffer.concat([Buffer.from([0, 6]), encode(encoders[2], 'first')!, ...fields]);
    assert.equal(binaryKeyText(tuple, 0, 1, types).toString('latin1'), values.join('\t'));
    assert.equal(binaryKeyText(tuple, 0, 3, ['text']).toString('latin1'), 'Widget');
  });
});

describe('orders-ingest with binary COPY (the default) and with --text-copy', function () {
  this.timeout(180_000);
  const topic = unique('orders_binary');
  const runs = ['binary', 'text'].map((label) => ({ label, table: unique(`orders_${label}`), group: unique(`ingest_${label}`), dlq: `${topic}.${label}.dlq` }));
  after(() => dropAll([topic, ...runs.map((r) => r.dlq)], runs.map((r) => r.table), runs.map((r) => r.group)));

  it('store the same rows and dead-letter the same records, for orders with every edge value between ordinary ones', async () => {
    const factory = new OrderFactory(9, 0);
    const values: string[] = [];
    for (let i = 0; i < 3000; i++) values.push(factory.next().value);
    const edit = (i: number, change: (o: Record<string, unknown>) => void) => {
      const o = JSON.parse(values[i]);
      change(o);
      values[i] = JSON.stringify(o);
    };
    const first = JSON.parse(values[10]).order_id as string;
    // Values Postgres decides (rounding, overflow), values binary leaves to text, and duplicates within and across batches
    // (of one partition, 0, where the first is well defined).
    edit(100, (o) => { o.price = 99999999999.99; }); // numeric(12,2) overflow: rejected by the database
    edit(200, (o) => { o.ordered_at = '0001-01-01T00:00:00+14:00'; });
    edit(300, (o) => { o.ordered_at = '2024-02-29T23:59:59.999999-09:30'; });
    edit(400, (o) => { o.order_id = (o.order_id as string).toUpperCase(); }); // this batch goes as text
    edit(402, (o) => { o.order_id = first; }); // a duplicate in a text batch of a key first seen in a binary one
    edit(500, (o) => { o.ordered_at = '2026-12-31T23:59:60Z'; }); // a leap second: text
    edit(600, (o) => { o.order_id = first; }); // a duplicate, binary
    edit(700, (o) => { o.quantity = 2147483647; o.order_number = 9007199254740991; });
    edit(800, (o) => { o.product = 'x'.repeat(200); o.price = 0; });
    edit(900, (o) => { o.ordered_at = '2026-02-30T00:00:00Z'; }); // not a date, which the date-time format lets by: binary leaves it, Postgres rejects it
    edit(1000, (o) => { o.price = 0.01; });
    await createTopic(topic, 2);
    await produce(values.map((value, i) => ({ topic, partition: i % 2, key: String(i), value: Buffer.from(value), headers: [{ n: String(i) }] })));
    for (const r of runs) {
      const out = await runTopology(['orders-ingest', '--topic', topic, '--table', r.table, '--group-id', r.group, '--dlq-topic', r.dlq, '--partitions', '2',
        '--batch-size', '500', '--max-poll-records', '250', '--stop-when-idle', '2', ...(r.label === 'text' ? ['--text-copy'] : [])]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stderr.includes(`${r.table}: rows read straight from JSON go in binary COPY`), r.label === 'binary', out.stderr);
    }
    const [binary, text] = runs;
    const columns = 'order_id, order_number, product, quantity, price, ordered_at';
    const count = async (t: string) => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [t])).n;
    assert.equal(await count(binary.table), await count(text.table));
    assert.equal(await count(binary.table), 3000 - 4); // the overflow, the impossible date, two duplicates
    const only = await db().any(`(SELECT ${columns} FROM $1:name EXCEPT SELECT ${columns} FROM $2:name) UNION ALL (SELECT ${columns} FROM $2:name EXCEPT SELECT ${columns} FROM $1:name)`, [binary.table, text.table]);
    assert.deepEqual(only, []);
    const letters = async (dlq: string) => (await readTopic(dlq)).map((m) => `${header(m, 'n')} ${header(m, 'error.reason')}: ${header(m, 'error.message')}`).sort();
    const dead = await letters(binary.dlq);
    assert.deepEqual(dead, await letters(text.dlq));
    assert.deepEqual(dead.map((d) => d.split(':')[0]), ['100 rejected-by-database', '402 duplicate', '600 duplicate', '900 rejected-by-database']);
  });
});

describe('binary COPY when a column\'s type changes under a running ingest', function () {
  this.timeout(180_000);
  const topic = unique('orders_retype');
  const table = unique('orders_retype');
  const group = unique('ingest_retype');
  after(() => dropAll([topic, `${topic}.dlq`], [table], [group]));

  it('fails the flush, reads the types again, and writes every row for the new types, dead-lettering none', async () => {
    const factory = new OrderFactory(4, 0);
    const sent: Record<string, unknown>[] = [];
    const batch = (n: number) => Array.from({ length: n }, (_, i) => {
      const value = factory.next().value;
      sent.push(JSON.parse(value));
      return { topic, partition: i % 2, key: null, value: Buffer.from(value) };
    });
    await createTopic(topic, 2);
    await produce(batch(500));
    const run = startTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '2', '--batch-wait-ms', '50', '--stop-when-idle', '3']);
    const count = async () => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [table])).n;
    await waitUntil('the first rows', async () => (await count().catch(() => 0)) === 500);
    // integer to bigint: a 4-byte binary value is no bigint; to text, the other way, a uuid's 16 bytes could pass as text.
    await db().none('ALTER TABLE $1:name ALTER COLUMN quantity TYPE bigint, ALTER COLUMN order_id TYPE text', [table]);
    await produce(batch(500));
    assert.equal(await run.exited, 0, run.stderr());
    assert.match(run.stderr(), /flush failed, rewinding .* the column types of \S+ are no longer uuid, int8, text, int4, numeric, timestamptz/);
    assert.match(run.stderr(), /rows read straight from JSON go in binary COPY, for columns of types text, int8, text, int8, numeric, timestamptz/);
    const rows = await db().any<{ order_id: string; quantity: string; price: string; ordered_at: Date }>('SELECT order_id, quantity, price, ordered_at FROM $1:name', [table]);
    assert.equal(rows.length, 1000);
    const byId = new Map(rows.map((r) => [r.order_id, r]));
    for (const o of sent) {
      const r = byId.get(o.order_id as string);
      assert.ok(r, `order ${o.order_id} has its row`);
      assert.equal(Number(r.quantity), o.quantity);
      assert.equal(r.price, (o.price as number).toFixed(2));
      assert.equal(r.ordered_at.toISOString(), o.ordered_at);
    }
    assert.deepEqual(await readTopic(`${topic}.dlq`, 3000).catch(() => []), []);
  });
});

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { OutgoingMessage } from '../../pipeline/kafka/producer.ts';
import type { Order } from '../../pipeline/schema/validator.ts';
import { createTopic, db, dropAll, header, produce, readTopic, runTopology, unique } from '../helpers/infra.ts';

/**
 * A corpus of hostile messages through orders-ingest on the real broker and the real database: each invalid one
 * must land in the dead-letter topic once with a sensible reason, each valid one in the table once, and the
 * process must finish by itself (exit 0), never die. Every message carries a `case` header (dead letters keep the
 * original headers), so a dead letter is matched to its case whatever its key.
 */
interface Case {
  name: string;
  key?: Buffer | string | null;
  value: Buffer | null;
  headers?: Record<string, Buffer | string>[];
  /** 'row': a row in the table with this order (and product); otherwise the acceptable dead-letter reasons. */
  expect: { row: Order } | { reasons: string[] };
}

function order(overrides: Partial<Order> = {}): Order {
  return {
    order_id: randomUUID(), order_number: 7, product: 'Widget', quantity: 2, price: 9.99, ordered_at: '2026-11-28T10:00:00.000Z',
    ...overrides,
  };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const row = (o: Order, extra: Partial<Case> = {}): Case => ({ name: `valid ${o.product.slice(0, 30)}`, value: json(o), expect: { row: o }, ...extra });
const bad = (name: string, value: Buffer | string | null, ...reasons: string[]): Case =>
  ({ name, value: typeof value === 'string' ? Buffer.from(value) : value, expect: { reasons } });

function corpus(): Case[] {
  const cases: Case[] = [];
  const full = JSON.stringify(order());
  // Not JSON, or JSON that is not an order.
  cases.push(
    bad('malformed JSON', '{"order_id": "x", ', 'malformed-json'),
    bad('truncated JSON', full.slice(0, full.length - 7), 'malformed-json'),
    bad('empty JSON string', '""', 'schema'),
    bad('a JSON string', '"a string"', 'schema'),
    bad('an empty array', '[]', 'schema'),
    bad('an array of orders', JSON.stringify([order()]), 'schema'),
    bad('an empty object', '{}', 'schema'),
    bad('JSON null', 'null', 'schema'),
    bad('a number', '42', 'schema'),
    bad('true', 'true', 'schema'),
    bad('empty value (zero bytes)', Buffer.alloc(0), 'malformed-json', 'tombstone'),
    bad('whitespace only', '   \n\t ', 'malformed-json'),
    bad('tombstone (null value)', null, 'tombstone'),
    bad('UTF-8 BOM before JSON', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(full)]), 'malformed-json'),
    bad('two JSON objects', `${full}${full}`, 'malformed-json'),
    bad('deeply nested arrays', `${'['.repeat(100_000)}${']'.repeat(100_000)}`, 'schema', 'malformed-json'),
    bad('__proto__ key', `{"__proto__": {"admin": true}, ${full.slice(1)}`, 'schema'),
  );
  // Missing, extra, wrong-typed, null and empty fields.
  const { product: _p, ...noProduct } = order();
  cases.push(
    bad('missing product', JSON.stringify(noProduct), 'schema'),
    bad('extra field', JSON.stringify({ ...order(), extra: 1 }), 'schema'),
    bad('quantity as a string', JSON.stringify({ ...order(), quantity: '3' }), 'schema'),
    bad('price as a string', JSON.stringify({ ...order(), price: '9.99' }), 'schema'),
    bad('fractional order_number', JSON.stringify({ ...order(), order_number: 1.5 }), 'schema'),
    bad('order_id a number', JSON.stringify({ ...order(), order_id: 123 }), 'schema'),
    bad('order_id not a uuid', JSON.stringify({ ...order(), order_id: 'not-a-uuid' }), 'schema'),
    bad('product null', JSON.stringify({ ...order(), product: null }), 'schema'),
    bad('every field null', JSON.stringify({ order_id: null, order_number: null, product: null, quantity: null, price: null, ordered_at: null }), 'schema'),
    bad('product empty', JSON.stringify({ ...order(), product: '' }), 'schema'),
    bad('order_id empty', JSON.stringify({ ...order(), order_id: '' }), 'schema'),
    bad('ordered_at empty', JSON.stringify({ ...order(), ordered_at: '' }), 'schema'),
    bad('quantity zero', JSON.stringify({ ...order(), quantity: 0 }), 'schema'),
    bad('negative price', JSON.stringify({ ...order(), price: -1 }), 'schema'),
    bad('price with three decimals', JSON.stringify({ ...order(), price: 1.005 }), 'schema'),
  );
  // Bytes and characters.
  cases.push(
    bad('invalid UTF-8', Buffer.concat([Buffer.from('{"product": "'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), 'invalid-utf8'),
    bad('overlong UTF-8 encoding of "/"', Buffer.concat([Buffer.from(full.slice(0, -1)), Buffer.from([0xc0, 0xaf]), Buffer.from('}')]), 'invalid-utf8'),
    bad('raw NUL byte inside JSON', Buffer.concat([Buffer.from(full.slice(0, 20)), Buffer.from([0]), Buffer.from(full.slice(20))]), 'malformed-json'),
    bad('escaped NUL in product', JSON.stringify(order({ product: 'nul\u0000byte' })), 'unencodable'),
    bad('lone surrogate in product', JSON.stringify(order({ product: 'half \ud800 a pair' })), 'unencodable', 'schema'),
  );
  // Numbers and dates Postgres rejects (or the schema does first).
  cases.push(
    bad('price beyond numeric(12,2)', JSON.stringify(order({ price: 1e15 })), 'rejected-by-database'),
    bad('price 10^10 (one digit too many)', JSON.stringify(order({ price: 10_000_000_000 })), 'rejected-by-database'),
    bad('price 1e400 (Infinity)', JSON.stringify(order()).replace('"price":9.99', '"price":1e400'), 'schema', 'unencodable', 'rejected-by-database'),
    bad('order_number beyond bigint', JSON.stringify(order()).replace('"order_number":7', '"order_number":1e30'), 'schema', 'rejected-by-database'),
    bad('quantity beyond int4', JSON.stringify(order({ quantity: 3_000_000_000 })), 'schema', 'rejected-by-database'),
    bad('year 0000', JSON.stringify(order({ ordered_at: '0000-01-01T00:00:00Z' })), 'schema', 'rejected-by-database'),
    bad('year 99999', JSON.stringify(order({ ordered_at: '99999-01-01T00:00:00Z' })), 'schema', 'rejected-by-database'),
    bad('February 30', JSON.stringify(order({ ordered_at: '2026-02-30T00:00:00Z' })), 'schema', 'rejected-by-database'),
    bad('month 13', JSON.stringify(order({ ordered_at: '2026-13-01T00:00:00Z' })), 'schema', 'rejected-by-database'),
    bad('hour 25', JSON.stringify(order({ ordered_at: '2026-01-01T25:00:00Z' })), 'schema', 'rejected-by-database'),
    bad('date without time', JSON.stringify(order({ ordered_at: '2026-01-01' })), 'schema'),
    bad('date as epoch number', JSON.stringify({ ...order(), ordered_at: 1767225600000 }), 'schema'),
  );
  // Valid orders that are awkward to carry: COPY specials, big values, odd keys and headers.
  for (const product of ['tab\there', 'line\nbreak', 'cr\rhere', 'back\\slash\\', '\\.', '\\N', 'a\\tb', '"quoted"', 'Crème brûlée 🍮 寿司', ' ']) {
    cases.push(row(order({ product })));
  }
  cases.push(row(order({ price: 9_999_999_999.99, quantity: 2_147_483_647, order_number: 9_007_199_254_740_991 })));
  cases.push(row(order({ price: 0 })));
  cases.push(row(order({ ordered_at: '2026-06-30T23:59:59.999999+14:00' })));
  // ~1 MB: a valid order padded with JSON whitespace, and an invalid one that size (its dead letter is as big).
  const big = order({ product: 'padded to about a megabyte' });
  cases.push({ ...row(big), name: 'valid order of ~1 MB', value: Buffer.from(JSON.stringify(big).replace('{', `{${' '.repeat(1_000_000)}`)) });
  cases.push(bad('invalid order of ~1 MB', JSON.stringify(order({ product: 'x'.repeat(1_000_000) })), 'schema'));
  const hugeKey = order({ product: 'huge key' });
  cases.push(row(hugeKey, { name: 'huge key', key: Buffer.alloc(100_000, 0x6b) }));
  const binaryKey = order({ product: 'binary key' });
  cases.push(row(binaryKey, { name: 'binary key', key: Buffer.from([0, 0xff, 0xfe, 0x80, 0x0a]) }));
  const nullKey = order({ product: 'null key' });
  cases.push(row(nullKey, { name: 'null key', key: null }));
  const binaryHeaders = order({ product: 'binary headers' });
  cases.push(row(binaryHeaders, { name: 'binary headers', headers: [{ bin: Buffer.from([0xff, 0x00, 0x80]) }, { empty: Buffer.alloc(0) }] }));
  // node-rdkafka's producer passes header values through a C string of a JS string (Nan::To<String>, Utf8String), so
  // header bytes that are not UTF-8, or a NUL, cannot be produced by it at all (not by this test, not by the relay).
  cases.push({ ...bad('invalid with binary headers', '{nope', 'malformed-json'), headers: [{ bin: Buffer.from([1, 0x7f, 0x0a, 0x09, 0xc3, 0xa9]) }] });
  // Duplicate order_ids: the first wins, later ones are dead letters with reason `duplicate`, in a batch and across batches.
  const first = order({ product: 'first' });
  cases.push(row(first, { name: 'first of a duplicated order_id' }));
  cases.push(bad('same order_id right after (same batch)', JSON.stringify({ ...first, product: 'second' }), 'duplicate'));
  cases.push(bad('same order_id, upper-case uuid', JSON.stringify({ ...first, order_id: first.order_id.toUpperCase(), product: 'third' }), 'duplicate'));
  for (let i = 0; i < 12; i++) cases.push(row(order({ product: `filler ${i}` })));
  cases.push(bad('same order_id much later (another batch)', JSON.stringify({ ...first, product: 'fourth' }), 'duplicate'));
  return cases;
}

describe('hostile input through orders-ingest on the real broker', function () {
  this.timeout(240_000);
  const topic = unique('orders');
  const dlq = `${topic}.dlq`;
  const table = unique('orders_data');
  const group = unique('ingest');
  after(async () => dropAll([topic, dlq], [table], [group]));

  it('dead-letters each invalid message once with a reason, writes each valid one once, and never dies', async () => {
    const cases = corpus();
    // One partition keeps the order, so "the first wins" is well defined; small batches put duplicates across batches.
    await createTopic(topic, 1);
    const messages: OutgoingMessage[] = cases.map((c, i) => ({
      topic, partition: 0, key: c.key === undefined ? `case-${i}` : c.key, value: c.value,
      headers: [{ case: String(i) }, ...(c.headers ?? [])],
    }));
    await produce(messages);
    const r = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '1',
      '--batch-size', '8', '--batch-wait-ms', '50', '--stop-when-idle', '3']);
    assert.equal(r.code, 0, r.stderr);

    const rows = await db().any<{ order_id: string; order_number: string; product: string; quantity: number; price: string; ordered_at: Date }>(
      'SELECT order_id::text, order_number, product, quantity, price, ordered_at FROM $1:name', [table]);
    const byId = new Map<string, typeof rows>();
    for (const x of rows) byId.set(x.order_id, [...(byId.get(x.order_id) ?? []), x]);
    const dead = await readTopic(dlq);
    const deadByCase = new Map<number, typeof dead>();
    for (const m of dead) {
      const i = Number(header(m, 'case'));
      deadByCase.set(i, [...(deadByCase.get(i) ?? []), m]);
    }
    const problems: string[] = [];
    let expectedRows = 0;
    cases.forEach((c, i) => {
      const letters = deadByCase.get(i) ?? [];
      if ('row' in c.expect) {
        expectedRows++;
        const o = c.expect.row;
        const found = byId.get(o.order_id) ?? [];
        if (found.length !== 1) problems.push(`${i} ${c.name}: ${found.length} rows, expected 1 (${letters.map((m) => header(m, 'error.message')).join('; ')})`);
        else if (found[0].product !== o.product || found[0].price !== o.price.toFixed(2) || found[0].quantity !== o.quantity || Number(found[0].order_number) !== o.order_number
          || found[0].ordered_at.getTime() !== Date.parse(o.ordered_at)) problems.push(`${i} ${c.name}: row differs: ${JSON.stringify(found[0])}`);
        if (letters.length) problems.push(`${i} ${c.name}: also dead-lettered: ${header(letters[0], 'error.reason')}`);
        return;
      }
      if (letters.length !== 1) {
        problems.push(`${i} ${c.name}: ${letters.length} dead letters, expected 1`);
        return;
      }
      const m = letters[0];
      const reason = header(m, 'error.reason')!;
      if (!c.expect.reasons.includes(reason)) problems.push(`${i} ${c.name}: reason ${reason} (${header(m, 'error.message')}), expected ${c.expect.reasons.join(' or ')}`);
      if (!header(m, 'error.message')) problems.push(`${i} ${c.name}: no error.message`);
      if (c.value === null ? m.value !== null && m.value !== undefined : !Buffer.from(m.value ?? Buffer.alloc(0)).equals(c.value)) {
        problems.push(`${i} ${c.name}: the dead letter does not carry the original bytes`);
      }
      for (const h of c.headers ?? []) {
        for (const [k, v] of Object.entries(h)) {
          const got = (m.headers ?? []).find((x) => x[k] !== undefined)?.[k];
          if (!got || !Buffer.from(got).equals(Buffer.from(v))) problems.push(`${i} ${c.name}: header ${k} not kept (got ${got ? Buffer.from(got).toString('hex') : got})`);
        }
      }
    });
    assert.deepEqual(problems, []);
    assert.equal(rows.length, expectedRows, 'no row beyond the valid cases');
    assert.equal(dead.length, cases.length - expectedRows, 'no dead letter beyond the invalid cases');
  });
});

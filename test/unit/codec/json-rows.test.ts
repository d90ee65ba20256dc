import assert from 'node:assert/strict';
import type Kafka from 'node-rdkafka';
import { compileJsonRows } from '../../../pipeline/codec/json-rows.ts';
import { PlanExecutor } from '../../../pipeline/dsl/executor.ts';
import { optimize } from '../../../pipeline/dsl/optimize.ts';
import type { StageContext } from '../../../pipeline/records.ts';
import { copyTargets, runBatch } from '../../../pipeline/runtime/batch.ts';
import { formatCheck, orderSchema, validateOrder } from '../../../pipeline/schema/validator.ts';
import { CopyRowsBuilder } from '../../../pipeline/sinks/copy-segment.ts';
import { packMessages } from '../../../pipeline/sources/packed-batch.ts';
import { OrderFactory, prng } from '../../../topologies/order-factory.ts';
import { ORDER_COLUMNS, ordersIngestPlan } from '../../../topologies/orders-ingest-plan.ts';

validateOrder(); // the process's ajv, with its formats
const reader = compileJsonRows(orderSchema(), ORDER_COLUMNS, formatCheck)!;

const messagesOf = (values: (Buffer | null)[]): Kafka.Message[] =>
  values.map((value, i) => ({ topic: 'orders', partition: i % 6, offset: i, timestamp: 0, key: Buffer.from(`k${i}`), value, size: value?.length ?? 0 }) as Kafka.Message);

/**
 * The batch through runBatch twice, with the direct reader and without (every record through JSON.parse, ajv, the
 * row function and the COPY encoder): the rows, their key hashes and sources, and the dead letters must be the same.
 * Returns how many values the reader read itself.
 */
function sameAsStages(values: (Buffer | null)[]): number {
  const batch = packMessages('orders', messagesOf(values));
  const plan = ordersIngestPlan('orders', 'orders_data');
  const run = (directJson: boolean) => {
    const executor = new PlanExecutor(optimize(plan, { directJson }));
    const dead: string[] = [];
    const ctx: StageContext = { deadLetter: (r, reason, message) => dead.push(`${r.offset} ${reason}: ${message}`), late: () => undefined };
    const targets = copyTargets(executor);
    assert.equal(targets.get('to-orders_data')!.direct !== undefined, directJson);
    const rows = runBatch(executor, batch, ctx, targets).copy.get('to-orders_data');
    // Dead letters come in stage order within a chunk, and chunks differ between the two: compared by offset.
    const byOffset = (a: string, b: string) => Number(a.split(' ')[0]) - Number(b.split(' ')[0]);
    return { text: rows?.text.toString('latin1'), ends: [...(rows?.ends ?? [])], keys: [...(rows?.keyHashes ?? [])], src: [...(rows?.src ?? [])], dead: dead.sort(byOffset) };
  };
  const generic = run(false);
  const direct = run(true);
  assert.deepEqual(direct.dead, generic.dead);
  assert.equal(direct.text, generic.text);
  assert.deepEqual(direct.ends, generic.ends);
  assert.deepEqual(direct.keys, generic.keys);
  assert.deepEqual(direct.src, generic.src);
  return values.filter((v) => v !== null && reader.read(v, 0, v.length)).length;
}

const ORDER = '{"order_id":"0190c0de-0000-7000-8000-000000000001","order_number":17,"product":"Desk Lamp","quantity":3,"price":12.34,"ordered_at":"2026-11-28T10:00:00.000Z"}';
const withField = (field: string, literal: string) => ORDER.replace(new RegExp(`"${field}":("[^"]*"|[^,}]*)`), `"${field}":${literal}`);

describe('JsonRows: JSON values straight into COPY rows', () => {
  it('reads every valid order the generator makes, and gives the rows and dead letters the stages give', () => {
    const factory = new OrderFactory(11, 0.1);
    const values: Buffer[] = [];
    let valid = 0;
    for (let i = 0; i < 3000; i++) {
      const g = factory.next();
      values.push(Buffer.from(g.value));
      if (!g.invalid) valid++;
    }
    assert.equal(sameAsStages(values), valid, 'each valid order read directly, each invalid one left to the stages');
    assert.ok(valid > 2500 && valid < 3000);
  });

  it('reads what it decides exactly, leaves the rest to the stages, and the rows are the same', () => {
    const cases: [name: string, value: string, read: boolean][] = [
      ['an order', ORDER, true],
      ['keys in another order', '{"price":12.34,"quantity":3,"product":"Desk Lamp","order_number":17,"order_id":"0190c0de-0000-7000-8000-000000000001","ordered_at":"2026-11-28T10:00:00.000Z"}', true],
      ['whitespace around every token', ` \t\n{ "order_id" : "0190c0de-0000-7000-8000-000000000001" ,\r\n "order_number":17,"product":"Desk Lamp","quantity" :3,"price": 12.34 ,"ordered_at":"2026-11-28T10:00:00.000Z" } \n`, true],
      ['upper-case uuid', withField('order_id', '"0190C0DE-0000-7000-8000-00000000000A"'), true],
      ['urn:uuid: prefix', withField('order_id', '"urn:uuid:0190c0de-0000-7000-8000-000000000001"'), true],
      ['time zone offset', withField('ordered_at', '"2026-11-28T10:00:00+01:00"'), true],
      ['price 0', withField('price', '0'), true],
      ['price 12.5', withField('price', '12.5'), true],
      ['price 0.01', withField('price', '0.01'), true],
      ['the largest order number', withField('order_number', '999999999999999'), true],
      ['printable ASCII product', withField('product', '"a~!@#$%^&*()_+{}|:<>?`-=[];\',./ \x7f"'), true],
      ['price 12.50 (prints as 12.5)', withField('price', '12.50'), false],
      ['price 1e2', withField('price', '1e2'), false],
      ['price 1E2', withField('price', '1E2'), false],
      ['price 10.001 (not a multiple of 0.01)', withField('price', '10.001'), false],
      ['price -0', withField('price', '-0'), false],
      ['price -1', withField('price', '-1'), false],
      ['price 1.', withField('price', '1.'), false],
      ['price .5', withField('price', '.5'), false],
      ['price 01', withField('price', '01'), false],
      ['price +1', withField('price', '+1'), false],
      ['price as a string', withField('price', '"12.34"'), false],
      ['price null', withField('price', 'null'), false],
      ['quantity 1.0 (an integer to ajv)', withField('quantity', '1.0'), false],
      ['quantity 0 (below the minimum)', withField('quantity', '0'), false],
      ['quantity 2147483648 (above the maximum)', withField('quantity', '2147483648'), false],
      ['quantity -0', withField('quantity', '-0'), false],
      ['a 16-digit order number', withField('order_number', '1234567890123456'), false],
      ['order number 9007199254740993', withField('order_number', '9007199254740993'), false],
      ['a product with an escape', withField('product', '"Desk\\u0020Lamp"'), false],
      ['a product with an escaped tab', withField('product', '"Desk\\tLamp"'), false],
      ['a product in UTF-8', withField('product', '"Crème brûlée"'), false],
      ['an empty product', withField('product', '""'), false],
      ['a product of 201 characters', withField('product', `"${'x'.repeat(201)}"`), false],
      ['a product of 200 characters', withField('product', `"${'x'.repeat(200)}"`), true],
      ['a raw tab in a product', withField('product', '"Desk\tLamp"'), false],
      ['a bad uuid', withField('order_id', '"0190c0de-0000-7000-8000-00000000000g"'), false],
      ['a bad time', withField('ordered_at', '"2026-11-28 10:00:00"'), false],
      ['a duplicate key', ORDER.replace('"quantity":3', '"quantity":3,"quantity":4'), false],
      ['an unknown key', ORDER.replace('{', '{"note":"x",'), false],
      ['an escaped key', ORDER.replace('"product"', '"pro\\u0064uct"'), false],
      ['a missing key', ORDER.replace('"quantity":3,', ''), false],
      ['a trailing comma', ORDER.replace('}', ',}'), false],
      ['something after the object', `${ORDER}x`, false],
      ['two objects', `${ORDER}${ORDER}`, false],
      ['cut short', ORDER.slice(0, -1), false],
      ['a byte-order mark', `\ufeff${ORDER}`, false],
      ['an array', `[${ORDER}]`, false],
      ['an empty object', '{}', false],
      ['empty', '', false],
    ];
    for (const [name, value, read] of cases) {
      const bytes = Buffer.from(value);
      assert.equal(reader.read(bytes, 0, bytes.length), read, name);
    }
    const values: (Buffer | null)[] = cases.map(([, v]) => Buffer.from(v));
    values.push(null, Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), Buffer.from(ORDER)]), Buffer.from([0x7b, 0xff, 0x7d]));
    assert.equal(sameAsStages(values), cases.filter((c) => c[2]).length);
  });

  it('reads a value in the middle of a larger buffer without looking past its end', () => {
    const bytes = Buffer.from(`${ORDER}${ORDER}`);
    assert.equal(reader.read(bytes, 0, ORDER.length), true);
    assert.equal(reader.read(bytes, ORDER.length, 2 * ORDER.length), true);
    const rows = new CopyRowsBuilder(0);
    reader.write(bytes, rows);
    assert.equal(rows.finish().text.toString(), '0190c0de-0000-7000-8000-000000000001\t17\tDesk Lamp\t3\t12.34\t2026-11-28T10:00:00.000Z\n');
    const cut = Buffer.from(`${ORDER.slice(0, -1)}}`.replace('12.34', '12.3') + '4');
    assert.equal(reader.read(cut, 0, cut.length - 1), true, 'the price ends at the end given, not at the byte after it');
  });

  it('gives the same rows and dead letters as the stages for thousands of mutated orders', () => {
    const rand = prng(2026);
    const alphabet = Buffer.from('0123456789.-+eE"\\{}[],: \t\nabcfx\x00\x1f\x7f');
    const extra = [[0xc3, 0xa9], [0xff], [0xe2, 0x82, 0xac], [0xed, 0xa0, 0x80]];
    const factory = new OrderFactory(5, 0);
    const values: Buffer[] = [];
    for (let i = 0; i < 6000; i++) {
      const v = [...Buffer.from(factory.next().value)];
      const edits = 1 + Math.floor(rand() * 3);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rand() * v.length);
        const pick = rand() < 0.9 ? [alphabet[Math.floor(rand() * alphabet.length)]] : extra[Math.floor(rand() * extra.length)];
        const op = rand();
        if (op < 0.4) v.splice(at, 1, ...pick);
        else if (op < 0.7) v.splice(at, 0, ...pick);
        else v.splice(at, 1);
      }
      values.push(Buffer.from(v));
    }
    const read = sameAsStages(values);
    // Mutations that keep an order valid (a digit for a digit, a letter in a product) are read too; most are not.
    assert.ok(read > 100 && read < 5000, `${read} of 6000 mutants read directly`);
  });

  it('has no reader for a schema with anything it does not decide exactly', () => {
    const base = orderSchema() as { properties: Record<string, object> };
    const variant = (change: (s: typeof base) => void) => {
      const s = structuredClone(base);
      change(s);
      return compileJsonRows(s, ORDER_COLUMNS, formatCheck);
    };
    assert.ok(variant(() => undefined));
    assert.equal(variant((s) => { s.properties.product = { type: 'string', pattern: '^[A-Z]' }; }), undefined, 'pattern');
    assert.equal(variant((s) => { s.properties.product = { type: 'string', enum: ['Laptop'] }; }), undefined, 'enum');
    assert.equal(variant((s) => { s.properties.product = { type: ['string', 'null'] }; }), undefined, 'a union type');
    assert.equal(variant((s) => { s.properties.product = { type: 'string', format: 'no-such-format' }; }), undefined, 'an unknown format');
    assert.equal(variant((s) => { s.properties.quantity = { type: 'integer', exclusiveMinimum: true }; }), undefined, 'a draft-4 boolean bound');
    assert.equal(variant((s) => { s.properties.price = { type: 'object' }; }), undefined, 'a nested object');
    assert.equal(variant((s) => { (s as Record<string, unknown>).minProperties = 6; }), undefined, 'an object keyword');
    assert.equal(variant((s) => { (s as Record<string, unknown>).allOf = []; }), undefined, 'a combinator');
    assert.equal(variant((s) => { delete s.properties.product; }), undefined, 'a column that is no property');
    assert.equal(compileJsonRows(orderSchema(), [...ORDER_COLUMNS, 'note'], formatCheck), undefined);
  });
});

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tombstoneRow } from '../../../pipeline/dsl/builder.ts';
import { ConfigError } from '../../../pipeline/errors.ts';
import { columnType, createTableSql, parseSource, rowOf, tableColumns } from '../../../pipeline/connector/columns.ts';
import { loadConnectorConfig, loadConnectorConfigs } from '../../../pipeline/connector/config.ts';
import type { StreamRecord } from '../../../pipeline/records.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'connector-config-'));
const write = (name: string, text: string) => {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
};
const pipeline = { name: 'customers', topic: 'customers', schema: 'customer.schema.json', table: 'customers' };

describe('connector configs', () => {
  it('reads the issue\'s keys from JSON and the same from YAML, schema paths relative to the config file', () => {
    const json = write('a.json', JSON.stringify({ pipelines: [{ ...pipeline, key: ['customer_id'], mode: 'upsert', deleteOnTombstone: true, autoCreate: true, autoEvolve: false, columns: { city: '/address/city' } }] }));
    const yaml = write('a.yaml', 'pipelines:\n  - name: customers\n    topic: customers\n    schema: customer.schema.json\n    table: customers\n    key: [customer_id]\n    mode: upsert\n    deleteOnTombstone: true\n    autoCreate: true\n    autoEvolve: false\n    columns:\n      city: /address/city\n');
    const [fromJson] = loadConnectorConfig(json);
    const [fromYaml] = loadConnectorConfig(yaml);
    assert.deepEqual({ ...fromJson, origin: '' }, { ...fromYaml, origin: '' });
    assert.deepEqual({ ...fromJson, origin: undefined }, {
      name: 'customers', topics: ['customers'], schema: { file: path.join(tmp, 'customer.schema.json') }, table: 'customers', key: ['customer_id'], mode: 'upsert',
      deleteOnTombstone: true, autoCreate: true, autoEvolve: false, columns: { city: '/address/city' }, deadLetterTopic: undefined, groupId: undefined,
      batchSize: undefined, sinkConnections: undefined, origin: undefined,
    });
    assert.deepEqual(loadConnectorConfig(write('b.json', JSON.stringify({ pipelines: [{ ...pipeline, topic: undefined, topics: ['a', 'b'], schema: { subject: 's-value' } }] })))[0].schema, { subject: 's-value' });
  });

  it('names the file, the path in it and what is wrong, as a ConfigError (exit code 2)', () => {
    const cases: [string, string, RegExp][] = [
      ['mode.json', JSON.stringify({ pipelines: [{ ...pipeline, mode: 'merge' }] }), /mode\.json: \/pipelines\/0\/mode: must be one of "append", "upsert"/],
      ['unknown.json', JSON.stringify({ pipelines: [{ ...pipeline, tabel: 'x' }] }), /unknown\.json: \/pipelines\/0: unknown key "tabel"/],
      ['missing.yaml', 'pipelines:\n  - name: x\n    topic: x\n    table: x\n', /missing\.yaml: \/pipelines\/0: missing "schema"/],
      ['column.json', JSON.stringify({ pipelines: [{ ...pipeline, columns: { city: 'address.city' } }] }), /column\.json: \/pipelines\/0\/columns\/city: must match pattern/],
      ['upsert.json', JSON.stringify({ pipelines: [{ ...pipeline, mode: 'upsert' }] }), /upsert\.json: \/pipelines\/0\/mode: upsert needs "key"/],
      ['tomb.json', JSON.stringify({ pipelines: [{ ...pipeline, deleteOnTombstone: true }] }), /tomb\.json: \/pipelines\/0\/deleteOnTombstone: needs "mode": "upsert"/],
      ['broken.json', '{"pipelines": [', /broken\.json: not valid JSON/],
      ['broken.yaml', 'pipelines: [\n', /broken\.yaml: not valid YAML/],
    ];
    for (const [name, text, message] of cases) {
      const file = write(name, text);
      assert.throws(() => loadConnectorConfig(file), (err: Error) => err instanceof ConfigError && message.test(err.message), name);
    }
    assert.throws(() => loadConnectorConfig(path.join(tmp, 'nope.json')), /nope\.json: cannot be read/);
    const twice = write('twice.json', JSON.stringify({ pipelines: [pipeline] }));
    assert.throws(() => loadConnectorConfigs([twice, twice]), /\/pipelines\/0\/name: "customers" is also the name of/);
  });
});

describe('connector columns', () => {
  const schema = {
    type: 'object', required: ['id', 'at', 'amount'],
    properties: {
      id: { type: 'string', format: 'uuid' }, at: { type: 'string', format: 'date-time' }, day: { type: 'string', format: 'date' },
      n: { type: 'integer', minimum: 0, maximum: 1000 }, big: { type: 'integer' }, amount: { type: 'number', minimum: 0, maximum: 99999, multipleOf: 0.01 },
      ratio: { type: 'number' }, ok: { type: ['boolean', 'null'] }, tags: { type: 'array' }, address: { type: 'object', required: ['city'], properties: { city: { type: 'string' } } },
    },
  };

  it('maps JSON Schema types to Postgres types, nullable unless required', () => {
    const cols = tableColumns(schema, { city: '/address/city', at_kafka: '@timestamp', src: '@offset', k: '@key', trace: '@header/trace-id' }, ['id'], 'test');
    assert.deepEqual(cols.map((c) => `${c.name} ${c.type}${c.nullable ? ' null' : ''}`), [
      'id uuid', 'at timestamp with time zone', 'day date null', 'n integer null', 'big bigint null', 'amount numeric(7,2)', 'ratio numeric null',
      'ok boolean null', 'tags jsonb null', 'address jsonb null', 'city text null', 'at_kafka timestamp with time zone', 'src bigint', 'k text null', 'trace text null',
    ]);
    assert.deepEqual(columnType({ type: 'integer', minimum: -(2 ** 31), maximum: 2 ** 31 - 1 }), { type: 'integer', nullable: false });
    assert.deepEqual(columnType({ type: 'integer', maximum: 2 ** 31 }), { type: 'bigint', nullable: false });
    assert.deepEqual(columnType({ type: 'number', multipleOf: 0.001 }), { type: 'numeric(38,3)', nullable: false });
    assert.equal(createTableSql(cols.slice(0, 3), ['id'], (n) => `"${n}"`),
      'CREATE TABLE IF NOT EXISTS $TABLE (\n  "id" uuid NOT NULL,\n  "at" timestamp with time zone NOT NULL,\n  "day" date,\n  PRIMARY KEY ("id"))');
  });

  it('reads a column\'s source as a JSON pointer or as a JSONPath of names, to the same place', () => {
    assert.deepEqual(parseSource('/address/city'), { from: 'value', pointer: ['address', 'city'] });
    assert.deepEqual(parseSource('$.address.city'), { from: 'value', pointer: ['address', 'city'] });
    assert.deepEqual(parseSource("$['odd name'].x"), { from: 'value', pointer: ['odd name', 'x'] });
    assert.deepEqual(parseSource('/a~1b/c~0d'), { from: 'value', pointer: ['a/b', 'c~d'] });
    assert.deepEqual(parseSource('@key/id'), { from: 'key', pointer: ['id'] });
    assert.throws(() => parseSource('$.a[0]'), /is not a JSONPath of names/);
    const cols = tableColumns(schema, { city: '$.address.city', address: null }, [], 'test');
    assert.deepEqual(cols.find((c) => c.name === 'city'), { name: 'city', source: { from: 'value', pointer: ['address', 'city'] }, type: 'text', nullable: true });
  });

  it('puts the key columns first, and refuses a key that is no column or a pointer the schema lacks', () => {
    assert.deepEqual(tableColumns(schema, { address: null }, ['n', 'id'], 'test').slice(0, 3).map((c) => c.name), ['n', 'id', 'at']);
    assert.throws(() => tableColumns(schema, {}, ['nope'], 'f: /pipelines/0'), /f: \/pipelines\/0\/key: "nope" is not a column/);
    assert.throws(() => tableColumns(schema, { x: '/address/zip' }, [], 'f: /pipelines/0'), /f: \/pipelines\/0\/columns\/x: \/address\/zip is not a property of the schema/);
    assert.throws(() => tableColumns({ properties: { 'two words': { type: 'string' } } }, {}, [], 'f'), /the property "two words" cannot be a column name as it is/);
  });

  it('makes a row from the value, the key, headers and the record\'s metadata; objects as JSON text', () => {
    const cols = tableColumns(schema, { city: '/address/city', src: '@offset', p: '@partition', t: '@topic', k: '@key/id', trace: '@header/trace-id', at_kafka: '@timestamp' }, [], 'test');
    const value = { id: 'u', at: '2026-01-01T00:00:00Z', amount: 1.5, tags: ['a'], address: { city: 'Oslo' } };
    const r: StreamRecord = {
      topic: 'events', partition: 2, offset: 41, timestamp: Date.UTC(2026, 0, 2), key: '{"id":7}', rawKey: Buffer.from('{"id":7}'),
      headers: [{ 'trace-id': Buffer.from('abc') }], raw: Buffer.from(JSON.stringify(value)), value,
    };
    const row = rowOf(cols)(value, r.key, r);
    assert.deepEqual(Object.fromEntries(cols.map((c, i) => [c.name, row[i]])), {
      id: 'u', at: '2026-01-01T00:00:00Z', day: null, n: null, big: null, amount: 1.5, ratio: null, ok: null, tags: '["a"]', address: '{"city":"Oslo"}',
      city: 'Oslo', src: 41, p: 2, t: 'events', k: 7, trace: 'abc', at_kafka: '2026-01-02T00:00:00.000Z',
    });
  });

  it('gives a tombstone\'s row its key from the Kafka key: a JSON object\'s properties, or the key itself', () => {
    const tomb = (key: string | null): StreamRecord => ({ topic: 't', partition: 0, offset: 0, timestamp: undefined, key, rawKey: key === null ? null : Buffer.from(key), headers: undefined, raw: null, value: null });
    assert.deepEqual(tombstoneRow(['id', 'name'], ['id'])(tomb('42')), [42, null]);
    assert.deepEqual(tombstoneRow(['id', 'name'], ['id'])(tomb('"abc"')), ['abc', null]);
    assert.deepEqual(tombstoneRow(['id', 'name'], ['id'])(tomb('plain-key')), ['plain-key', null]);
    assert.deepEqual(tombstoneRow(['a', 'b', 'x'], ['a', 'b'])(tomb('{"a":1,"b":"two"}')), [1, 'two', null]);
    assert.throws(() => tombstoneRow(['a', 'b'], ['a', 'b'])(tomb('7')), /not an object with the key columns a, b/);
    assert.throws(() => tombstoneRow(['a'], ['a'])(tomb(null)), /without a key/);
  });
});

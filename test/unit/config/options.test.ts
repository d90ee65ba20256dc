import assert from 'node:assert/strict';
import { fromEnv, options, parseArgs, type OptionSpec } from '../../../pipeline/config/options.ts';
import { ordersIngest } from '../../../topologies/orders-ingest.ts';
import Kafka from 'node-rdkafka';
import { checkKafkaConfig, kafkaConnection, redactConfig } from '../../../pipeline/kafka/client-config.ts';
import { ConfigError } from '../../../pipeline/errors.ts';
import { tableName } from '../../../pipeline/postgres/db.ts';

const specs: OptionSpec[] = [
  { name: 'rate', type: 'int', min: 0, default: 1000, help: '' },
  { name: 'ratio', type: 'number', min: 0, max: 1, default: 0, help: '' },
  { name: 'topic', type: 'string', default: 'orders', help: '' },
  { name: 'describe', type: 'bool', help: '' },
  { name: 'kafka', type: 'list', help: '' },
];

describe('flag parser', () => {
  it('takes names, then flags as --k v or --k=v, with defaults for the rest', () => {
    const r = parseArgs(['a', 'b', '--rate', '5', '--ratio=0.5', '--describe'], specs);
    assert.deepEqual(r.names, ['a', 'b']);
    assert.equal(r.values.rate, 5);
    assert.equal(r.values.ratio, 0.5);
    assert.equal(r.values.topic, 'orders');
    assert.equal(r.values.describe, true);
  });

  it('collects repeated list flags', () => {
    assert.deepEqual(parseArgs(['--kafka', 'a=1', '--kafka', 'b=2'], specs).values.kafka, ['a=1', 'b=2']);
  });

  for (const [argv, message] of [
    [['--nope'], /unknown flag --nope/],
    [['--rate', 'fast'], /--rate: expected an integer, got "fast"/],
    [['--rate', '1.5'], /--rate: expected an integer/],
    [['--rate', '-1'], /--rate: must be at least 0/],
    [['--ratio', '2'], /--ratio: must be at most 1/],
    [['--topic'], /--topic needs a value/],
    [['--topic', ''], /--topic: must not be empty/],
    [['--describe=maybe'], /--describe: expected true or false/],
    [['--rate', '1', 'late-name'], /topology names come before flags/],
  ] as [string[], RegExp][]) {
    it(`rejects ${argv.join(' ')} with one clear line`, () => {
      assert.throws(() => parseArgs(argv, specs), (err: Error) => err instanceof ConfigError && message.test(err.message) && !err.message.includes('\n'));
    });
  }

  it('reads environment values with the same checks, naming the variable', () => {
    assert.equal(fromEnv(specs[0], { RATE: '7' }, 'RATE'), 7);
    assert.equal(fromEnv(specs[0], {}, 'RATE'), undefined);
    assert.throws(() => fromEnv(specs[0], { RATE: 'x' }, 'RATE'), /RATE: expected an integer/);
  });

  it('passes librdkafka properties through from flags over KAFKA_CONFIG, and masks secrets', () => {
    const conn = kafkaConnection('b:9092', ['sasl.password=flag-secret'], { KAFKA_CONFIG: 'security.protocol=SASL_SSL;sasl.password=env-secret' });
    assert.deepEqual(conn.extra, { 'security.protocol': 'SASL_SSL', 'sasl.password': 'flag-secret' });
    assert.deepEqual(redactConfig(conn.extra), { 'security.protocol': 'SASL_SSL', 'sasl.password': '***' });
    assert.throws(() => kafkaConnection('b', ['novalue'], {}), /expected key=value/);
  });

  it('has librdkafka check passed-through properties at start, masking secret values in its message', () => {
    const create = (config: Record<string, unknown>) => new Kafka.Producer(config as Kafka.ProducerGlobalConfig);
    checkKafkaConfig(kafkaConnection('127.0.0.1:1', ['linger.ms=5']), create);
    assert.throws(() => checkKafkaConfig(kafkaConnection('127.0.0.1:1', ['no.such.property=1']), create), /--kafka \/ KAFKA_CONFIG: No such configuration property: "no.such.property"/);
    assert.throws(() => checkKafkaConfig(kafkaConnection('127.0.0.1:1', ['sasl.password=Hunter2', 'linger.ms=soon']), create),
      (err: Error) => err instanceof ConfigError && !err.message.includes('Hunter2'));
  });

  it('accepts plain table names and quotes them; refuses anything that could carry SQL', () => {
    assert.equal(tableName('orders_data'), '"orders_data"');
    assert.equal(tableName('analytics.orders'), '"analytics"."orders"');
    for (const bad of ['orders; DROP TABLE x', 'a"b', '1abc', 'a.b.c', '', 'x y']) assert.throws(() => tableName(bad), ConfigError);
  });
});

describe('typed options (options(): the specs compiled into a JSON Schema, checked with ajv)', () => {
  const specs = [
    { name: 'batch-size', type: 'int', min: 1, max: 100, default: 10, help: '' },
    { name: 'rate', type: 'number', min: 0, help: '' },
    { name: 'format', type: 'string', choices: ['csv', 'ndjson'], help: '' },
    { name: 'loop', type: 'bool', help: '' },
    { name: 'kafka', type: 'list', help: '' },
  ] as const;
  const check = options(specs);

  it('gives the values typed when they fit the specs', () => {
    const v = check({ 'batch-size': 5, rate: 0.5, format: 'csv', loop: true, kafka: ['a=b'], other: 'ignored' });
    const size: number = v['batch-size'];
    const format: 'csv' | 'ndjson' | undefined = v.format;
    assert.equal(size, 5);
    assert.equal(format, 'csv');
    assert.deepEqual(check({ 'batch-size': 1 }), { 'batch-size': 1 }, 'options without a default may be absent');
  });

  it('refuses values that do not, naming the flag', () => {
    assert.throws(() => check({ 'batch-size': 'x' }), (e: unknown) => e instanceof ConfigError && /^--batch-size: must be integer/.test(e.message));
    assert.throws(() => check({ 'batch-size': 101 }), /ConfigError: --batch-size: must be <= 100/);
    assert.throws(() => check({ 'batch-size': 1, format: 'xml' }), /ConfigError: --format: must be equal to one of the allowed values/);
    assert.throws(() => check({ 'batch-size': 1, loop: 'yes' }), /ConfigError: --loop: must be boolean/);
    assert.throws(() => check({}), /ConfigError: --batch-size: must have required property/);
  });

  it('is what a topology reads its values through: wrong ones stop it before it runs', () => {
    assert.throws(() => ordersIngest.describe({ topic: 42 }), ConfigError);
  });
});

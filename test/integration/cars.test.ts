import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { decodeWireFormat } from '../../pipeline/schema/wire-format.ts';
import type { Car } from '../../topologies/cars-producer.ts';
import { createTopic, dropAll, produce, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';
import { startRegistry, type Registry } from '../helpers/schema-registry.ts';

const cars = (stdout: string): Car[] => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Car);
const consume = (topic: string, group: string, ...extra: string[]) =>
  ['cars-consumer', '--topic', topic, '--group-id', group, '--output', 'json', ...extra];

describe('cars-producer and cars-consumer on real Kafka', () => {
  const topics: string[] = [];
  const fresh = () => {
    const t = unique('cars');
    topics.push(t);
    return { topic: t, group: unique('cars-consumer') };
  };
  after(async () => { await dropAll(topics, [], []); });

  it('round trip: 1000 cars produced and acknowledged, 1000 printed, one line each, exit 0', async () => {
    const { topic, group } = fresh();
    const p = await runTopology(['cars-producer', '--count', '1000', '--topic', topic]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stderr, /produced 1000 cars to /);
    const c = await runTopology(consume(topic, group, '--max', '1000'));
    assert.equal(c.code, 0, c.stderr);
    const printed = cars(c.stdout);
    assert.equal(printed.length, 1000);
    const sent = new Set((await readTopic(topic)).map((m) => (JSON.parse(m.value!.toString()) as Car).id));
    assert.deepEqual(new Set(printed.map((x) => x.id)), sent);
    const text = await runTopology(['cars-producer', '--count', '1', '--topic', topic]).then(() => runTopology(consume(topic, group, '--max', '1', '--output', 'text')));
    assert.match(text.stdout, /^Car\(id=[0-9a-f-]{36}, make=.+, model=.+, year=\d{4}\)\n$/);
  });

  it('--max stops after N cars with their offsets committed: the next run goes on where it stopped', async () => {
    const { topic, group } = fresh();
    assert.equal((await runTopology(['cars-producer', '--count', '30', '--topic', topic, '--partitions', '1'])).code, 0);
    const first = await runTopology(consume(topic, group, '--max', '10'));
    const second = await runTopology(consume(topic, group, '--max', '20'));
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const all = [...cars(first.stdout), ...cars(second.stdout)];
    assert.equal(all.length, 30);
    assert.equal(new Set(all.map((x) => x.id)).size, 30, 'nothing printed twice');
  });

  it('reports invalid messages on stderr with the reason and goes on', async () => {
    const { topic, group } = fresh();
    await createTopic(topic, 1);
    const good = (year: number) => Buffer.from(JSON.stringify({ id: crypto.randomUUID(), make: 'Ford', model: 'Focus', year }));
    await produce([good(2001), Buffer.from('{"id": '), good(1700), null, good(2002), Buffer.from(JSON.stringify({ id: 'x', make: 'Ford' }))]
      .map((value) => ({ topic, value })));
    const c = await runTopology(consume(topic, group, '--max', '2'));
    assert.equal(c.code, 0, c.stderr);
    assert.deepEqual(cars(c.stdout).map((x) => x.year), [2001, 2002]);
    assert.match(c.stderr, /invalid message at \S+\[0\]@1 \(malformed-json\)/);
    assert.match(c.stderr, /invalid message at \S+\[0\]@2 \(schema\): \/year must be >= 1886/);
    assert.match(c.stderr, /invalid message at \S+\[0\]@3 \(tombstone\)/);
  });

  it('Ctrl-C (SIGINT) closes the consumer cleanly with offsets committed: a restart prints only new cars', async () => {
    const { topic, group } = fresh();
    assert.equal((await runTopology(['cars-producer', '--count', '50', '--topic', topic])).code, 0);
    const run = startTopology(consume(topic, group));
    await waitUntil('50 cars printed', async () => cars(run.stdout()).length === 50);
    run.child.kill('SIGINT');
    assert.equal(await run.exited, 0, run.stderr());
    assert.equal((await runTopology(['cars-producer', '--count', '1', '--topic', topic])).code, 0);
    const again = await runTopology(consume(topic, group, '--max', '1'));
    const seen = new Set(cars(run.stdout()).map((x) => x.id));
    assert.equal(cars(again.stdout).length, 1);
    assert.ok(!seen.has(cars(again.stdout)[0].id), 'the restart printed a car already printed');
  });

  describe('with a schema registry (SCHEMA_REGISTRY_URL; the real one, through the tests\' recording proxy)', () => {
    let stub: Registry;
    before(async () => { stub = await startRegistry(); });
    after(async () => { await stub.close(); });

    it('registers cars-value, writes magic byte + schema id, and the consumer fetches that schema once', async () => {
      const { topic, group } = fresh();
      const env = { SCHEMA_REGISTRY_URL: stub.url };
      const p = await runTopology(['cars-producer', '--count', '200', '--topic', topic], env);
      assert.equal(p.code, 0, p.stderr);
      const messages = await readTopic(topic);
      assert.equal(messages.length, 200);
      const ids = [...new Set(messages.map((m) => decodeWireFormat(m.value!)?.schemaId))];
      assert.equal(ids.length, 1, 'one schema id');
      assert.ok(Number.isInteger(ids[0]) && ids[0]! > 0, 'every message carries magic byte 0 and the registered schema id');
      assert.ok(stub.requests.includes(`POST /subjects/${topic}-value/versions`));
      const c = await runTopology(consume(topic, group, '--max', '200'), env);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(cars(c.stdout).length, 200);
      assert.equal(stub.requests.filter((r) => r === `GET /schemas/ids/${ids[0]}`).length, 1, 'fetched once, then cached');
    });
  });
});

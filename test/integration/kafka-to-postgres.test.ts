import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { encodeWireFormat } from '../../pipeline/schema/wire-format.ts';
import { customers, pageViews } from '../../examples/producer.ts';
import { startRegistry } from '../helpers/schema-registry.ts';
import { createTopic, db, dropAll, header, produce, readTopic, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';

const EXAMPLES = path.join(projectRoot, 'examples');
const SHORT_SESSION = ['--kafka', 'session.timeout.ms=6000'];
const CUSTOMER_SCHEMA = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'customer.schema.json'), 'utf8')) as { properties: Record<string, object>; required: string[] };

type Customer = Record<string, unknown> & { customer_id: number; email: string; credit?: number; address?: { city?: string }; updated_at: string };

/** The table's rows by key, as the fold of the topic would give them. */
async function tableOf(table: string): Promise<Map<number, Record<string, unknown>>> {
  const rows = await db().any('SELECT * FROM $1:name', [table]);
  return new Map(rows.map((r) => [Number(r.customer_id), r]));
}

/** The table equals the fold: every live customer's last value, and no deleted one. */
function assertFold(rows: Map<number, Record<string, unknown>>, live: Map<number, Record<string, unknown>>): void {
  const missing = [...live.keys()].filter((id) => !rows.has(id));
  const extra = [...rows.keys()].filter((id) => !live.has(id));
  assert.deepEqual({ missing: missing.slice(0, 5), extra: extra.slice(0, 5) }, { missing: [], extra: [] }, `missing ${missing.length}, extra (deleted, yet there) ${extra.length}`);
  let stale = 0;
  for (const [id, want] of live as Map<number, Customer>) {
    const row = rows.get(id)!;
    const same = row.email === want.email && Number(row.credit) === Number(want.credit) && row.city === (want.address?.city ?? null)
      && (row.updated_at as Date).toISOString() === want.updated_at;
    if (!same) stale++;
  }
  assert.equal(stale, 0, 'rows whose values are not the last record of their key');
  assert.equal(rows.size, live.size);
}

describe('kafka-to-postgres on real Kafka and Postgres', () => {
  const topics: string[] = [];
  const tables: string[] = [];
  const groups: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-to-postgres-'));
  after(() => dropAll(topics, tables, groups));

  /** A config file for one pipeline on fresh names; `over` sets or replaces keys. */
  function config(name: string, over: Record<string, unknown>, file = path.join(tmp, `${unique(name)}.json`)) {
    const n = { topic: unique(name), table: unique(name.replace(/-/g, '_')) };
    topics.push(n.topic, `${n.topic}.dlq`);
    tables.push(n.table);
    groups.push(`kafka-to-postgres-${name}`);
    const pipeline = { name, topic: n.topic, table: n.table, ...over };
    fs.writeFileSync(file, JSON.stringify({ pipelines: [pipeline] }));
    return { ...n, file, pipeline };
  }
  const customerConfig = (name: string, over: Record<string, unknown> = {}) => config(name, {
    schema: path.join(EXAMPLES, 'customer.schema.json'), key: ['customer_id'], mode: 'upsert', deleteOnTombstone: true, autoCreate: true,
    columns: { city: '/address/city', address: null }, ...over,
  });
  const connector = (file: string, ...extra: string[]) => ['kafka-to-postgres', '--config', file, '--batch-size', '500', '--batch-wait-ms', '50', ...extra];

  async function produceCustomers(topic: string, count: number, seed: number, live = new Map<number, Record<string, unknown>>()) {
    await createTopic(topic, 3);
    const records = [...customers(count, seed, 0.2, 0.02, live)];
    await produce(records.map((r) => ({ topic, key: r.key, value: r.value === null ? null : Buffer.from(JSON.stringify(r.value)) })));
    return { live, records };
  }

  /** The offsets a group has committed for a topic, summed over its partitions. */
  const committed = async (group: string, topic: string) =>
    Number((await db().one<{ n: string | null }>('SELECT sum(next_offset)::bigint AS n FROM pipeline_offsets WHERE group_id = $1 AND topic = $2', [group, topic])).n ?? 0);

  /**
   * Starts the connector three times, each killed with SIGKILL at a random moment after its first commit; then runs
   * it to the end. Polls and flushes of 100 records keep each run from reaching the end before its kill, and a short
   * session timeout has the group give a killed member's partitions to the next one sooner.
   */
  async function killThrice(c: { file: string; topic: string }, group: string, total: number): Promise<number> {
    let kills = 0;
    for (let k = 0; k < 3; k++) {
      const before = await committed(group, c.topic);
      if (before >= total) break;
      const run = startTopology(connector(c.file, '--batch-size', '100', '--max-poll-records', '100', ...SHORT_SESSION));
      await waitUntil('a commit by this run', async () => run.child.exitCode !== null || (await committed(group, c.topic)) > before, 60_000);
      await sleep(Math.floor(Math.random() * 150));
      if (run.child.exitCode === null) {
        run.child.kill('SIGKILL');
        kills++;
      }
      await run.exited;
    }
    const last = await runTopology(connector(c.file, '--stop-when-idle', '3', ...SHORT_SESSION));
    assert.equal(last.code, 0, last.stderr);
    assert.equal(await committed(group, c.topic), total, 'every record committed, once');
    return kills;
  }

  it('upsert with deletes: killed with SIGKILL at random moments, the table ends as the fold of the topic (last value per key, deleted keys absent)', async () => {
    const c = customerConfig('customers-kill');
    const { live, records } = await produceCustomers(c.topic, 30_000, 7);
    const tombstones = records.filter((r) => r.value === null).length;
    assert.ok(tombstones > 300 && live.size < 30_000 - tombstones, `the stream deletes (${tombstones}) and updates`);
    const kills = await killThrice(c, 'kafka-to-postgres-customers-kill', 30_000);
    assert.ok(kills >= 2, `the connector was killed mid-run (${kills} times)`);
    assertFold(await tableOf(c.table), live);
  });

  it('upsert without deletes, and append: killed with SIGKILL at random moments, each table ends as its fold of the topic', async () => {
    const up = customerConfig('customers-kill-nodelete', { deleteOnTombstone: false });
    const { records } = await produceCustomers(up.topic, 12_000, 8);
    const fold = new Map<number, Record<string, unknown>>();
    for (const r of records) if (r.value !== null) fold.set(Number(r.key), r.value); // tombstones are dead letters here
    const upKills = await killThrice(up, 'kafka-to-postgres-customers-kill-nodelete', 12_000);
    assert.ok(upKills >= 2, `killed mid-run (${upKills} times)`);
    assertFold(await tableOf(up.table), fold);
    const ap = config('views-kill', { schema: path.join(EXAMPLES, 'page-view.schema.json'), key: ['view_id'], autoCreate: true });
    await createTopic(ap.topic, 3);
    await produce([...pageViews(12_000, 5)].map((v) => ({ topic: ap.topic, key: v.key, value: Buffer.from(JSON.stringify(v.value)) })));
    const apKills = await killThrice(ap, 'kafka-to-postgres-views-kill', 12_000);
    assert.ok(apKills >= 2, `killed mid-run (${apKills} times)`);
    assert.deepEqual(await db().one('SELECT count(*)::int AS n, count(DISTINCT view_id)::int AS distinct FROM $1:name', [ap.table]), { n: 12_000, distinct: 12_000 });
    // A record read again after a kill and taken for a new one would be a duplicate dead letter: there are none.
    assert.equal((await db().one('SELECT count(*)::int AS n FROM pipeline_dead_letters WHERE dlq_topic = $1', [`${ap.topic}.dlq`])).n, 0);
    assert.deepEqual(await readTopic(`${ap.topic}.dlq`), []);
  });

  it('append with auto-create: every valid page view once, the direct reader on, and every bad record a dead letter with its reason', async () => {
    const c = config('page-views', { schema: path.join(EXAMPLES, 'page-view.schema.json'), key: 'view_id', autoCreate: true });
    const described = await runTopology(['kafka-to-postgres', '--config', c.file, '--describe']);
    assert.match(described.stdout, /rewrite direct-json-rows/, described.stdout);
    await createTopic(c.topic, 3);
    const views = [...pageViews(5000, 3)];
    const bad = [
      { key: 'a', value: Buffer.from('{"view_id": ') },
      { key: 'b', value: Buffer.from(JSON.stringify({ ...views[0].value, duration_ms: -1 })) },
      { key: 'c', value: null },
      { key: views[1].key, value: Buffer.from(JSON.stringify(views[1].value)) }, // the same view_id again: a duplicate
    ];
    await produce([...views.map((v) => ({ topic: c.topic, key: v.key, value: Buffer.from(JSON.stringify(v.value)) })), ...bad.map((b) => ({ topic: c.topic, ...b }))]);
    const r = await runTopology(connector(c.file, '--stop-when-idle', '3'));
    assert.equal(r.code, 0, r.stderr);
    const rows = await db().one<{ n: number; distinct: number }>('SELECT count(*)::int AS n, count(DISTINCT view_id)::int AS distinct FROM $1:name', [c.table]);
    assert.deepEqual(rows, { n: 5000, distinct: 5000 });
    const types = await db().map('SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position', [c.table],
      (x: { column_name: string; data_type: string; is_nullable: string }) => `${x.column_name} ${x.data_type}${x.is_nullable === 'YES' ? ' null' : ''}`);
    assert.deepEqual(types, ['view_id uuid', 'url text', 'user_id bigint', 'referrer text null', 'viewed_at timestamp with time zone', 'duration_ms integer']);
    await waitUntil('dead letters published', async () => (await readTopic(`${c.topic}.dlq`)).length >= 4);
    const reasons = (await readTopic(`${c.topic}.dlq`)).map((m) => header(m, 'error.reason')).sort();
    assert.deepEqual(reasons, ['duplicate', 'malformed-json', 'schema', 'tombstone']);
  });

  it('upsert: rows Postgres rejects are isolated by bisection and dead-lettered; the rest are applied', async () => {
    const c = customerConfig('customers-check', { autoCreate: false });
    await db().none(`CREATE TABLE $1:name (customer_id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL, tier text,
      credit numeric(9,2) CHECK (credit < 9000), updated_at timestamptz NOT NULL, city text)`, [c.table]);
    const live = new Map<number, Record<string, unknown>>();
    const { records } = await produceCustomers(c.topic, 3000, 11, live);
    const r = await runTopology(connector(c.file, '--stop-when-idle', '3'));
    assert.equal(r.code, 0, r.stderr);
    // The fold of the records Postgres accepts: a key's row is its last record that passes the CHECK, as if each
    // record had been written in turn (a rejected last record of a key in a flush gives way to the one before it).
    const accepted = new Map<number, Record<string, unknown>>();
    const rejectedIds = new Set<string>();
    for (const rec of records) {
      const id = Number(rec.key);
      if (rec.value === null) accepted.delete(id);
      else if ((rec.value as Customer).credit! >= 9000) rejectedIds.add(`${id}@${(rec.value as Customer).updated_at}`);
      else accepted.set(id, rec.value);
    }
    assert.ok(rejectedIds.size > 100, `records the CHECK rejects (${rejectedIds.size})`);
    assertFold(await tableOf(c.table), accepted);
    // Each dead letter is one of those records, with the database's error; a rejected record that a later record of
    // its key in the same flush overwrote was never written, so Postgres never judged it.
    const dead = await waitForDeadLetters(`${c.topic}.dlq`, (n) => n > 0);
    for (const m of dead) {
      assert.equal(header(m, 'error.reason'), 'rejected-by-database');
      assert.match(header(m, 'error.message') ?? '', /^23514/);
      const v = JSON.parse(m.value!.toString()) as Customer;
      assert.ok(rejectedIds.has(`${v.customer_id}@${v.updated_at}`), `dead letter ${v.customer_id} is a record the CHECK rejects`);
    }
    assert.equal(new Set(dead.map((m) => `${m.partition}/${header(m, 'source.offset')}`)).size, dead.length, 'each dead-lettered once');
  });

  it('refuses a table without the key constraint upsert needs, and a missing table without autoCreate, each in one line with exit code 2', async () => {
    const c = customerConfig('customers-nokey', { autoCreate: false });
    const missing = await runTopology(connector(c.file, '--stop-when-idle', '1'));
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, new RegExp(`table ${c.table} does not exist: create it, or set "autoCreate": true`));
    await db().none('CREATE TABLE $1:name (customer_id integer, name text, email text, tier text, credit numeric, updated_at timestamptz, city text)', [c.table]);
    const nokey = await runTopology(connector(c.file, '--stop-when-idle', '1'));
    assert.equal(nokey.code, 2, nokey.stderr);
    assert.match(nokey.stderr, /has no primary key or unique constraint on \(customer_id\), which upsert needs/);
  });

  it('auto-evolve adds a new optional property as a NULL-able column, refuses a type change, and without it refuses the new column', async () => {
    const v2 = { ...CUSTOMER_SCHEMA, properties: { ...CUSTOMER_SCHEMA.properties, phone: { type: 'string', maxLength: 40 } } };
    const v2File = path.join(tmp, 'customer-v2.schema.json');
    fs.writeFileSync(v2File, JSON.stringify(v2));
    const c = customerConfig('customers-evolve', { autoEvolve: true });
    const { live } = await produceCustomers(c.topic, 2000, 5);
    const first = await runTopology(connector(c.file, '--stop-when-idle', '2'));
    assert.equal(first.code, 0, first.stderr);
    // A newer schema with an optional phone, and records that carry it.
    fs.writeFileSync(c.file, JSON.stringify({ pipelines: [{ ...c.pipeline, schema: v2File }] }));
    await produce([{ topic: c.topic, key: '1', value: Buffer.from(JSON.stringify({ ...live.get(1) ?? {}, customer_id: 1, name: 'One', email: 'one@example.com', updated_at: '2026-06-01T00:00:00.000Z', phone: '+351 1' })) }]);
    const second = await runTopology(connector(c.file, '--stop-when-idle', '2'));
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /added column phone \(auto-evolve\)/);
    const one = await db().one('SELECT phone, email FROM $1:name WHERE customer_id = 1', [c.table]);
    assert.deepEqual(one, { phone: '+351 1', email: 'one@example.com' });
    assert.equal((await db().one('SELECT count(*)::int AS n FROM $1:name WHERE phone IS NULL', [c.table])).n, (await tableOf(c.table)).size - 1, 'older rows have no phone');
    // A type change is refused, naming the column.
    const v3File = path.join(tmp, 'customer-v3.schema.json');
    fs.writeFileSync(v3File, JSON.stringify({ ...v2, properties: { ...v2.properties, tier: { type: 'integer' } } }));
    fs.writeFileSync(c.file, JSON.stringify({ pipelines: [{ ...c.pipeline, schema: v3File }] }));
    const third = await runTopology(connector(c.file, '--stop-when-idle', '1'));
    assert.equal(third.code, 2, third.stderr);
    assert.match(third.stderr, /column tier of table \S+ is text, and the schema now makes it bigint: auto-evolve only adds columns/);
    // Without auto-evolve, a property the table lacks is refused too.
    const plain = customerConfig('customers-noevolve', { schema: v2File, autoCreate: false });
    await db().none('CREATE TABLE $1:name (customer_id integer PRIMARY KEY, name text, email text, tier text, credit numeric, updated_at timestamptz, city text)', [plain.table]);
    const refused = await runTopology(connector(plain.file, '--stop-when-idle', '1'));
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /has no column phone \(text\), which the schema gives: add it, or set "autoEvolve": true/);
  });

  it('reads its schema from a registry subject, and evolves with the registry\'s versions at start and while it runs', async () => {
    const registry = await startRegistry();
    try {
      const subject = unique('customers-value');
      await registry.register(subject, CUSTOMER_SCHEMA);
      const c = customerConfig('customers-registry', { schema: { subject }, autoEvolve: true });
      const env = { SCHEMA_REGISTRY_URL: registry.url };
      const { live } = await produceCustomers(c.topic, 1000, 9);
      const first = await runTopology(connector(c.file, '--stop-when-idle', '2'), env);
      assert.equal(first.code, 0, first.stderr);
      assertFold(await tableOf(c.table), live);
      await registry.setCompatibility(subject, 'NONE');
      await registry.register(subject, { ...CUSTOMER_SCHEMA, properties: { ...CUSTOMER_SCHEMA.properties, loyalty: { type: 'integer', minimum: 0, maximum: 100 } } });
      await produce([{ topic: c.topic, key: '2', value: Buffer.from(JSON.stringify({ customer_id: 2, name: 'Two', email: 'two@example.com', updated_at: '2026-06-01T00:00:00.000Z', loyalty: 7 })) }]);
      const second = await runTopology(connector(c.file, '--stop-when-idle', '2'), env);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stderr, /added column loyalty/);
      assert.deepEqual(await db().one('SELECT loyalty FROM $1:name WHERE customer_id = 2', [c.table]), { loyalty: 7 });
      // While it runs: records written with a newer version (the wire format names it) evolve the table before the
      // first of them is written, and none is a dead letter, although the version it runs with refuses them.
      const running = startTopology(connector(c.file, '--stop-when-idle', '4'), env);
      await waitUntil('the connector assigned', async () => /assigned/.test(running.stderr()));
      const v3 = { ...CUSTOMER_SCHEMA, properties: { ...CUSTOMER_SCHEMA.properties, loyalty: { type: 'integer', minimum: 0, maximum: 100 }, segment: { type: 'string' } } };
      const v3Id = await registry.register(subject, v3);
      const wire = (value: object) => encodeWireFormat(v3Id, Buffer.from(JSON.stringify(value)));
      await produce([3, 4, 5].map((id) => ({ topic: c.topic, key: String(id), value: wire({ customer_id: id, name: `N${id}`, email: `n${id}@example.com`, updated_at: '2026-07-01T00:00:00.000Z', segment: `s${id}` }) })));
      assert.equal(await running.exited, 0, running.stderr());
      assert.match(running.stderr(), new RegExp(`subject ${subject} has a newer version \\(schema id ${v3Id}\\) than the pipeline runs with: building the pipeline again`));
      assert.match(running.stderr(), /added column segment \(auto-evolve\)/);
      assert.deepEqual(await db().any('SELECT customer_id, segment FROM $1:name WHERE segment IS NOT NULL ORDER BY 1', [c.table]),
        [{ customer_id: 3, segment: 's3' }, { customer_id: 4, segment: 's4' }, { customer_id: 5, segment: 's5' }]);
      assert.deepEqual(await readTopic(`${c.topic}.dlq`).catch(() => []), [], 'no dead letters');
    } finally {
      await registry.close();
    }
  });

  it('runs several pipelines of several config files (JSON and YAML) in one process', async () => {
    const a = customerConfig('multi-customers');
    const yamlFile = path.join(tmp, `${unique('views')}.yaml`);
    const b = config('multi-views', { schema: path.join(EXAMPLES, 'page-view.schema.json'), key: ['view_id'], autoCreate: true }, path.join(tmp, 'unused.json'));
    fs.writeFileSync(yamlFile, [
      'pipelines:', `  - name: multi-views`, `    topic: ${b.topic}`, `    table: ${b.table}`, `    schema: ${path.join(EXAMPLES, 'page-view.schema.json')}`,
      '    key: [view_id]', '    autoCreate: true', '',
    ].join('\n'));
    const { live } = await produceCustomers(a.topic, 2000, 13);
    await createTopic(b.topic, 2);
    await produce([...pageViews(700, 4)].map((v) => ({ topic: b.topic, key: v.key, value: Buffer.from(JSON.stringify(v.value)) })));
    const r = await runTopology(['kafka-to-postgres', '--config', a.file, '--config', yamlFile, '--stop-when-idle', '3']);
    assert.equal(r.code, 0, r.stderr);
    assertFold(await tableOf(a.table), live);
    assert.equal((await db().one('SELECT count(*)::int AS n FROM $1:name', [b.table])).n, 700);
  });
});

/** The dead letters of a topic once `enough` says there are enough (their relay publishes them shortly after commit). */
async function waitForDeadLetters(topic: string, enough: (n: number) => boolean) {
  let out: Awaited<ReturnType<typeof readTopic>> = [];
  await waitUntil(`dead letters in ${topic}`, async () => enough((out = await readTopic(topic)).length));
  return out;
}

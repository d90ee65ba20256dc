import assert from 'node:assert/strict';
import fs from 'node:fs';
import { db, dropAll, freePort, runTopology, startTopology, unique, waitUntil } from '../helpers/infra.ts';

const SECRET = 'SuperSecret123';
const DB_SECRET = 'DbSecret456';

/** Listening TCP sockets on a port, from /proc/net/tcp and tcp6: the local addresses, e.g. 127.0.0.1. */
function listeners(port: number): string[] {
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== '0A') continue; // 0A = LISTEN
      const [addr, p] = f[1].split(':');
      if (parseInt(p, 16) !== port) continue;
      if (addr.length === 8) out.push(Buffer.from(addr, 'hex').reverse().join('.'));
      else out.push(addr === '0'.repeat(32) ? '::' : addr);
    }
  }
  return out;
}

describe('security: secrets never shown, names that could inject refused, metrics on loopback', function () {
  this.timeout(180_000);
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  after(async () => dropAll([topic, `${topic}.dlq`], [table], [group]));

  it('a SASL password from --kafka and KAFKA_CONFIG never appears in logs, errors or --describe, and a listener without SASL stops the ingest with one line', async () => {
    const sasl = ['--kafka', 'security.protocol=SASL_PLAINTEXT', '--kafka', 'sasl.mechanisms=PLAIN', '--kafka', 'sasl.username=u', '--kafka', `sasl.password=${SECRET}`];
    const describe = await runTopology(['orders-ingest', '--describe', ...sasl]);
    assert.equal(describe.code, 0, describe.stderr);
    assert.ok(!(describe.stdout + describe.stderr).includes(SECRET));

    // SASL against the PLAINTEXT listener: the broker offers no SASL, and the process stops at once with one line
    // that says so (exit 2), the secrets of --kafka and KAFKA_CONFIG in none of it. A real SASL run, with /metrics
    // looked at while it reads, is in secured.test.ts.
    const run = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, ...sasl], { KAFKA_CONFIG: `ssl.key.password=${SECRET}` });
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /^Kafka does not take SASL PLAIN on this listener \(it offers no SASL at all\): check security.protocol and sasl.mechanisms$/m);
    assert.ok(!(run.stdout + run.stderr).includes(SECRET), `secret in the output:\n${run.stderr}`);

    // A malformed pair that holds a secret is refused without echoing it.
    const bad = await runTopology(['orders-ingest', '--describe', '--kafka', `sasl.password${SECRET}`]);
    assert.equal(bad.code, 2);
    assert.ok(!(bad.stdout + bad.stderr).includes(SECRET), bad.stderr);
    const badEnv = await runTopology(['orders-ingest', '--describe'], { KAFKA_CONFIG: `sasl.password:${SECRET}` });
    assert.equal(badEnv.code, 2);
    assert.ok(!(badEnv.stdout + badEnv.stderr).includes(SECRET), badEnv.stderr);
  });

  it('the password in DATABASE_URL never appears in logs or error messages', async () => {
    const url = new URL(process.env.DATABASE_URL!);
    url.password = DB_SECRET; // wrong: Postgres refuses it, and says so without the password
    const r = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--stop-when-idle', '1'],
      { DATABASE_URL: url.toString(), PIPELINE_DEBUG: '1' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /password authentication failed/);
    assert.ok(!(r.stdout + r.stderr).includes(DB_SECRET), r.stderr);
    assert.match(r.stderr, /postgres:\*\*\*@/, 'the URL is shown masked');
  });

  it('refuses names that could inject SQL or reach other topics with exit code 2; a hostile group id is only data', async () => {
    const injections: string[][] = [
      ['--table', 'orders; DROP TABLE pipeline_offsets; --'],
      ['--table', 'x"; DROP TABLE pipeline_offsets; --'],
      ['--table', "o'rders"],
      ['--table', 'a.b.c'],
      ['--topic', "orders'; DROP TABLE pipeline_offsets; --"],
      ['--topic', '../orders'],
      ['--dlq-topic', 'dlq;DROP'],
      ['--dlq-topic', '..'],
    ];
    for (const args of injections) {
      const r = await runTopology(['orders-ingest', ...args, '--stop-when-idle', '1']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /is not a valid (table|topic) name/);
    }
    const hostileGroup = `${group}'; DROP TABLE pipeline_offsets; --`;
    const gen = await runTopology(['orders-generator', '--topic', topic, '--partitions', '2', '--count', '100', '--rate', '0']);
    assert.equal(gen.code, 0, gen.stderr);
    const r = await runTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', hostileGroup, '--partitions', '2', '--stop-when-idle', '2']);
    assert.equal(r.code, 0, r.stderr);
    const stored = await db().one<{ n: number }>('SELECT sum(next_offset)::int AS n FROM pipeline_offsets WHERE group_id = $1', [hostileGroup]);
    assert.equal(stored.n, 100, 'the group id is stored as given, as data');
    assert.equal((await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [table])).n, 100);
    await db().none('DELETE FROM pipeline_offsets WHERE group_id = $1', [hostileGroup]);
  });

  it('binds the metrics server to 127.0.0.1 unless told otherwise', async () => {
    const port = await freePort();
    const run = startTopology(['orders-generator', '--topic', topic, '--count', '1000000', '--rate', '10'], { METRICS_PORT: String(port) });
    try {
      await waitUntil('the metrics server', async () => fetch(`http://127.0.0.1:${port}/healthz`).then((x) => x.ok, () => false));
      assert.deepEqual(listeners(port), ['127.0.0.1']);
    } finally {
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0, run.stderr());
    }
  });
});

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { db, dropAll, freePort, readTopic, runTopology, startTopology, unique, waitUntil, type Run } from '../helpers/infra.ts';

/**
 * A TCP proxy on a fixed port that is closed (connections refused) until opened, then forwards to the target:
 * a database or broker that is down at start and comes up later.
 */
class GatedProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly port: number, private readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => { client.destroy(); upstream.destroy(); });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = undefined;
  }
}

async function http(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

const alive = (r: Run) => r.child.exitCode === null && r.child.signalCode === null;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('orders-ingest when Postgres or Kafka is down at start', function () {
  this.timeout(180_000);
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  const runs: Run[] = [];
  const proxies: GatedProxy[] = [];
  before(async () => {
    const gen = await runTopology(['orders-generator', '--topic', topic, '--partitions', '2', '--count', '500', '--rate', '0']);
    assert.equal(gen.code, 0, gen.stderr);
  });
  after(async () => {
    for (const r of runs) r.child.kill('SIGKILL');
    for (const p of proxies) await p.close();
    await dropAll([topic, `${topic}.dlq`], [table], [group]);
  });

  for (const down of ['postgres', 'kafka'] as const) {
    it(`${down} down: live but not ready, retries with a few clear lines, no crash loop; ready and ingesting once it comes up`, async () => {
      const real = down === 'postgres' ? new URL(process.env.DATABASE_URL!) : new URL(`kafka://${process.env.KAFKA_BROKERS!.split(',')[0]}`);
      const proxy = new GatedProxy(await freePort(), { host: real.hostname, port: Number(real.port) });
      proxies.push(proxy);
      const env: NodeJS.ProcessEnv = { METRICS_PORT: String(await freePort()) };
      if (down === 'postgres') {
        const url = new URL(process.env.DATABASE_URL!);
        url.port = String(proxy.port);
        env.DATABASE_URL = url.toString();
      } else {
        env.KAFKA_BROKERS = `127.0.0.1:${proxy.port}`;
      }
      const groupId = `${group}_${down}`;
      const run = startTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', groupId, '--partitions', '2'], env);
      runs.push(run);
      const port = Number(env.METRICS_PORT);
      await waitUntil('the metrics server', async () => http(port, '/healthz').then(() => true, () => false));
      await waitUntil('a retry line', async () => /failed \(attempt 1, retrying with backoff\)/.test(run.stderr()), 60_000);
      await sleep(6000);
      assert.ok(alive(run), run.stderr());
      assert.equal((await http(port, '/healthz')).status, 200);
      assert.equal((await http(port, '/readyz')).status, 503, 'not ready while the dependency is down');
      const retryLines = run.stderr().split('\n').filter((l) => /attempt \d+/.test(l));
      // The first failure at once, then at most one line per 10 s (README): in these few seconds, one or two.
      const firstAt = Date.parse(retryLines[0]?.slice(0, 24) ?? '');
      const allowed = 1 + Math.floor((Date.now() - firstAt) / 10_000);
      assert.ok(retryLines.length >= 1 && retryLines.length <= allowed, `${retryLines.length} retry lines, ${allowed} allowed:\n${run.stderr()}`);
      assert.ok(run.stderr().split('\n').length < 30, `a few clear lines:\n${run.stderr()}`);

      await proxy.open();
      await waitUntil('ready', async () => (await http(port, '/readyz')).status === 200, 90_000);
      const count = async () => (await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [table]).catch(() => ({ n: -1 }))).n;
      const before = down === 'postgres' ? 0 : 500; // the second case reads the same topic into the same table, with its own group
      await waitUntil('the backlog ingested', async () => {
        const rows = await db().one<{ n: number }>('SELECT coalesce(sum(greatest(next_offset, 0)), 0)::int AS n FROM pipeline_offsets WHERE group_id = $1', [groupId]).catch(() => ({ n: 0 }));
        return rows.n === 500;
      }, 90_000);
      if (down === 'postgres') assert.equal(await count(), 500);
      else assert.equal(await count(), before, 'the same orders again are duplicates, not new rows');
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0, run.stderr());
    });
  }
});

function vm(pid: number): { rss: number; hwm: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

describe('backpressure: the sink stalled by a table lock', function () {
  this.timeout(240_000);
  const topic = unique('orders');
  const table = unique('orders_data');
  const group = unique('ingest');
  let run: Run | undefined;
  after(async () => {
    run?.child.kill('SIGKILL');
    await dropAll([topic, `${topic}.dlq`], [table], [group]);
  });

  it('stops taking records while the lock is held, memory stays bounded as the backlog grows, and resumes by itself', async () => {
    const gen = (count: number) => runTopology(['orders-generator', '--topic', topic, '--partitions', '3', '--count', String(count), '--rate', '0']);
    assert.equal((await gen(2000)).code, 0);
    const port = await freePort();
    run = startTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '3', '--batch-size', '5000'],
      { METRICS_PORT: String(port) });
    // Records taken from the consumer so far (pipeline_records_consumed_total counts them as they join a batch).
    const taken = async () => {
      const text = (await http(port, '/metrics?name[]=pipeline_records_consumed_total')).body;
      return [...text.matchAll(/^pipeline_records_consumed_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    };
    const committed = async () => Number((await db().one<{ n: string }>(
      'SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint AS n FROM pipeline_offsets WHERE group_id = $1', [group])).n);
    await waitUntil('the first 2000', async () => (await committed().catch(() => 0)) === 2000, 90_000);

    // A transaction holds an ACCESS EXCLUSIVE lock on the table: every COPY waits on it.
    const locker = await db().connect();
    const samples: number[] = [];
    const takenSamples: number[] = [];
    let stalledAt = 0;
    let takenBefore = 0;
    let takenDuring = 0;
    try {
      await locker.none('BEGIN');
      await locker.none('LOCK TABLE $1:name IN ACCESS EXCLUSIVE MODE', [table]);
      takenBefore = await taken();
      const backlog = gen(300_000); // the backlog grows while the sink is stalled
      const pid = run.child.pid!;
      for (let i = 0; i < 48; i++) { // about 12 s of samples
        samples.push(vm(pid).rss);
        takenSamples.push(await taken());
        await sleep(250);
      }
      assert.equal((await backlog).code, 0);
      stalledAt = await committed();
      assert.equal(stalledAt, 2000, 'nothing committed while the table is locked');
      // Taken during the stall: at most, per lane (2), a flush in flight and a pending batch of twice the batch size
      // each, and one poll (5,000) over: 2 x (2 x 10,000 + 5,000) = 50,000 of the 300,000 waiting.
      const during = (takenDuring = takenSamples[takenSamples.length - 1] - takenBefore);
      assert.ok(during <= 50_000, `${during} records taken while the sink was stalled (the bound is 50,000 of a 300,000 backlog)`);
      assert.equal(takenSamples[takenSamples.length - 1], takenSamples[takenSamples.length - 13], 'nothing taken in the last 3 s of the stall: polling stopped');
      assert.ok(run.child.exitCode === null, run.stderr());
    } finally {
      await locker.none('COMMIT').catch(() => undefined);
      locker.done();
    }
    await waitUntil('the backlog after the lock', async () => (await committed()) === 302_000, 180_000);
    const rows = await db().one<{ n: number; d: number }>('SELECT count(*)::int AS n, count(DISTINCT order_id)::int AS d FROM $1:name', [table]);
    assert.deepEqual(rows, { n: 302_000, d: 302_000 });
    // order_id is the key: a record read twice would be a `duplicate` dead letter, not a second row.
    assert.equal((await readTopic(`${topic}.dlq`)).length, 0, 'no record was taken twice');
    const { hwm } = vm(run.child.pid!);
    const peak = Math.max(...samples);
    const third = Math.floor(samples.length / 3);
    const early = Math.max(...samples.slice(0, third));
    const late = Math.max(...samples.slice(-third));
    process.stderr.write(`      backpressure: peak RSS during the stall ${(peak / 2 ** 20).toFixed(0)} MB (early ${(early / 2 ** 20).toFixed(0)}, late ${(late / 2 ** 20).toFixed(0)}), VmHWM after catching up ${(hwm / 2 ** 20).toFixed(0)} MB; ${takenDuring} records taken during the stall\n`);
    assert.ok(peak < 400 * 2 ** 20, `peak RSS ${peak} during the stall`);
    assert.ok(late - early < 100 * 2 ** 20, `RSS kept rising with the backlog: ${early} -> ${late}`);
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.stderr());
  });
});

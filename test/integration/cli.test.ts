import assert from 'node:assert/strict';
import { runTopology, startTopology, unique, waitUntil, dropAll } from '../helpers/infra.ts';

describe('the topology CLI', () => {
  it('lists the topologies', async () => {
    const r = await runTopology(['--list']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /orders-generator/);
    assert.match(r.stdout, /orders-ingest/);
  });

  it('prints help with every flag', async () => {
    const r = await runTopology(['--help']);
    assert.equal(r.code, 0);
    for (const flag of ['--rate', '--count', '--invalid-ratio', '--seed', '--stop-when-idle', '--batch-size', '--group-id', '--table', '--kafka']) {
      assert.ok(r.stdout.includes(flag), flag);
    }
  });

  for (const [args, message] of [
    [['orders-ingest', '--bogus'], /^unknown flag --bogus/],
    [['orders-ingest', '--batch-size', 'lots'], /^--batch-size: expected an integer, got "lots"$/],
    [['orders-generator', '--invalid-ratio', '1.5'], /^--invalid-ratio: must be at most 1, got 1.5$/],
    [['orders-generator', '--table', 'x'], /^unknown flag --table/],
    [['no-such-topology'], /^unknown topology "no-such-topology"/],
    [['orders-generator', '--topic', 'bad topic!'], /^--topic: "bad topic!" is not a valid topic name/],
    [['orders-ingest', '--table', 'x;drop table y'], /^--table: "x;drop table y" is not a valid table name/],
  ] as [string[], RegExp][]) {
    it(`exits 2 with one clear line for: ${args.join(' ')}`, async () => {
      const r = await runTopology(args);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split('\n').filter((l) => !/ kafka | local: /.test(l));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], message);
    });
  }

  it('describes a topology without connecting to anything', async () => {
    const r = await runTopology(['orders-ingest', '--describe', '--topic', 't1', '--table', 'tbl'], { KAFKA_BROKERS: '127.0.0.1:1', DATABASE_URL: 'postgres://x:secret@127.0.0.1:1/db' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /source\s+topic t1/);
    assert.match(r.stdout, /validate \(schemas\/order\.schema\.json\)/);
    assert.match(r.stdout, /sink\s+Postgres table tbl/);
    assert.match(r.stdout, /dead letters -> topic t1\.dlq/);
    assert.doesNotMatch(r.stdout + r.stderr, /secret/, 'no secret in --describe output');
  });

  it('describes a topology as a Mermaid flowchart', async () => {
    const r = await runTopology(['orders-ingest', '--describe=mermaid']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^flowchart LR\n/);
    assert.match(r.stdout, /n0\[\/"topic orders"\/\]/);
    assert.match(r.stdout, /n0 --> n1/);
  });

  it('serves /metrics (all, or some by name), /healthz and /readyz while running', async () => {
    const topic = unique('metrics');
    const table = unique('metrics_data');
    const port = 20000 + Math.floor(Math.random() * 20000);
    const run = startTopology(['orders-generator', 'orders-ingest', '--topic', topic, '--table', table, '--group-id', topic, '--count', '500', '--rate', '0', '--partitions', '2'],
      { METRICS_PORT: String(port) });
    try {
      const get = async (path: string) => {
        const res = await fetch(`http://127.0.0.1:${port}${path}`);
        return { status: res.status, body: await res.text() };
      };
      await waitUntil('metrics server', async () => (await get('/healthz').catch(() => ({ status: 0 }))).status === 200);
      await waitUntil('ready', async () => (await get('/readyz')).status === 200);
      await waitUntil('rows written', async () => /pipeline_sink_rows_written_total\{[^}]*\} 500/.test((await get('/metrics')).body), 60_000);
      const body = (await get('/metrics')).body;
      for (const name of ['pipeline_records_consumed_total', 'pipeline_records_produced_total', 'pipeline_sink_flush_duration_seconds_bucket',
        'pipeline_records_invalid_total', 'pipeline_consumer_lag', 'process_cpu_seconds_total']) {
        assert.ok(body.includes(name), `${name} missing`);
      }
      assert.match(body, /pipeline_records_produced_total\{topology="orders-generator",topic="[^"]+"\} 500/);
      assert.match(body, /pipeline_records_consumed_total\{topology="orders-ingest",topic="[^"]+"\} 500/);
      for (const name of ['pipeline_poll_records_count', 'pipeline_poll_records_sum']) assert.ok(body.includes(name), `${name} missing`);
      // What a cluster operator looks at: rebalances, partitions owned, commit latency, readiness, the build.
      assert.match(body, /pipeline_rebalances_total\{topology="orders-ingest",kind="assign"\} [1-9]/);
      assert.match(body, /pipeline_assigned_partitions\{topology="orders-ingest",topic="[^"]+"\} 2\n/);
      assert.match(body, /pipeline_commit_duration_seconds_count\{topology="orders-ingest"\} [1-9]/);
      const lastFlush = Number(/pipeline_last_flush_timestamp_seconds\{topology="orders-ingest"\} (\S+)/.exec(body)?.[1]);
      assert.ok(Math.abs(lastFlush - Date.now() / 1000) < 120, `last flush at ${lastFlush}`);
      assert.match(body, /pipeline_ready\{topology="orders-ingest"\} 1\n/);
      assert.match(body, /pipeline_build_info\{version="\d+\.\d+\.\d+",node="[^"]+",librdkafka="\d[^"]*",features="[^"]*zstd[^"]*",code="sources"\} 1\n/);
      // Some metrics only, by name: nothing else is collected or sent.
      const some = (await get('/metrics?name[]=pipeline_sink_rows_written_total&name[]=pipeline_records_invalid_total&name[]=no_such_metric')).body;
      assert.match(some, /pipeline_sink_rows_written_total\{[^}]*\} 500/);
      assert.match(some, /# TYPE pipeline_records_invalid_total counter/);
      assert.ok(!some.includes('process_cpu_seconds_total') && !some.includes('pipeline_records_consumed_total'), some);
    } finally {
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0, run.stderr());
      await dropAll([topic, `${topic}.dlq`], [table], [topic]);
    }
  });
});

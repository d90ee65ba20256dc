import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { db, dropAll, freePort, generatorReport, startTopology, unique, waitUntil, type Run } from '../helpers/infra.ts';

const CHROMIUM = '/usr/bin/chromium';

/** An instant query of Prometheus' HTTP API: each series' labels and value. */
async function query(port: number, expr: string, at?: number): Promise<{ metric: Record<string, string>; value: number }[]> {
  const url = `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}${at ? `&time=${at / 1000}` : ''}`;
  const body = await (await fetch(url)).json() as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  assert.equal(body.status, 'success', JSON.stringify(body));
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/**
 * One ingest under a generator at a fixed rate, watched two ways at once: a real Prometheus scraping its /metrics,
 * and its status page in a real Chromium.
 */
describe('operations: a real Prometheus and a real browser watching orders-ingest', function () {
  this.timeout(240_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'operations-'));
  const topic = unique('orders');
  const table = unique('orders_data');
  const cleanup: (() => unknown)[] = [];
  let metricsPort = 0;
  let promPort = 0;
  let ingest: Run;
  let generator: Run;
  let generatorStartedAt = 0;
  /** What the process itself says every second: the truth Prometheus' numbers are checked against. */
  const samples: [number, number][] = [];

  before(async function () {
    this.timeout(120_000);
    assert.equal(spawnSync('sh', ['-c', 'command -v prometheus'], { stdio: 'ignore' }).status, 0, 'Prometheus is needed: apt-get install prometheus (.ci/run installs it)');
    metricsPort = await freePort();
    promPort = await freePort();
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
      'global:', '  scrape_interval: 1s', '  evaluation_interval: 1s',
      'scrape_configs:', '  - job_name: pipeline', '    static_configs:', `      - targets: ['127.0.0.1:${metricsPort}']`, '',
    ].join('\n'));
    const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let promLog = '';
    prom.stderr!.on('data', (d: Buffer) => { promLog += d.toString(); });
    cleanup.push(() => prom.kill('SIGKILL'));
    await waitUntil('Prometheus to be ready', async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`).catch(() => undefined))?.status === 200, 60_000)
      .catch((err: Error) => { throw new Error(`${err.message}\n${promLog}`); });

    ingest = startTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', topic, '--partitions', '3', '--batch-wait-ms', '200'], { METRICS_PORT: String(metricsPort) });
    cleanup.push(() => ingest.child.kill('SIGKILL'));
    await waitUntil('an assignment', async () => /assigned \S+ partitions \[\d/.test(ingest.stderr()), 60_000);
    const sampler = setInterval(() => void fetch(`http://127.0.0.1:${metricsPort}/metrics?name[]=pipeline_records_consumed_total`).then((r) => r.text()).then((t) => {
      const m = /pipeline_records_consumed_total\{[^}]*\} (\d+)/.exec(t);
      samples.push([Date.now(), m ? Number(m[1]) : 0]);
    }, () => undefined), 1000);
    cleanup.push(() => clearInterval(sampler));
    // 40 s of orders at 800/s, 2% invalid: the browser watches while they flow, Prometheus is checked at their end.
    generatorStartedAt = Date.now();
    generator = startTopology(['orders-generator', '--topic', topic, '--partitions', '3', '--count', '32000', '--rate', '800', '--invalid-ratio', '0.02']);
    cleanup.push(() => generator.child.kill('SIGKILL'));
  });

  after(async () => {
    for (const c of cleanup.reverse()) await c();
    await dropAll([topic, `${topic}.dlq`], [table], [topic]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the status page in Chromium: the graph, records/s and lag charts that update, the last flushes, dead letters and readiness, loading nothing from outside', async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is needed: apt-get install chromium (.ci/run installs it)`);
    const context: BrowserContext = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1000 },
    });
    cleanup.push(() => context.close());
    const page = await context.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${metricsPort}/`);

    // Mermaid drew the topology's graph as SVG, with the source topic and the table in it.
    await page.waitForSelector('#graph-0 svg', { timeout: 30_000 });
    const graph = (await page.textContent('#graph-0')) ?? '';
    assert.match(graph, new RegExp(`topic ${topic}`));
    assert.match(graph, new RegExp(table));
    assert.equal(await page.textContent('#ready'), 'ready');

    // The charts grow and the numbers move while orders flow.
    const points = () => page.$$eval('#chart-rates path.series', (ps) => ps.map((p) => (p.getAttribute('d') ?? '').split(/[ML]/).length - 1));
    await page.waitForFunction(() => Number(document.getElementById('rate-in')!.textContent!.replace(/,/g, '')) > 0, undefined, { timeout: 30_000 });
    const first = await points();
    const stats = await page.textContent('#stats-0');
    await page.waitForTimeout(4000);
    const later = await points();
    assert.equal(later.length, 2, 'a line in and a line out');
    assert.ok(later[0] > (first[0] ?? 0), `the records/s chart grew: ${first} then ${later}`);
    assert.notEqual(await page.textContent('#stats-0'), stats, 'the totals moved');
    await page.waitForFunction(() => document.querySelectorAll('#chart-lag path.series').length === 3, undefined, { timeout: 30_000 });
    assert.ok(await page.$$eval('tr.flush', (rows) => rows.length) > 0, 'the last flushes are listed');
    await page.waitForFunction(() => document.querySelectorAll('tr.dead-letter').length > 0, undefined, { timeout: 30_000 });
    assert.deepEqual(errors, [], 'no script error in the page');
    assert.deepEqual(requests.filter((u) => !u.startsWith(`http://127.0.0.1:${metricsPort}/`)), [], 'the page loads nothing from outside the process');
    // README's picture: STATUS_PAGE_SCREENSHOT=docs/status-page.png npx mocha test/integration/operations.test.ts
    await page.screenshot({ path: path.resolve(projectRoot, process.env.STATUS_PAGE_SCREENSHOT ?? path.join(dir, 'status-page.png')), fullPage: true });
  });

  it('Prometheus has what the pipeline did: rate(pipeline_records_consumed_total[1m]) as the process counted it, every record, the lag of each partition', async () => {
    assert.equal(await generator.exited, 0, generator.stderr());
    const report = generatorReport(generator.stderr());
    const end = Date.now();
    assert.ok(end - generatorStartedAt >= 35_000, 'the generator ran at its rate');
    await new Promise((r) => setTimeout(r, 2000)); // a scrape past `end`
    // The process's own increase over the minute before `end` (0 before its first sample: the counter did not exist).
    const at = (t: number) => samples.filter(([s]) => s <= t).at(-1)?.[1] ?? 0;
    const measured = (at(end) - at(end - 60_000)) / 60;
    assert.ok(measured > 300, `the process consumed ${measured.toFixed(0)}/s over the minute (the generator sent 800/s for 40 s of it)`);
    const [rate] = await query(promPort, 'rate(pipeline_records_consumed_total{topology="orders-ingest"}[1m])', end);
    assert.ok(rate, 'Prometheus has the series');
    assert.ok(Math.abs(rate.value - measured) / measured < 0.15, `Prometheus' rate ${rate.value.toFixed(1)}/s against ${measured.toFixed(1)}/s counted by the process`);

    await waitUntil('every record consumed, as Prometheus has it', async () =>
      (await query(promPort, 'sum(pipeline_records_consumed_total{topology="orders-ingest"})'))[0]?.value === report.produced, 60_000);
    const { n } = await db().one<{ n: number }>('SELECT count(*)::int AS n FROM $1:name', [table]);
    assert.equal(n, report.valid);
    // librdkafka's statistics (every 5 s) give the lag: a series per partition, each at 0 once the ingest caught up.
    await waitUntil('the lag of every partition at 0', async () => {
      const lag = await query(promPort, `pipeline_consumer_lag{topic="${topic}"}`);
      return lag.length === 3 && lag.every((l) => l.value === 0);
    }, 60_000);
    assert.deepEqual((await query(promPort, `pipeline_consumer_lag{topic="${topic}"}`)).map((l) => l.metric.partition).sort(), ['0', '1', '2']);
    ingest.child.kill('SIGTERM');
    assert.equal(await ingest.exited, 0, ingest.stderr());
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../pipeline/local/paths.ts';

/** The short version of `npm run soak`: the same script, for half a minute, writing its results to a directory of its own. */
describe('soak, short: generator and ingest at a steady rate, sampled, then checked for exactly-once', function () {
  this.timeout(240_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soak-test-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('samples RSS, heap, lag and flush p99, writes JSON and a chart, and ends with the slope and the exactly-once line', async () => {
    const c = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'scripts/soak.ts'),
      '--minutes', '0.5', '--rate', '2000', '--sample-s', '2', '--warmup-minutes', '0.1', '--partitions', '3', '--invalid-ratio', '0.01'], {
      cwd: projectRoot, env: { ...process.env, BENCH_RESULTS_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await new Promise<number | null>((resolve) => c.on('exit', (x) => resolve(x)));
    assert.equal(code, 0, `${out}\n${err}`);
    const last = out.trim().split('\n').pop() ?? '';
    const m = /^RSS slope (-?\d+\.\d\d) MB\/hour, largest lag (\d+); produced (\d+), written (\d+), dead-lettered (\d+), duplicated (\d+), missing (\d+)$/.exec(last);
    assert.ok(m, `no final line in:\n${out}\n${err}`);
    const [slope, maxLag, produced, written, dead, duplicated, missing] = m.slice(1).map(Number);
    assert.equal(duplicated, 0);
    assert.equal(missing, 0);
    assert.equal(written + dead, produced);
    assert.ok(produced >= 40_000, `2,000/s for 30 s is about 60,000 orders; produced ${produced}`);
    assert.ok(dead > 0, 'the run had invalid orders');
    assert.ok(Number.isFinite(slope));

    const result = JSON.parse(fs.readFileSync(path.join(dir, 'soak-latest.json'), 'utf8'));
    assert.equal(result.produced, produced);
    assert.equal(result.written, written);
    assert.equal(result.max_lag, maxLag);
    assert.ok(result.samples.length >= 10, `a sample every 2 s for 30 s; got ${result.samples.length}`);
    for (const s of result.samples) {
      assert.ok(s.rss_mb > 20 && s.heap_mb > 1, JSON.stringify(s));
      assert.ok(s.lag >= 0 && s.lag <= produced, JSON.stringify(s));
    }
    assert.ok(result.samples.some((s: { rows_per_s: number }) => s.rows_per_s > 0), 'some sample saw rows written');
    assert.ok(result.samples.some((s: { flush_p99_ms: number | null }) => typeof s.flush_p99_ms === 'number' && s.flush_p99_ms > 0), 'some sample saw a flush');
    const svg = fs.readFileSync(path.join(dir, 'soak-latest.svg'), 'utf8');
    for (const title of ['RSS (MB)', 'heap used (MB)', 'consumer lag (records)', 'flush p99 (ms)']) assert.ok(svg.includes(title), title);
    assert.ok(svg.includes('duplicated 0, missing 0'));
  });
});

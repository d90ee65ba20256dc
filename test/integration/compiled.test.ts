import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { compiledIsCurrent } from '../../scripts/compiled.mjs';
import { assertExactlyOnce, reported } from '../helpers/accounting.ts';
import { dropAll, freePort, unique } from '../helpers/infra.ts';

/** `npm run -s topology -- <args>` itself, as a user types it; its /metrics' build info read once it answers. */
async function npmRunTopology(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string; buildInfo: string }> {
  const port = await freePort();
  const child = spawn('npm', ['run', '-s', 'topology', '--', ...args, '--metrics-port', String(port)], {
    cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let buildInfo = '';
  let done = false;
  void exited.then(() => { done = true; });
  while (!done && !buildInfo) {
    const body = await fetch(`http://127.0.0.1:${port}/metrics?name[]=pipeline_build_info`).then((r) => r.text()).catch(() => '');
    buildInfo = /pipeline_build_info\{[^}]*\} 1/.exec(body)?.[0] ?? '';
    if (!buildInfo) await new Promise((r) => setTimeout(r, 50));
  }
  return { code: await exited, stderr, buildInfo };
}

describe('npm run topology: the compiled build', function () {
  this.timeout(180_000);
  const topics: string[] = [];
  const tables: string[] = [];
  const groups: string[] = [];

  before(() => {
    // npm ci builds dist/ (prepare); a working tree whose sources changed since is built again here, as npm run build.
    if (!compiledIsCurrent(projectRoot)) {
      const r = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: projectRoot, encoding: 'utf8' });
      assert.equal(r.status, 0, `npm run build failed:\n${r.stdout}${r.stderr}`);
    }
    assert.ok(compiledIsCurrent(projectRoot), 'dist/ is not current after npm run build');
  });
  after(async () => {
    await dropAll(topics, tables, groups);
  });

  it('runs the generator and orders-ingest from dist/, stage worker included, and writes every order exactly once', async () => {
    const topic = unique('orders_compiled');
    const table = unique('orders_compiled');
    const group = unique('ingest_compiled');
    topics.push(topic, `${topic}.dlq`);
    tables.push(table);
    groups.push(group);
    const g = reported(['--topic', topic, '--partitions', '3', '--count', '20000', '--rate', '20000', '--seed', '3', '--invalid-ratio', '0.02']);
    const gen = await npmRunTopology(g.args);
    assert.equal(gen.code, 0, gen.stderr);
    const sent = g.read();
    assert.equal(sent.produced, 20_000);
    assert.ok(sent.invalid.length > 0, 'the generator sent no invalid orders');

    const ingest = await npmRunTopology(['orders-ingest', '--topic', topic, '--table', table, '--group-id', group, '--partitions', '3', '--stop-when-idle', '2']);
    assert.equal(ingest.code, 0, ingest.stderr);
    assert.match(ingest.buildInfo, /code="compiled"/, `orders-ingest did not run from dist/: ${ingest.buildInfo}`);
    assert.match(gen.buildInfo, /code="compiled"/, `the generator did not run from dist/: ${gen.buildInfo}`);
    await assertExactlyOnce({ table, dlqTopic: `${topic}.dlq`, valid: sent.valid, invalid: sent.invalid });
  });

  it('runs the sources instead when one is newer than the build, and says so in its build info', async () => {
    const file = path.join(projectRoot, 'pipeline/index.ts');
    const { atime, mtime } = fs.statSync(file);
    const later = new Date(Date.now() + 5_000);
    fs.utimesSync(file, later, later);
    try {
      assert.equal(compiledIsCurrent(projectRoot), false);
      const topic = unique('orders_stale');
      topics.push(topic);
      // Two seconds of sending, so that its /metrics is read while it runs.
      const r = await npmRunTopology(['orders-generator', '--topic', topic, '--partitions', '1', '--count', '200', '--rate', '100']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.buildInfo, /code="sources"/, r.buildInfo);
    } finally {
      fs.utimesSync(file, atime, mtime);
    }
    assert.ok(compiledIsCurrent(projectRoot), 'dist/ is not current again once the source has its time back');
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { dropAll, freePort, readTopic, unique, waitUntil } from '../helpers/infra.ts';

const EXAMPLES = path.join(projectRoot, 'examples');

/** A command run in examples/, as a user of the package runs their own topology from their own folder. */
function inExamples(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(command, args, { cwd: EXAMPLES, env: { ...process.env, METRICS_PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => out, stderr: () => err };
}

describe('a topology of the user\'s own (examples/producer.ts), run by its path from its own folder', () => {
  const topics: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'examples-'));
  after(() => dropAll(topics, [], []));

  it('runs with `npm run topology -- ./producer.ts` and its flags, importing the engine as the package', async () => {
    const topic = unique('customers');
    topics.push(topic);
    const report = path.join(tmp, 'fold.json');
    const run = inExamples('npm', ['run', '-s', 'topology', '--', './producer.ts', '--example', 'customers', '--count', '2000', '--topic', topic, '--report', report]);
    assert.equal(await run.exited, 0, run.stderr());
    assert.match(run.stderr(), new RegExp(`produced 2000 records to ${topic}`));
    const messages = await readTopic(topic);
    assert.equal(messages.length, 2000);
    const tombstones = messages.filter((m) => m.value === null).length;
    const live = Object.keys((JSON.parse(fs.readFileSync(report, 'utf8')) as { live: object }).live).length;
    assert.ok(tombstones > 0 && live < 2000 - tombstones, `deletes (${tombstones}) and updates: ${live} customers live`);
    const described = inExamples('npm', ['run', '-s', 'topology', '--', './producer.ts', '--example', 'page-views', '--describe']);
    assert.equal(await described.exited, 0, described.stderr());
    assert.match(described.stdout(), /^Topology example-producer\n {2}source {2}100000 page-views\n {2}sink {4}topic page_views/);
    const bad = inExamples('npm', ['run', '-s', 'topology', '--', './producer.ts', '--example', 'invoices']);
    assert.equal(await bad.exited, 2);
    assert.match(bad.stderr(), /--example: expected one of customers, page-views, got "invoices"/);
  });

  it('serves metrics and progress while it runs, and on SIGTERM stops cleanly with everything it counted in the topic', async () => {
    const topic = unique('views');
    topics.push(topic);
    const port = await freePort();
    const run = inExamples(process.execPath, ['--import', 'tsx', '../pipeline/cli/main.ts', './producer.ts', '--example', 'page-views', '--count', '100000000', '--topic', topic],
      { METRICS_PORT: String(port) });
    await waitUntil('a progress line', async () => {
      if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode}: ${run.stderr()}`);
      return /\[example-producer\] [\d,]+ rec\/s · total [1-9]/.test(run.stderr());
    }, 60_000);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /process_resident_memory_bytes/);
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.stderr());
    const produced = Number(/produced (\d+) records/.exec(run.stderr())?.[1]);
    assert.ok(produced > 0, run.stderr());
    assert.equal((await readTopic(topic)).length, produced, 'what it said it produced is in the topic');
  });
});

import { deleteTopics, projectRoot, tableName } from '../pipeline/index.ts';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compiledIsCurrent } from '../scripts/compiled.mjs';
import { num, parseFlags } from './lib/args.ts';
import { runTopology } from './lib/child.ts';
import { benchEnv, fresh, log, machine } from './lib/env.ts';
import { prefillOrders } from './lib/orders.ts';
import { fmtInt, printTable, writeBarChart, writeJson, type Row } from './lib/report.ts';
import { INGEST_BATCH_SIZE } from '../topologies/orders-ingest.ts';

const FLAGS = { runs: 'number', count: 'number', partitions: 'number', echo: 'bool', quick: 'bool', ingest: 'string' } as const;

export const startupHelp = `startup [--runs 5 (--quick: 3)] [--count 20000] [--partitions 6] [--ingest "more orders-ingest flags"]
       (npm run topology -- orders-ingest over pre-filled orders, each start with a fresh table and group, as it runs
        by default (dist/ when built and current) and from the sources (PIPELINE_FROM_SOURCES=1), alternating: from
        the command to its first log line, its partition assignment and its first committed row; the sources' first
        start with an empty TypeScript compile cache)`;

interface StartupRun {
  /** Both with `npm run topology`: as it starts by default (compiled when built and current), or from the sources (PIPELINE_FROM_SOURCES=1). */
  way: 'npm run topology' | 'sources';
  cold_cache: boolean;
  /** Seconds from spawn: the first line on stderr (every module loaded), the partition assignment, the first row visible. */
  first_log_s: number;
  assigned_s: number;
  first_row_s: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** Seconds for node to start and exit, bare and with the TypeScript loader, as the floor under the first log line. */
function nodeFloor(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [...args, '-e', ''], { env, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} -e '' exited with ${r.status}`);
  return (performance.now() - t0) / 1000;
}

export async function startupBench(argv: string[]): Promise<void> {
  const f = parseFlags(argv, FLAGS);
  const runs = num(f, 'runs', f.quick ? 3 : 5);
  const count = num(f, 'count', 20_000);
  const partitions = num(f, 'partitions', 6);
  const extra = typeof f.ingest === 'string' ? f.ingest.split(/\s+/).filter(Boolean) : [];
  const env = await benchEnv();
  const topic = fresh('bench_startup');
  const tables: string[] = [];
  const coldTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-startup-'));
  log(`startup benchmark: ${runs} runs of orders-ingest over ${fmtInt(count)} pre-filled orders`);
  try {
    await prefillOrders(env.kafka, topic, { count, partitions, invalidRatio: 0, seed: 5, batch: INGEST_BATCH_SIZE, copy: 'none' });
    const out: StartupRun[] = [];
    const compiled = compiledIsCurrent(projectRoot);
    log(compiled ? 'dist/ is built and current: npm run topology runs the compiled JavaScript' : 'dist/ is missing or older than a source: npm run topology runs the sources too');
    // Each way's runs alternate, so that both see the same minutes; the first of the sources' starts has an empty compile cache.
    for (let i = 0; i < 2 * runs + 1; i++) {
      const cold = i === 0;
      const way: StartupRun['way'] = i % 2 === 0 ? 'sources' : 'npm run topology';
      const name = fresh('bench_startup');
      const table = tableName(name);
      tables.push(table);
      // tsx keeps what it compiled under the temporary directory: an empty one is a first start after install.
      const childEnv = { ...env.childEnv, ...(cold ? { TMPDIR: coldTmp } : {}), ...(way === 'sources' ? { PIPELINE_FROM_SOURCES: '1' } : {}) };
      const spawnedAt = performance.now();
      const run = await runTopology({
        env: childEnv, echo: f.echo === true, asNpmRunTopology: true,
        args: ['orders-ingest', '--stop-when-idle', '1', '--topic', topic, '--table', name, '--group-id', fresh('bench_startup'), '--partitions', String(partitions), ...extra],
        marks: { first: /./, assigned: /assigned .* partitions/ }, sampleMs: 500,
      });
      let exited = false;
      void run.exited.then(() => { exited = true; });
      let firstRowAt = NaN;
      while (!exited && Number.isNaN(firstRowAt)) {
        // Until the topology has made its table, the query fails: nothing seen yet.
        const r = await env.db.one(`SELECT EXISTS (SELECT 1 FROM ${table}) AS seen`).catch(() => ({ seen: false }));
        if (r.seen) firstRowAt = performance.now();
        else await new Promise((res) => setTimeout(res, 10));
      }
      const code = await run.exited;
      const rows = Number((await env.db.one(`SELECT count(*) AS n FROM ${table}`)).n);
      if (code !== 0 || rows !== count || Number.isNaN(firstRowAt)) {
        throw new Error(`orders-ingest exited with ${code} after writing ${rows} of ${count} rows:\n${run.stderr.slice(-20).join('\n')}`);
      }
      const s = (at: number | undefined) => (at === undefined ? NaN : (at - spawnedAt) / 1000);
      const r: StartupRun = { way, cold_cache: cold, first_log_s: s(run.marks.get('first')), assigned_s: s(run.marks.get('assigned')), first_row_s: s(firstRowAt) };
      out.push(r);
      log(`run ${i + 1}, ${way}${cold ? ' (empty compile cache)' : ''}: first log ${r.first_log_s.toFixed(2)} s, assigned ${r.assigned_s.toFixed(2)} s, first row ${r.first_row_s.toFixed(2)} s`);
      await env.db.none(`DROP TABLE IF EXISTS ${table}`);
    }
    const npm = out.filter((r) => r.way === 'npm run topology');
    const src = out.filter((r) => r.way === 'sources' && !r.cold_cache);
    const med = (rs: StartupRun[], k: 'first_log_s' | 'assigned_s' | 'first_row_s') => median(rs.map((r) => r[k]));
    const floor = { node_s: nodeFloor([], env.childEnv), node_tsx_s: nodeFloor(['--import', 'tsx'], env.childEnv) };
    const result = {
      benchmark: 'startup', at: new Date().toISOString(), machine: machine(),
      parameters: { runs, count, partitions, ingest_extra_flags: extra, compiled_current: compiled },
      runs: out,
      first_log_s: med(npm, 'first_log_s'), assigned_s: med(npm, 'assigned_s'), first_row_s: med(npm, 'first_row_s'),
      sources_first_log_s: med(src, 'first_log_s'), sources_assigned_s: med(src, 'assigned_s'), sources_first_row_s: med(src, 'first_row_s'),
      sources_cold_first_row_s: out[0].first_row_s,
      sources_vs_compiled_first_row: med(src, 'first_row_s') / med(npm, 'first_row_s'),
      node_start_s: floor.node_s,
      node_tsx_start_s: floor.node_tsx_s,
      target_first_row_s: 1.5,
    };
    const file = writeJson('startup', result);
    const how = compiled ? 'compiled (dist/)' : 'sources: dist/ not current';
    const line = (label: string, k: 'first_log_s' | 'assigned_s' | 'first_row_s', note = ''): Row =>
      [label, `${med(npm, k).toFixed(2)} s`, `from the sources with tsx ${med(src, k).toFixed(2)} s${note}`];
    printTable(`startup: orders-ingest, process start to ... (median of ${npm.length} starts each way; npm run topology: ${how})`, [
      line('first log line (every module loaded)', 'first_log_s', `; node alone starts and exits in ${floor.node_s.toFixed(2)} s, with tsx ${floor.node_tsx_s.toFixed(2)} s`),
      line('partition assignment', 'assigned_s'),
      line('first committed row', 'first_row_s', `; with an empty compile cache ${result.sources_cold_first_row_s.toFixed(2)} s; target < 1.5 s`),
      ['sources / npm run topology, first row', result.sources_vs_compiled_first_row.toFixed(2)],
    ]);
    const svg = writeBarChart('startup', 'startup: orders-ingest, seconds from process start to its first committed row (lower is better)', 's', [
      { label: `npm run topology (${how})`, value: result.first_row_s, subject: true },
      { label: 'the sources with tsx', value: result.sources_first_row_s },
      { label: 'the sources, empty compile cache', value: result.sources_cold_first_row_s },
    ], `median of ${npm.length} starts each way, alternating; first log line ${result.first_log_s.toFixed(2)} against ${result.sources_first_log_s.toFixed(2)} s`);
    log(`wrote ${file} and ${svg}`);
  } finally {
    for (const t of tables) await env.db.none(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
    await deleteTopics(env.kafka, [topic, `${topic}.dlq`]).catch(() => undefined);
    fs.rmSync(coldTmp, { recursive: true, force: true });
  }
}

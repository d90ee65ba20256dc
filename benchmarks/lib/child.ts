import {
  projectRoot,
} from '../../pipeline/index.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { topologyNodeFlags } from '../../scripts/node-flags.mjs';

export const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

export interface ProcSample {
  at: number;
  cpuSeconds: number;
  rssBytes: number;
  hwmBytes: number;
  /** CPU seconds (user + system) of each live thread by thread id, with its name (when asked for). */
  threads?: Map<number, { name: string; cpuSeconds: number }>;
}

function statCpuSeconds(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime (fields 14, 15)
}

function threadsOf(pid: number): NonNullable<ProcSample['threads']> {
  const out: NonNullable<ProcSample['threads']> = new Map();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      out.set(Number(tid), { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), cpuSeconds: statCpuSeconds(stat) });
    } catch { /* the thread ended */ }
  }
  return out;
}

/**
 * The CPU seconds a process's threads spent between two samples, by kind: the main thread; librdkafka's (named
 * rdk:*); the busiest other thread named node, which in a topology with a stage worker is that worker (Node names
 * all its threads node: the worker, V8's platform threads and libuv's pool); and the rest. A thread that ended
 * between the samples is not counted (its time is in the process's total, not here).
 */
export function threadCpu(pid: number, a: ProcSample, b: ProcSample): ThreadCpu {
  const spent = [...b.threads ?? []].map(([tid, t]) => ({ tid, name: t.name, s: t.cpuSeconds - (a.threads?.get(tid)?.cpuSeconds ?? 0) }));
  const out: ThreadCpu = { main: 0, worker: 0, librdkafka: 0, other: 0, others: [] };
  const busiest = spent.filter((t) => t.tid !== pid && t.name === 'node').sort((x, y) => y.s - x.s)[0];
  for (const t of spent) {
    if (t.tid === pid) out.main += t.s;
    else if (t.name.startsWith('rdk:')) out.librdkafka += t.s;
    else if (t === busiest) out.worker += t.s;
    else {
      out.other += t.s;
      if (t.s > 0) out.others.push(t.s);
    }
  }
  out.others.sort((x, y) => y - x);
  return out;
}

export interface ThreadCpu {
  main: number;
  worker: number;
  librdkafka: number;
  other: number;
  /** Each other thread's seconds, the busiest first. */
  others: number[];
}

/** CPU time (user + system) and resident memory of a live process, from /proc. */
export function procSample(pid: number, o: { threads?: boolean } = {}): ProcSample | undefined {
  try {
    const cpuSeconds = statCpuSeconds(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const threads = o.threads ? threadsOf(pid) : undefined;
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { at: performance.now(), cpuSeconds, rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM'), threads };
  } catch {
    return undefined; // exited
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Prometheus text: the sum of every sample of a metric (all label sets). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Cumulative bucket counts of a Prometheus histogram by upper bound, summed over its label sets. */
export function histogramBuckets(text: string, name: string): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (!le) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return buckets;
}

/**
 * Quantile of a Prometheus histogram by linear interpolation inside the bucket, as histogram_quantile() does; with
 * `since`, of what it gained since those bucket counts (an earlier scrape).
 */
export function histogramQuantile(text: string, name: string, q: number, since?: Map<number, number>): number {
  const sorted = [...histogramBuckets(text, name)].map(([b, n]) => [b, n - (since?.get(b) ?? 0)] as const).sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (!total) return NaN;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound;
      return prevBound + ((bound - prevBound) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevBound = bound;
    prevCount = count;
  }
  return prevBound;
}

export interface TopologyRun {
  child: ChildProcess;
  port: number;
  samples: ProcSample[];
  stderr: string[];
  /** performance.now() when the line matching `mark` first appeared on stderr. */
  marks: Map<string, number>;
  /** The last whole /metrics text (at most a second old when TopologyRunOptions.watch is given). */
  lastMetrics: string;
  /** The last /metrics text read: the watched metrics only, or the whole text. */
  lastWatched: string;
  exited: Promise<number>;
  stop(): void;
}

export interface TopologyRunOptions {
  env: NodeJS.ProcessEnv;
  args: string[];
  /** stderr patterns whose first appearance is timed (e.g. partition assignment). */
  marks?: Record<string, RegExp>;
  sampleMs?: number;
  /**
   * Metrics to read at every sample (`/metrics?name[]=`), the whole /metrics then only every second: a full scrape
   * every 100 ms (process metrics from /proc, heap statistics, every histogram) cost the measured process ~0.3 CPU s
   * per 1M records in the ingest benchmark, ~100 times what a Prometheus scraping every 15 s costs it.
   */
  watch?: string[];
  /** Called after each sample with the latest /metrics text (the watched metrics only, when watch is given). */
  onSample?: (run: TopologyRun, metrics: string) => void;
  extraNodeArgs?: string[];
  echo?: boolean;
  /**
   * Start it with `npm run -s topology --` itself (scripts/topology.mjs: dist/ when built and current; extraNodeArgs
   * are not used), not from the sources with tsx. The CPU and memory samples are then npm's, not the topology's.
   */
  asNpmRunTopology?: boolean;
}

/**
 * Runs a real topology as a child process, `node --import tsx pipeline/cli/main.ts <args>`, and samples its CPU
 * time and memory from /proc and its /metrics endpoint every sampleMs.
 */
export async function runTopology(o: TopologyRunOptions): Promise<TopologyRun> {
  const port = await freePort();
  const args = [...o.args, '--metrics-port', String(port)];
  const child = o.asNpmRunTopology
    ? spawn('npm', ['run', '-s', 'topology', '--', ...args], { cwd: projectRoot, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [...topologyNodeFlags(o.env), ...(o.extraNodeArgs ?? []), '--import', 'tsx', 'pipeline/cli/main.ts', ...args], { cwd: projectRoot, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: TopologyRun = {
    child, port, samples: [], stderr: [], marks: new Map(), lastMetrics: '', lastWatched: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)))),
    stop: () => child.kill('SIGTERM'),
  };
  let partial = '';
  const onText = (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      run.stderr.push(line);
      if (o.echo) process.stderr.write(`    | ${line}\n`);
      for (const [name, re] of Object.entries(o.marks ?? {})) if (!run.marks.has(name) && re.test(line)) run.marks.set(name, performance.now());
    }
  };
  child.stderr!.on('data', onText);
  child.stdout!.on('data', onText);
  let done = false;
  void run.exited.then(() => { done = true; });
  const sampleMs = o.sampleMs ?? 100;
  let fullAt = -Infinity;
  void (async () => {
    while (!done) {
      const s = procSample(child.pid!, { threads: true });
      if (s) run.samples.push(s);
      const full = !o.watch || performance.now() - fullAt >= 1000;
      try {
        const query = full ? '' : `?${o.watch!.map((n) => `name[]=${encodeURIComponent(n)}`).join('&')}`;
        const res = await fetch(`http://127.0.0.1:${port}/metrics${query}`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) {
          const text = await res.text();
          if (full) {
            run.lastMetrics = text;
            fullAt = performance.now();
          }
          run.lastWatched = text;
        }
      } catch { /* not listening yet, or gone */ }
      o.onSample?.(run, run.lastWatched);
      await new Promise((r) => setTimeout(r, sampleMs));
    }
  })();
  return run;
}

/** The CPU-time sample nearest before a moment (performance.now()). */
export function sampleAt(samples: ProcSample[], at: number): ProcSample | undefined {
  let best: ProcSample | undefined;
  for (const s of samples) if (s.at <= at) best = s;
  return best ?? samples[0];
}

/** Whether the CLI knows a topology (`--list`), without importing the topologies. */
export async function topologyRegistered(name: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'pipeline/cli/main.ts', '--list'], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  await new Promise((r) => child.on('exit', r));
  return out.split('\n').some((l) => l.split(/\s+/)[0] === name);
}

/** A topology run to the end of a pre-filled topic, timed from its partition assignment to the last committed flush. */
export interface TimedRun {
  run: TopologyRun;
  seconds: number;
  /** The child's CPU time over that span. */
  cpuSeconds: number;
}

/**
 * Runs a topology (with --stop-when-idle among its args) over `count` pre-filled records: done once everything is
 * consumed and a flush committed after that (the one carrying the last records), read from its /metrics.
 */
export async function timedRun(o: TopologyRunOptions & { count: number }): Promise<TimedRun> {
  let doneAt = 0;
  let flushesAtDone = -1;
  const run = await runTopology({
    ...o,
    marks: { assigned: /assigned .* partitions/, ...o.marks },
    onSample: (r, text) => {
      o.onSample?.(r, text);
      if (doneAt || !text) return;
      const consumed = metricSum(text, 'pipeline_records_consumed_total');
      const flushes = metricSum(text, 'pipeline_sink_flush_duration_seconds_count');
      if (consumed >= o.count && flushesAtDone < 0) flushesAtDone = flushes;
      else if (flushesAtDone >= 0 && flushes > flushesAtDone) doneAt = performance.now();
    },
  });
  const code = await run.exited;
  const start = run.marks.get('assigned');
  if (code !== 0 || start === undefined) throw new Error(`${o.args[0]} exited with ${code}:\n${run.stderr.slice(-10).join('\n')}`);
  doneAt ||= run.samples.at(-1)!.at; // ended between two samples
  return { run, seconds: (doneAt - start) / 1000, cpuSeconds: sampleAt(run.samples, doneAt)!.cpuSeconds - sampleAt(run.samples, start)!.cpuSeconds };
}

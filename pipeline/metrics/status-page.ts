import fs from 'node:fs';
import { createRequire } from 'node:module';
import type { PipelineMetrics, RecentFlush } from './registry.ts';

/** What the status page shows beyond the metrics: each topology's graph and readiness. */
export interface StatusSource {
  topologies: { name: string; mermaid?: string }[];
  ready: () => Record<string, boolean>;
}

export interface StatusSnapshot {
  at: number;
  topologies: { name: string; mermaid?: string; ready: boolean; consumed: number; written: number; produced: number; invalid: number; assigned: number; rebalances: number }[];
  lag: { topic: string; partition: string; lag: number }[];
  deadLetters: { reason: string; records: number }[];
  flushes: RecentFlush[];
  rssBytes: number;
}

type MetricValues = { value: number; labels: Record<string, string | number> }[];

/** The page's data, read from the same registry /metrics serves. */
export async function statusSnapshot(metrics: PipelineMetrics, source: StatusSource): Promise<StatusSnapshot> {
  const all = await metrics.registry.getMetricsAsJSON();
  const values = (name: string): MetricValues => (all.find((m) => m.name === name)?.values ?? []) as MetricValues;
  const sum = (name: string, topology: string) => values(name).filter((v) => v.labels.topology === topology).reduce((n, v) => n + v.value, 0);
  const ready = source.ready();
  const reasons = new Map<string, number>();
  for (const v of values('pipeline_records_invalid_total')) reasons.set(String(v.labels.reason), (reasons.get(String(v.labels.reason)) ?? 0) + v.value);
  return {
    at: Date.now(),
    topologies: source.topologies.map((t) => ({
      name: t.name, mermaid: t.mermaid, ready: ready[t.name] ?? false,
      consumed: sum('pipeline_records_consumed_total', t.name), written: sum('pipeline_sink_rows_written_total', t.name),
      produced: sum('pipeline_records_produced_total', t.name), invalid: sum('pipeline_records_invalid_total', t.name),
      assigned: sum('pipeline_assigned_partitions', t.name), rebalances: sum('pipeline_rebalances_total', t.name),
    })),
    lag: values('pipeline_consumer_lag').map((v) => ({ topic: String(v.labels.topic), partition: String(v.labels.partition), lag: v.value }))
      .sort((a, b) => a.topic.localeCompare(b.topic) || Number(a.partition) - Number(b.partition)),
    deadLetters: [...reasons].map(([reason, records]) => ({ reason, records })).sort((a, b) => b.records - a.records),
    flushes: metrics.recentFlushes.slice(-10).reverse(),
    rssBytes: values('process_resident_memory_bytes')[0]?.value ?? 0,
  };
}

/** Mermaid's own bundle, from node_modules: the page renders the graph with it and loads nothing from elsewhere. */
export function mermaidBundle(): Buffer {
  const require = createRequire(import.meta.url);
  return fs.readFileSync(require.resolve('mermaid/dist/mermaid.min.js'));
}

/**
 * The page: plain HTML, CSS and script, no framework. It polls /status.json every second, keeps the last five
 * minutes in the browser, and draws records/s in and out and the lag of each partition as SVG lines.
 */
export const STATUS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pipeline status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 Helvetica, Arial, sans-serif; margin: 20px; color: #222; background: #fafafa; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 18px 0 6px; }
  .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 14px; margin-bottom: 14px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 14px; }
  .ok { color: #1b7f3b; font-weight: bold; } .bad { color: #b3261e; font-weight: bold; }
  table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: right; } th { color: #555; font-weight: normal; }
  td:first-child, th:first-child { text-align: left; } .big { font-size: 22px; font-weight: bold; } .muted { color: #666; }
  svg.chart { width: 100%; height: 180px; background: #fff; }
</style></head>
<body>
<h1>pipeline status</h1>
<div class="muted">this process, refreshed every second &middot; <span id="ready">&hellip;</span> &middot; RSS <span id="rss">&hellip;</span></div>
<div id="topologies"></div>
<div class="grid">
  <div class="card"><h2>records/s</h2><div>in <span class="big" id="rate-in">0</span> &nbsp; out <span class="big" id="rate-out">0</span></div>
    <svg class="chart" id="chart-rates" viewBox="0 0 600 180" preserveAspectRatio="none"></svg></div>
  <div class="card"><h2>lag per partition</h2><svg class="chart" id="chart-lag" viewBox="0 0 600 180" preserveAspectRatio="none"></svg><div id="lag-legend" class="muted"></div></div>
  <div class="card"><h2>last flushes</h2><table id="flushes"><tr><th>at</th><th>topology</th><th>records</th><th>rows</th><th>ms</th></tr></table></div>
  <div class="card"><h2>dead letters by reason</h2><table id="dead-letters"><tr><th>reason</th><th>records</th></tr></table></div>
</div>
<script src="/assets/mermaid.min.js"></script>
<script>
const COLORS = ['#2f6fb0', '#d9822b', '#3a9d5d', '#b3261e', '#7b4fb3', '#888', '#1aa3a3', '#c2185b'];
const WINDOW_MS = 300000;
const rates = [];
const lags = new Map();
let prev;
let drawn = false;
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const fmt = (n) => Math.round(n).toLocaleString('en-US');

function chart(svg, series) {
  // The x axis spans what has been seen, up to the last five minutes.
  const now = Date.now();
  const oldest = Math.min(now - 10000, ...series.map((s) => s.points[0]?.[0] ?? now));
  const start = Math.max(now - WINDOW_MS, oldest);
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (t) => ((t - start) / (now - start)) * 600;
  const y = (v) => 170 - (v / max) * 160;
  let out = '<text x="4" y="12" font-size="11" fill="#666">' + fmt(max) + '</text><line x1="0" x2="600" y1="170" y2="170" stroke="#ccc"/>';
  series.forEach((s, i) => {
    if (s.points.length < 2) return;
    const d = s.points.map((p, k) => (k ? 'L' : 'M') + x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' ');
    out += '<path class="series" data-name="' + esc(s.name) + '" d="' + d + '" fill="none" stroke="' + COLORS[i % COLORS.length] + '" stroke-width="1.8" vector-effect="non-scaling-stroke"/>';
  });
  svg.innerHTML = out;
}

async function drawGraphs(topologies) {
  const host = document.getElementById('topologies');
  host.innerHTML = topologies.map((t, i) => '<div class="card"><h2>' + esc(t.name) + ' <span class="muted" id="stats-' + i + '"></span></h2><div class="graph" id="graph-' + i + '"></div></div>').join('');
  if (!window.mermaid) return;
  mermaid.initialize({ startOnLoad: false, securityLevel: 'strict', flowchart: { htmlLabels: false } });
  for (const [i, t] of topologies.entries()) {
    if (!t.mermaid) continue;
    try {
      const { svg } = await mermaid.render('mermaid-' + i, t.mermaid);
      document.getElementById('graph-' + i).innerHTML = svg;
    } catch (err) {
      document.getElementById('graph-' + i).textContent = 'graph: ' + err.message;
    }
  }
}

async function tick() {
  let s;
  try {
    s = await (await fetch('/status.json', { cache: 'no-store' })).json();
  } catch {
    document.getElementById('ready').innerHTML = '<span class="bad">unreachable</span>';
    return;
  }
  if (!drawn) {
    drawn = true;
    await drawGraphs(s.topologies);
  }
  const allReady = s.topologies.every((t) => t.ready);
  document.getElementById('ready').innerHTML = allReady ? '<span class="ok">ready</span>' : '<span class="bad">not ready</span> (' + esc(s.topologies.filter((t) => !t.ready).map((t) => t.name).join(', ')) + ')';
  document.getElementById('rss').textContent = (s.rssBytes / 1048576).toFixed(0) + ' MB';
  const totalIn = s.topologies.reduce((n, t) => n + t.consumed, 0);
  const totalOut = s.topologies.reduce((n, t) => n + t.written + t.produced, 0);
  if (prev) {
    const dt = (s.at - prev.at) / 1000;
    const rin = Math.max(0, (totalIn - prev.totalIn) / dt);
    const rout = Math.max(0, (totalOut - prev.totalOut) / dt);
    rates.push([s.at, rin, rout]);
    document.getElementById('rate-in').textContent = fmt(rin);
    document.getElementById('rate-out').textContent = fmt(rout);
  }
  prev = { at: s.at, totalIn, totalOut };
  while (rates.length && rates[0][0] < s.at - WINDOW_MS) rates.shift();
  chart(document.getElementById('chart-rates'), [
    { name: 'in', points: rates.map((r) => [r[0], r[1]]) }, { name: 'out', points: rates.map((r) => [r[0], r[2]]) },
  ]);
  for (const l of s.lag) {
    const key = l.topic + '[' + l.partition + ']';
    if (!lags.has(key)) lags.set(key, []);
    lags.get(key).push([s.at, l.lag]);
  }
  for (const points of lags.values()) while (points.length && points[0][0] < s.at - WINDOW_MS) points.shift();
  const lagSeries = [...lags].map(([name, points]) => ({ name, points }));
  chart(document.getElementById('chart-lag'), lagSeries);
  document.getElementById('lag-legend').innerHTML = lagSeries.map((l, i) => '<span style="color:' + COLORS[i % COLORS.length] + '">&#9632;</span> ' + esc(l.name) + ' ' + fmt(l.points.at(-1)?.[1] ?? 0)).join(' &nbsp; ');
  s.topologies.forEach((t, i) => {
    const el = document.getElementById('stats-' + i);
    if (el) el.textContent = 'in ' + fmt(t.consumed) + ' · written ' + fmt(t.written) + ' · produced ' + fmt(t.produced) + ' · dead letters ' + fmt(t.invalid) + ' · partitions ' + t.assigned + ' · rebalances ' + t.rebalances + (t.ready ? '' : ' · not ready');
  });
  document.getElementById('flushes').innerHTML = '<tr><th>at</th><th>topology</th><th>records</th><th>rows</th><th>ms</th></tr>'
    + s.flushes.map((f) => '<tr class="flush"><td>' + new Date(f.at).toLocaleTimeString() + '</td><td>' + esc(f.topology) + '</td><td>' + fmt(f.records) + '</td><td>' + fmt(f.rows) + '</td><td>' + (f.seconds * 1000).toFixed(1) + '</td></tr>').join('');
  document.getElementById('dead-letters').innerHTML = '<tr><th>reason</th><th>records</th></tr>'
    + s.deadLetters.map((d) => '<tr class="dead-letter"><td>' + esc(d.reason) + '</td><td>' + fmt(d.records) + '</td></tr>').join('');
}
tick();
setInterval(tick, 1000);
</script>
</body></html>
`;

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { PipelineMetrics } from '../../pipeline/metrics/registry.ts';
import { projectRoot } from '../../pipeline/local/paths.ts';

const DASHBOARD = 'monitoring/grafana-dashboard.json';
const ALERTS = 'monitoring/alerts.yml';
const ALERTS_TEST = 'monitoring/alerts.test.yml';

/** Identifiers that PromQL reserves and that are not followed by `(`: aggregations take `by`/`without` first. */
const KEYWORDS = new Set([
  'and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right',
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile',
  'inf', 'nan',
]);

/** Series names the process exports: a histogram is only its _bucket, _sum and _count series. */
async function exportedNames(): Promise<Set<string>> {
  const m = PipelineMetrics.create();
  const names = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    // prom-client's typings declare a numeric enum; at run time the type is the string.
    if (String(metric.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(metric.name + s);
    else names.add(metric.name);
  }
  return names;
}

/** The metric names in a PromQL expression (Grafana's `$var` allowed). */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // strings: label values, regexes
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1') // label lists
    .replace(/\$\{?\w+\}?/g, ''); // Grafana variables outside strings
  const names: string[] = [];
  // Whole identifiers (not a part after a digit or `.`, as in 1e3, nor one cut short) not called as functions.
  for (const m of bare.matchAll(/(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:]|\s*\()/g)) {
    if (!KEYWORDS.has(m[0].toLowerCase())) names.push(m[0]);
  }
  return names;
}

interface Use { file: string; expr: string }

/** Every PromQL expression of the dashboard: the panels' targets and the template variables' queries. */
function dashboardExprs(): Use[] {
  const d = JSON.parse(fs.readFileSync(path.join(projectRoot, DASHBOARD), 'utf8'));
  const uses: Use[] = [];
  const panels = (list: any[]): void => {
    for (const p of list ?? []) {
      for (const t of p.targets ?? []) if (t.expr) uses.push({ file: DASHBOARD, expr: t.expr });
      panels(p.panels); // the panels of a collapsed row
    }
  };
  panels(d.panels);
  for (const v of d.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q: string = typeof v.query === 'string' ? v.query : v.query.query;
    // label_values(expr, label) queries expr; label_values(label) names no metric.
    const lv = /^\s*label_values\((?:(.*),)?\s*\w+\s*\)\s*$/.exec(q);
    uses.push({ file: DASHBOARD, expr: lv ? lv[1] ?? '' : q });
  }
  return uses;
}

function alertRules(): { alert: string; expr: string }[] {
  const doc = YAML.parse(fs.readFileSync(path.join(projectRoot, ALERTS), 'utf8'));
  return doc.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) => g.rules);
}

function promtool(...args: string[]): void {
  const r = spawnSync('promtool', args, { cwd: projectRoot, encoding: 'utf8', timeout: 30_000 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    assert.fail('promtool is not installed: apt-get install prometheus (Debian\'s package ships promtool)');
  }
  assert.equal(r.status, 0, `promtool ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
}

describe('the monitoring files', () => {
  it('have the five alerts', () => {
    assert.deepEqual(alertRules().map((r) => r.alert).sort(),
      ['PipelineDeadLetterRateHigh', 'PipelineFlushRetries', 'PipelineLagGrowing', 'PipelineNoFlush', 'PipelineNotReady']);
  });

  it('name only metrics the process exports', async () => {
    const exported = await exportedNames();
    const uses = [...dashboardExprs(), ...alertRules().map((r) => ({ file: ALERTS, expr: r.expr }))];
    const seen = new Set<string>();
    const missing: string[] = [];
    for (const { file, expr } of uses) {
      for (const name of metricNames(expr)) {
        seen.add(name);
        if (!exported.has(name)) missing.push(`${file}: ${name} is not exported, in: ${expr.trim()}`);
      }
    }
    // So that a parser that finds nothing cannot pass.
    assert.ok(seen.size >= 10, `only ${seen.size} metric names found: ${[...seen].join(', ')}`);
    assert.deepEqual(missing, [], missing.join('\n'));
  });

  it('extracts the metric names of an expression and nothing else', () => {
    assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, topology) (rate(a_bucket{topology=~"$topology", x="y z"}[$__rate_interval])))'), ['a_bucket']);
    assert.deepEqual(metricNames('time() - b > 1e3 and on (instance) deriv(sum without (p) (c)[10m:1m]) offset 5m > bool 0'), ['b', 'c']);
    assert.deepEqual(metricNames('d * on (t) group_left (x) e unless max(f) or count_values("v", g)'), ['d', 'e', 'f', 'g']);
  });

  it('pass promtool check rules', () => {
    promtool('check', 'rules', ALERTS);
  });

  it('pass the promtool rule tests', () => {
    promtool('test', 'rules', ALERTS_TEST);
  });
});

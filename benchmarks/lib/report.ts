import {
  projectRoot,
} from '../../pipeline/index.ts';
import fs from 'node:fs';
import path from 'node:path';

/** Where benchmarks and the soak write their JSON and charts; BENCH_RESULTS_DIR moves them (the suite's short soak does). */
export const resultsDir = process.env.BENCH_RESULTS_DIR ? path.resolve(process.env.BENCH_RESULTS_DIR) : path.join(projectRoot, 'benchmarks', 'results');

export type Row = [label: string, value: string, note?: string];

export function printTable(title: string, rows: Row[]): void {
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const lines = [`\n${title}`, `${'-'.repeat(w0)}  ${'-'.repeat(w1)}`];
  for (const [a, b, c] of rows) lines.push(`${a.padEnd(w0)}  ${b.padStart(w1)}${c ? `  ${c}` : ''}`);
  process.stdout.write(`${lines.join('\n')}\n\n`);
}

export const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
export const fmtRatio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)} x` : 'n/a');
export const fmtMs = (s: number) => (Number.isFinite(s) ? `${(s * 1000).toFixed(1)} ms` : 'n/a');
export const fmtMb = (b: number) => (Number.isFinite(b) ? `${(b / 1048576).toFixed(0)} MB` : 'n/a');

/** Writes <name>-<stamp>.json and <name>-latest.json; returns the latest path. */
export function writeJson(name: string, data: object): string {
  fs.mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const body = `${JSON.stringify(data, null, 2)}\n`;
  fs.writeFileSync(path.join(resultsDir, `${name}-${stamp}.json`), body);
  const latest = path.join(resultsDir, `${name}-latest.json`);
  fs.writeFileSync(latest, body);
  return latest;
}

export interface Bar {
  label: string;
  value: number;
  /** Optional highlight (the measured subject vs the comparators). */
  subject?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A plain horizontal bar chart as SVG: no dependency, readable on GitHub. Writes <name>-latest.svg. */
export function writeBarChart(name: string, title: string, unit: string, bars: Bar[], subtitle = ''): string {
  const rowH = 34;
  const left = 230;
  const right = 130;
  const width = 860;
  const top = subtitle ? 66 : 48;
  const height = top + bars.length * rowH + 20;
  const max = Math.max(1, ...bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)));
  const plot = width - left - right;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="16" font-weight="bold">${esc(title)}</text>`,
  ];
  if (subtitle) parts.push(`<text x="16" y="46" fill="#555">${esc(subtitle)}</text>`);
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const v = Number.isFinite(b.value) ? b.value : 0;
    const w = Math.max(1, (v / max) * plot);
    parts.push(`<text x="${left - 10}" y="${y + 20}" text-anchor="end">${esc(b.label)}</text>`);
    parts.push(`<rect x="${left}" y="${y + 5}" width="${w.toFixed(1)}" height="${rowH - 12}" fill="${b.subject ? '#2f6fb0' : '#9bb7d4'}"/>`);
    parts.push(`<text x="${(left + w + 8).toFixed(1)}" y="${y + 20}">${esc(Number.isFinite(b.value) ? `${Math.round(b.value).toLocaleString('en-US')} ${unit}` : 'n/a')}</text>`);
  });
  parts.push('</svg>');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}-latest.svg`);
  fs.writeFileSync(file, `${parts.join('\n')}\n`);
  return file;
}

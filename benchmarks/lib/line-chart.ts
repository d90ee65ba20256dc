import fs from 'node:fs';
import path from 'node:path';
import { resultsDir } from './report.ts';

export interface Series {
  title: string;
  /** [x, y] points, x ascending. */
  points: [number, number][];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round step for about `ticks` gridlines over [0, max]. */
function step(max: number, ticks: number): number {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

const fmt = (n: number) => (Math.abs(n) >= 1000 ? Math.round(n).toLocaleString('en-US') : Number(n.toPrecision(3)).toString());

/**
 * Line charts stacked in one SVG, a panel a series, sharing the x axis (from 0): no dependency, readable on GitHub.
 * Writes <name>-latest.svg in benchmarks/results and returns its path.
 */
export function writeLineCharts(name: string, title: string, subtitle: string, series: Series[], xLabel: string): string {
  const width = 860;
  const left = 80;
  const right = 24;
  const panelH = 150;
  const gap = 44;
  const top = 70;
  const height = top + series.length * (panelH + gap) + 10;
  const plotW = width - left - right;
  const xMax = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const xStep = step(xMax, 8);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="#ffffff"/>',
    `<text x="16" y="26" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="16" y="46" fill="#555">${esc(subtitle)}</text>`,
  ];
  series.forEach((s, i) => {
    const y0 = top + i * (panelH + gap) + 18;
    const yMaxRaw = Math.max(0, ...s.points.map((p) => p[1]));
    const yStep = step(yMaxRaw || 1, 4);
    const yMax = Math.max(yStep, Math.ceil(yMaxRaw / yStep) * yStep);
    const X = (x: number) => left + (x / xMax) * plotW;
    const Y = (y: number) => y0 + panelH - (y / yMax) * panelH;
    parts.push(`<text x="${left}" y="${y0 - 6}" font-weight="bold">${esc(s.title)}</text>`);
    for (let y = 0; y <= yMax + 1e-9; y += yStep) {
      parts.push(`<line x1="${left}" x2="${width - right}" y1="${Y(y).toFixed(1)}" y2="${Y(y).toFixed(1)}" stroke="#e3e3e3"/>`);
      parts.push(`<text x="${left - 6}" y="${(Y(y) + 4).toFixed(1)}" text-anchor="end" fill="#555">${fmt(y)}</text>`);
    }
    for (let x = 0; x <= xMax + 1e-9; x += xStep) {
      parts.push(`<text x="${X(x).toFixed(1)}" y="${y0 + panelH + 16}" text-anchor="middle" fill="#555">${fmt(x)}</text>`);
    }
    if (s.points.length) {
      const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="#2f6fb0" stroke-width="1.6"/>`);
    }
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#999"/>`);
  });
  parts.push(`<text x="${left + plotW / 2}" y="${height - 6}" text-anchor="middle" fill="#555">${esc(xLabel)}</text>`, '</svg>');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}-latest.svg`);
  fs.writeFileSync(file, `${parts.join('\n')}\n`);
  return file;
}

// npm run build (and npm ci, through prepare): the engine and the topologies compiled to dist/, which
// `npm run topology` runs while it is as new as every source (scripts/topology.mjs). The sources still run directly
// (tsx) in development, in the tests and in the benchmarks.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const startedAt = new Date();
fs.rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.status !== 0) {
  fs.rmSync(dist, { recursive: true, force: true });
  console.error('build: tsc failed; npm run topology will run the TypeScript sources');
  process.exit(tsc.status ?? 1);
}
// A compiled worker starts on its .js directly; this loader is for a TypeScript worker module started from dist/.
fs.copyFileSync(path.join(root, 'pipeline/runtime/ts-worker.mjs'), path.join(dist, 'pipeline/runtime/ts-worker.mjs'));
// The stamp carries the build's start: a source saved during the build is newer than it, so it counts as changed.
const stamp = path.join(dist, '.built');
fs.writeFileSync(stamp, `${startedAt.toISOString()}\n`);
fs.utimesSync(stamp, startedAt, startedAt);

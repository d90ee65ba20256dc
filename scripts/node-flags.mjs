// The node options `npm run topology` starts a topology with: the words between `node` and `scripts/topology.mjs`
// in package.json's "topology" script, with ${VAR:-default} and ${VAR-default} expanded as sh does. The benchmarks
// and the tests start their topologies with them too, so that they measure and test what `npm run topology` runs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** @returns {string[]} */
export function topologyNodeFlags(env = process.env) {
  const script = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.topology;
  const m = /^node\s+(.*?)\s*scripts\/topology\.mjs/.exec(script);
  if (!m) throw new Error(`package.json's topology script is not "node [options] scripts/topology.mjs": ${script}`);
  const expanded = m[1].replace(/\$\{(\w+)(:?)-([^}]*)\}/g, (_, name, colon, fallback) => {
    const value = env[name];
    return value === undefined || (colon && value === '') ? fallback : value;
  });
  return expanded.split(/\s+/).filter(Boolean);
}

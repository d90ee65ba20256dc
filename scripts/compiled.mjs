// Whether dist/ (scripts/build.mjs) is built and as new as every source it was compiled from: what decides that
// `npm run topology` runs the compiled JavaScript (scripts/topology.mjs).
import fs from 'node:fs';
import path from 'node:path';

export function compiledIsCurrent(root) {
  let built;
  try {
    built = fs.statSync(path.join(root, 'dist/.built')).mtimeMs;
  } catch {
    return false;
  }
  let newest = 0;
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mjs|json)$/.test(e.name)) newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  };
  walk(path.join(root, 'pipeline'));
  walk(path.join(root, 'topologies'));
  for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json']) newest = Math.max(newest, fs.statSync(path.join(root, f)).mtimeMs);
  return built >= newest;
}

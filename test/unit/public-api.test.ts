import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../pipeline/local/paths.ts';

/** The engine's entry points: what code outside pipeline/ may import. */
const ENTRIES = new Set(['pipeline/index.ts', 'pipeline/builder.ts', 'pipeline/local/index.ts']);

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'results' ? [] : sources(p);
    return /\.(ts|mts|mjs|js)$/.test(e.name) ? [p] : [];
  });
}

describe('the public API', () => {
  it('is all that topologies, scripts and benchmarks import of the engine', () => {
    const deep: string[] = [];
    let imports = 0;
    for (const dir of ['topologies', 'scripts', 'benchmarks']) {
      for (const file of sources(path.join(projectRoot, dir))) {
        const text = fs.readFileSync(file, 'utf8');
        for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
          const target = path.relative(projectRoot, path.resolve(path.dirname(file), m[1]));
          if (!m[1].startsWith('.') || !target.startsWith('pipeline/')) continue;
          imports++;
          if (!ENTRIES.has(target)) deep.push(`${path.relative(projectRoot, file)} imports ${target}`);
        }
      }
    }
    assert.ok(imports > 20, `the scan found the imports (${imports})`);
    assert.deepEqual(deep, [], 'import the engine through pipeline/index.ts (or pipeline/builder.ts in a worker thread)');
  });

  it('is what package.json exports', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { exports: Record<string, string> };
    assert.deepEqual(pkg.exports, { '.': './pipeline/index.ts', './builder': './pipeline/builder.ts', './local': './pipeline/local/index.ts' });
  });

  it('builds plans without loading a Kafka client (what a worker thread may import)', () => {
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^import (?!type )[^'"]*['"]([^'"]+)['"]/gm)) {
        assert.notEqual(m[1], 'node-rdkafka', `${path.relative(projectRoot, file)} loads node-rdkafka`);
        if (m[1].startsWith('.')) visit(path.resolve(path.dirname(file), m[1]));
      }
      for (const m of text.matchAll(/^export (?!type )[^'"]*from ['"]([^'"]+)['"]/gm)) if (m[1].startsWith('.')) visit(path.resolve(path.dirname(file), m[1]));
    };
    visit(path.join(projectRoot, 'pipeline/builder.ts'));
    assert.ok(seen.size > 10, `followed the imports (${seen.size} files)`);
  });
});

// npm run topology -- <name> [options]: the compiled JavaScript in dist/ (npm run build; npm ci builds it) when it
// is as new as every source, so that a start does not compile TypeScript; else the sources through tsx, as in
// development. A topology given as a module path (your own .ts or .js file) runs with the sources, so that it and
// the engine it imports ('orders-stream-pipeline' is pipeline/index.ts) are one set of modules. PIPELINE_FROM_SOURCES=1
// runs the sources whatever dist/ holds.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compiledIsCurrent } from './compiled.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const userModule = process.argv.slice(2).some((a) => /\.(m?[jt]s)$/.test(a) && !a.startsWith('-'));
if (!userModule && process.env.PIPELINE_FROM_SOURCES !== '1' && compiledIsCurrent(root)) {
  await import(pathToFileURL(path.join(root, 'dist/pipeline/cli/main.js')).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(path.join(root, 'pipeline/cli/main.ts')).href);
}

// A worker thread does not inherit the TypeScript loader hooks that `--import tsx` installed in the main thread
// (module hooks are per thread), so the stage worker registers them before it loads its TypeScript.
import { register } from 'tsx/esm/api';

register();
await import('./stage-worker.ts');

// The entry of every worker thread: a worker does not inherit the TypeScript loader hooks that `--import tsx`
// installed in the main thread (module hooks are per thread), so it registers them, then loads the TypeScript
// module named by workerData.entry (a file URL).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);

// Preloaded into a benchmarked child (node --import): measures how long the event loop is blocked, and reports it
// on stderr at exit, so the benchmark can show what each database round trip of a flush waits behind.
import { monitorEventLoopDelay } from 'node:perf_hooks';

const h = monitorEventLoopDelay({ resolution: 5 });
h.enable();
process.on('exit', () => {
  h.disable();
  const ms = (ns) => (ns / 1e6).toFixed(1);
  process.stderr.write(`[bench] event-loop delay ms p50 ${ms(h.percentile(50))} p99 ${ms(h.percentile(99))} max ${ms(h.max)} mean ${ms(h.mean)}\n`);
});

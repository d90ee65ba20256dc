import { errorMessage, PipelineError } from '../errors.ts';
import { isConnectionError } from '../postgres/db.ts';

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export class Aborted extends Error {
  constructor() {
    super('stopped');
  }
}

/**
 * Whether waiting can help: a database or broker that is away, a timeout. A programming error or a bad setting
 * is not retried: it fails at once with its message.
 */
export function isRetriable(err: unknown): boolean {
  if (err instanceof PipelineError) return err.retriable;
  if (isConnectionError(err)) return true;
  const e = err as { code?: unknown; isRetriable?: boolean; message?: string };
  // librdkafka errors are numeric codes; negative ones are local (transport, timeout, all brokers down).
  if (typeof e?.code === 'number') return e.code < 0 || e.isRetriable === true;
  return /timed? ?out|ECONNREFUSED|Broker transport failure|all brokers/i.test(e?.message ?? '');
}

/**
 * Retries fn with exponential backoff (0.5 s doubling to 10 s) until it succeeds or the signal aborts
 * (then throws Aborted), or, with giveUpAfterMs, until it has failed for that long (then throws); an error that
 * waiting cannot fix is thrown at once. Logs one line on the first failure and then at most one every 10 s, so an outage
 * reads as a few clear lines, not a flood.
 */
export async function retry<T>(what: string, fn: () => Promise<T>, log: (line: string) => void, signal?: AbortSignal,
  options: { giveUpAfterMs?: number } = {}): Promise<T> {
  let delay = 500;
  let attempt = 0;
  let lastLog = 0;
  let firstFailure = 0;
  for (;;) {
    if (signal?.aborted) throw new Aborted();
    try {
      const result = await fn();
      if (attempt > 0) log(`${what}: succeeded after ${attempt + 1} attempts`);
      return result;
    } catch (err) {
      if (!isRetriable(err)) throw err;
      attempt++;
      firstFailure ||= Date.now();
      if (options.giveUpAfterMs !== undefined && Date.now() - firstFailure >= options.giveUpAfterMs) {
        throw new PipelineError('RETRIES_EXHAUSTED', `${what} failed for ${Math.round((Date.now() - firstFailure) / 1000)} s (${attempt} attempts), giving up: ${errorMessage(err)}`, { cause: err });
      }
      if (Date.now() - lastLog >= 10_000) {
        log(`${what} failed (attempt ${attempt}, retrying with backoff): ${errorMessage(err)}`);
        lastLog = Date.now();
      }
      await sleep(delay, signal);
      delay = Math.min(10_000, delay * 2);
    }
  }
}

/**
 * A log for errors a client reports on its own, such as librdkafka's "all broker connections are down" while a
 * broker restarts: the first of each message at once, then at most one line per intervalMs with how many were
 * held back, so an outage reads as a few clear lines, not a flood.
 */
export function throttledLog(log: (line: string) => void, intervalMs = 10_000): (line: string) => void {
  const last = new Map<string, { at: number; held: number }>();
  return (line) => {
    const now = Date.now();
    const seen = last.get(line);
    if (seen && now - seen.at < intervalMs) {
      seen.held++;
      return;
    }
    log(seen?.held ? `${line} (${seen.held} more like it in the last ${Math.round((now - seen.at) / 1000)} s)` : line);
    last.set(line, { at: now, held: 0 });
    if (last.size > 100) last.clear();
  };
}

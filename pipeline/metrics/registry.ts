import http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { compiled, projectRoot } from '../local/paths.ts';
import Kafka from 'node-rdkafka';
import { mermaidBundle, STATUS_HTML } from './status-page.ts';

export interface RecentFlush {
  /** Unix ms when it committed. */
  at: number;
  topology: string;
  records: number;
  rows: number;
  seconds: number;
}

const RECENT_FLUSHES = 20;

/** This build's version, as package.json has it. */
const VERSION = (JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;

/**
 * The pipeline's metrics, created once per process on an injected registry. The runtime updates them once per
 * batch or flush, never per record, so they cost nothing on the hot path.
 */
export class PipelineMetrics {
  readonly consumed: Counter<'topology' | 'topic'>;
  readonly invalid: Counter<'topology' | 'reason'>;
  readonly produced: Counter<'topology' | 'topic'>;
  readonly rowsWritten: Counter<'topology' | 'table'>;
  readonly flushDuration: Histogram<'topology' | 'table'>;
  readonly pollRecords: Histogram<'topology'>;
  readonly flushRetries: Counter<'topology' | 'table'>;
  readonly consumerLag: Gauge<'topic' | 'partition'>;
  readonly deadLettersPublished: Counter<'topic'>;
  readonly paused: Gauge<'topology'>;
  readonly lateRecords: Counter<'topology' | 'stage'>;
  readonly sourceErrors: Counter<'topology' | 'topic' | 'reason'>;
  readonly stageRecords: Counter<'topology' | 'stage' | 'outcome'>;
  readonly rebalances: Counter<'topology' | 'kind'>;
  readonly assignedPartitions: Gauge<'topology' | 'topic'>;
  readonly commitDuration: Histogram<'topology'>;
  readonly lastFlush: Gauge<'topology'>;
  readonly ready: Gauge<'topology'>;
  readonly buildInfo: Gauge<'version' | 'node' | 'librdkafka' | 'features' | 'code'>;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.consumed = new Counter({ name: 'pipeline_records_consumed_total', help: 'Records read from Kafka', labelNames: ['topology', 'topic'], registers });
    this.invalid = new Counter({ name: 'pipeline_records_invalid_total', help: 'Records sent to the dead-letter topic, by reason', labelNames: ['topology', 'reason'], registers });
    this.produced = new Counter({ name: 'pipeline_records_produced_total', help: 'Records acknowledged by Kafka', labelNames: ['topology', 'topic'], registers });
    this.rowsWritten = new Counter({ name: 'pipeline_sink_rows_written_total', help: 'Rows committed to Postgres', labelNames: ['topology', 'table'], registers });
    this.flushDuration = new Histogram({
      name: 'pipeline_sink_flush_duration_seconds', help: 'Time from BEGIN to COMMIT of one sink flush', labelNames: ['topology', 'table'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    this.pollRecords = new Histogram({
      name: 'pipeline_poll_records', help: 'Records one poll of the consumer returned (polls that returned any)', labelNames: ['topology'], registers,
      buckets: [1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000],
    });
    this.flushRetries = new Counter({ name: 'pipeline_sink_flush_retries_total', help: 'Sink flushes that failed and were retried from the offsets in Postgres', labelNames: ['topology', 'table'], registers });
    this.consumerLag = new Gauge({ name: 'pipeline_consumer_lag', help: 'Messages between the consumer position and the high watermark (librdkafka statistics)', labelNames: ['topic', 'partition'], registers });
    this.deadLettersPublished = new Counter({ name: 'pipeline_dead_letters_published_total', help: 'Dead letters published from the Postgres outbox to Kafka', labelNames: ['topic'], registers });
    this.lateRecords = new Counter({ name: 'pipeline_window_late_records_total', help: 'Records dropped because their window had closed (end + grace <= stream time)', labelNames: ['topology', 'stage'], registers });
    this.sourceErrors = new Counter({
      name: 'pipeline_source_errors_total', help: 'Errors reading the source: batches that could not be decoded (unsupported-codec, corrupt, too-large) and fetch errors',
      labelNames: ['topology', 'topic', 'reason'], registers,
    });
    this.paused = new Gauge({ name: 'pipeline_consumer_paused', help: '1 while the runtime has stopped polling, waiting for a flush or the stage workers (backpressure)', labelNames: ['topology'], registers });
    this.stageRecords = new Counter({
      name: 'pipeline_stage_records_total', help: 'Records each stage took in, passed on (out) and sent to the dead letters, counted per batch', labelNames: ['topology', 'stage', 'outcome'], registers,
    });
    this.rebalances = new Counter({ name: 'pipeline_rebalances_total', help: 'Partition assignments and revocations the consumer group handed this process (kind: assign, revoke)', labelNames: ['topology', 'kind'], registers });
    this.assignedPartitions = new Gauge({ name: 'pipeline_assigned_partitions', help: 'Partitions (tasks) of the topic this process owns now', labelNames: ['topology', 'topic'], registers });
    this.commitDuration = new Histogram({
      name: 'pipeline_commit_duration_seconds', help: 'Time the commit of one flush took: the Postgres COMMIT, or the Kafka transaction commit', labelNames: ['topology'], registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.lastFlush = new Gauge({ name: 'pipeline_last_flush_timestamp_seconds', help: 'Unix time of the last flush committed', labelNames: ['topology'], registers });
    this.ready = new Gauge({ name: 'pipeline_ready', help: '1 while the topology is ready (connected, nothing held), as /readyz says', labelNames: ['topology'], registers });
    this.buildInfo = new Gauge({ name: 'pipeline_build_info', help: 'Always 1: the version of this build, of Node and of librdkafka, librdkafka\'s features, and whether it runs the compiled build (dist/) or the TypeScript sources', labelNames: ['version', 'node', 'librdkafka', 'features', 'code'], registers });
  }

  /** The last flushes committed, newest last: for the status page (a list, not a metric). */
  readonly recentFlushes: RecentFlush[] = [];

  noteFlush(f: RecentFlush): void {
    this.recentFlushes.push(f);
    if (this.recentFlushes.length > RECENT_FLUSHES) this.recentFlushes.shift();
  }

  static create(): PipelineMetrics {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const metrics = new PipelineMetrics(registry);
    metrics.buildInfo.set({ version: VERSION, node: process.versions.node, librdkafka: Kafka.librdkafkaVersion, features: Kafka.features.join(','), code: compiled ? 'compiled' : 'sources' }, 1);
    return metrics;
  }
}

/**
 * Serves /metrics (`?name[]=` for some of them only), /healthz (the process is live) and /readyz (every topology is
 * connected to what it needs); with `status`, the status page at / (metrics/status-page.ts), its data at
 * /status.json and the Mermaid bundle it renders the graphs with.
 * Binds to 127.0.0.1 unless a host is given.
 */
export async function serveMetrics(registry: Registry, port: number, ready: () => boolean, host = '127.0.0.1', status?: () => Promise<object>): Promise<http.Server> {
  let mermaid: Buffer | undefined;
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const path = url.split('?')[0];
    if (status && (path === '/' || path === '/status')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(STATUS_HTML);
    } else if (status && path === '/status.json') {
      status().then(
        (s) => res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(s)),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else if (status && path === '/assets/mermaid.min.js') {
      mermaid ??= mermaidBundle();
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'max-age=3600' }).end(mermaid);
    } else if (url.startsWith('/metrics')) {
      // ?name[]=a&name[]=b: only those metrics, as the Prometheus Python client serves them, without collecting the
      // rest (the process metrics read /proc and the heap): what a frequent watcher of a counter or two asks for.
      const names = new URL(url, 'http://x').searchParams.getAll('name[]');
      const body = names.length
        ? Promise.all(names.filter((n) => registry.getSingleMetric(n)).map((n) => registry.getSingleMetricAsString(n))).then((all) => all.map((t) => `${t}\n`).join(''))
        : registry.metrics();
      body.then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else if (url.startsWith('/healthz')) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (url.startsWith('/readyz')) {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return server;
}

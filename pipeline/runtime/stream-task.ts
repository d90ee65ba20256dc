import type Kafka from 'node-rdkafka';
import { errorMessage } from '../errors.ts';
import type { KafkaConnection } from '../kafka/client-config.ts';
import type { PipelineMetrics } from '../metrics/registry.ts';
import type { Database } from '../postgres/db.ts';
import type { DeadLetter, DeadLetterRelay } from '../postgres/dead-letters.ts';
import { loadOffsets, type OffsetMove } from '../postgres/offsets.ts';
import { deadLetterOf, type Stage, type StageContext, type StreamRecord } from '../records.ts';
import type { CopyRow, FlushResult, PostgresCopySink } from '../sinks/postgres-copy.ts';
import { KafkaSource } from '../sources/kafka-source.ts';
import type { Progress } from './progress.ts';
import { Aborted, retry, sleep } from './retry.ts';

/** The one batching policy: a flush happens at maxRecords or after maxWaitMs, whichever comes first. */
export interface BatchPolicy {
  maxRecords: number;
  maxWaitMs: number;
}

export interface StreamTaskOptions {
  topology: string;
  conn: KafkaConnection;
  db: Database;
  topic: string;
  groupId: string;
  dlqTopic: string;
  /** Stages from raw bytes to a CopyRow. */
  stages: Stage[];
  sink: PostgresCopySink;
  table: string;
  relay: DeadLetterRelay;
  batch: BatchPolicy;
  stopWhenIdleMs?: number;
  metrics: PipelineMetrics;
  progress: Progress;
  log: (line: string) => void;
  signal: AbortSignal;
}

class Pending {
  records: StreamRecord<CopyRow>[] = [];
  deadLetters: DeadLetter[] = [];
  /** Highest offset taken per partition (rows and dead letters alike). */
  last = new Map<number, number>();
  count = 0;
  startedAt = Date.now();

  dropPartitions(partitions: Set<number>): void {
    if (![...this.last.keys()].some((p) => partitions.has(p))) return;
    this.records = this.records.filter((r) => !partitions.has(r.partition));
    this.deadLetters = this.deadLetters.filter((d) => !partitions.has(d.sourcePartition));
    for (const p of partitions) this.last.delete(p);
    this.count = this.records.length + this.deadLetters.length;
  }
}

type FlushOutcome = { ok: true } | { ok: false; error: unknown; partitions: number[] };

/**
 * The runtime of one source topic into one Postgres sink: it polls batches, runs the stages, and hands each flush
 * (rows, dead letters and the next offset of every partition in it) to the sink, which commits them in one
 * transaction. While one flush is being written the next batch is consumed and processed, and at most one flush
 * is in flight: that bound is the backpressure, since the loop stops polling until the flush completes.
 * On any failed flush the affected partitions are rewound to the offsets in Postgres, the truth, so whatever the
 * outcome of the failed transaction nothing is lost or written twice.
 */
export class StreamTask {
  private readonly source: KafkaSource;
  /** The next offset per owned partition as stored in Postgres after our last commit. */
  private readonly committed = new Map<number, number>();
  /** Highest offset taken per owned partition; anything at or below it is a redelivery and skipped. */
  private readonly lastSeen = new Map<number, number>();
  private pending = new Pending();
  private inflight: Promise<FlushOutcome> | undefined;
  private lastActivity = Date.now();
  ready = false;

  constructor(private readonly o: StreamTaskOptions) {
    this.source = new KafkaSource(o.conn, o.topic, o.groupId, {
      onAssign: (partitions) => this.onAssign(partitions),
      onRevoke: (partitions) => this.onRevoke(partitions),
    });
    this.source.onStats = (stats) => {
      const parts = stats.topics?.[o.topic]?.partitions ?? {};
      let lag = 0;
      for (const [p, s] of Object.entries(parts)) {
        if (p === '-1' || s.consumer_lag < 0) continue;
        o.metrics.consumerLag.set({ topic: o.topic, partition: p }, s.consumer_lag);
        lag += s.consumer_lag;
      }
      o.progress.lag = lag;
    };
    this.source.onError = (err) => o.log(`kafka: ${errorMessage(err)}`);
  }

  async run(): Promise<void> {
    const { o } = this;
    try {
      await retry('connecting to Kafka', () => this.source.connect(), o.log, o.signal);
    } catch (err) {
      if (err instanceof Aborted) return;
      throw err;
    }
    this.ready = true;
    o.relay.start();
    o.progress.start();
    try {
      while (!o.signal.aborted) {
        let messages: Kafka.Message[] = [];
        try {
          messages = await this.source.poll(2000);
        } catch (err) {
          o.log(`poll: ${errorMessage(err)}`);
          await sleep(500, o.signal);
        }
        if (messages.length) {
          this.lastActivity = Date.now();
          this.accept(messages);
        } else if (this.pending.count === 0) {
          await this.settle(); // nothing to overlap the flush in flight with
        }
        const p = this.pending;
        if (p.count >= o.batch.maxRecords || (p.count > 0 && Date.now() - p.startedAt >= o.batch.maxWaitMs)) {
          await this.startFlush();
        }
        if (this.idle()) break;
      }
      await this.settle();
      if (this.pending.count) {
        await this.startFlush();
        await this.settle();
      }
    } catch (err) {
      if (!(err instanceof Aborted)) throw err;
    } finally {
      o.progress.stop();
      await o.relay.stop();
      await this.source.disconnect();
    }
  }

  /** Everything read is committed and nothing new came for stopWhenIdleMs. */
  private idle(): boolean {
    const ms = this.o.stopWhenIdleMs;
    return ms !== undefined && this.pending.count === 0 && this.inflight === undefined && Date.now() - this.lastActivity >= ms;
  }

  private accept(messages: Kafka.Message[]): void {
    const { o } = this;
    const batch: StreamRecord[] = [];
    const pending = this.pending;
    for (const m of messages) {
      const seen = this.lastSeen.get(m.partition);
      if (m.topic !== o.topic || seen === undefined || m.offset <= seen) continue;
      this.lastSeen.set(m.partition, m.offset);
      pending.last.set(m.partition, m.offset);
      const rawKey = typeof m.key === 'string' ? Buffer.from(m.key) : (m.key ?? null);
      batch.push({
        topic: m.topic, partition: m.partition, offset: m.offset, timestamp: m.timestamp,
        rawKey, key: rawKey === null ? null : rawKey.toString(), headers: m.headers, raw: m.value, value: undefined,
      });
    }
    if (!batch.length) return;
    if (pending.count === 0) pending.startedAt = Date.now();
    pending.count += batch.length;
    o.metrics.consumed.inc({ topology: o.topology, topic: o.topic }, batch.length);
    const ctx: StageContext = {
      deadLetter: (r, reason, message) => pending.deadLetters.push(deadLetterOf(r, o.dlqTopic, reason, message)),
    };
    let out = batch;
    for (const stage of o.stages) out = stage.process(out, ctx);
    for (const r of out) pending.records.push(r as StreamRecord<CopyRow>);
  }

  private async startFlush(): Promise<void> {
    await this.settle();
    await this.source.settled();
    const batch = this.pending;
    this.pending = new Pending();
    if (!batch.count) return;
    const offsets: OffsetMove[] = [...batch.last].map(([partition, last]) => ({
      partition, expected: this.committed.get(partition) ?? -1, next: last + 1,
    }));
    this.inflight = this.flush(batch, offsets);
  }

  private async flush(batch: Pending, offsets: OffsetMove[]): Promise<FlushOutcome> {
    const { o } = this;
    const end = o.metrics.flushDuration.startTimer({ topology: o.topology, table: o.table });
    let result: FlushResult;
    try {
      result = await o.sink.flush({ topic: o.topic, rows: batch.records, deadLetters: batch.deadLetters, offsets });
    } catch (error) {
      return { ok: false, error, partitions: offsets.map((m) => m.partition) };
    }
    end();
    for (const m of offsets) if (this.committed.has(m.partition)) this.committed.set(m.partition, m.next);
    o.metrics.rowsWritten.inc({ topology: o.topology, table: o.table }, result.written);
    const byReason = new Map<string, number>();
    for (const d of batch.deadLetters.concat(result.rejected)) byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
    for (const [reason, n] of byReason) o.metrics.invalid.inc({ topology: o.topology, reason }, n);
    o.progress.total += batch.count;
    o.progress.invalid += batch.deadLetters.length + result.rejected.length;
    this.source.commitForMonitoring(offsets.map((m) => ({ partition: m.partition, offset: m.next })));
    if (byReason.size) o.relay.poke();
    return { ok: true };
  }

  /** Waits for the flush in flight; if it failed, rewinds its partitions to what Postgres holds. */
  private async settle(): Promise<void> {
    const inflight = this.inflight;
    if (!inflight) return;
    const outcome = await inflight;
    this.inflight = undefined;
    if (outcome.ok) return;
    const { o } = this;
    o.metrics.flushRetries.inc({ topology: o.topology, table: o.table });
    o.log(`flush failed, rewinding partitions ${outcome.partitions.join(',')} to the offsets in Postgres: ${errorMessage(outcome.error)}`);
    await this.rewind(outcome.partitions);
  }

  private async rewind(partitions: number[]): Promise<void> {
    const { o } = this;
    const owned = partitions.filter((p) => this.committed.has(p));
    this.pending.dropPartitions(new Set(partitions));
    if (!owned.length) return;
    const stored = await retry('reading offsets from Postgres', () => loadOffsets(o.db, o.groupId, o.topic, owned), o.log, o.signal);
    for (const p of owned) {
      if (!this.committed.has(p)) continue; // revoked meanwhile
      const next = stored.get(p) ?? -1;
      await retry(`seeking ${o.topic}[${p}] to ${next}`, () => this.source.seek(p, next), o.log, o.signal);
      this.committed.set(p, next);
      this.lastSeen.set(p, next < 0 ? -1 : next - 1);
    }
  }

  private async onAssign(partitions: number[]): Promise<Map<number, number>> {
    const { o } = this;
    const stored = await retry('reading offsets from Postgres', () => loadOffsets(o.db, o.groupId, o.topic, partitions), o.log, o.signal);
    for (const p of partitions) {
      const next = stored.get(p) ?? -1;
      this.committed.set(p, next);
      this.lastSeen.set(p, next < 0 ? -1 : next - 1);
    }
    this.lastActivity = Date.now();
    o.log(`assigned ${o.topic} partitions [${partitions.join(',')}] at offsets [${partitions.map((p) => stored.get(p)).join(',')}] (from Postgres)`);
    return stored;
  }

  /** Finish the flush in flight (so its offsets land before another instance reads them), drop the rest. */
  private async onRevoke(partitions: number[]): Promise<void> {
    if (this.inflight) await this.inflight;
    this.pending.dropPartitions(new Set(partitions));
    for (const p of partitions) {
      this.committed.delete(p);
      this.lastSeen.delete(p);
    }
  }
}

import type { StageCounts } from '../dsl/executor.ts';
import type { DeadLetterReason } from '../errors.ts';
import type { PipelineMetrics } from '../metrics/registry.ts';
import type { CommitResult } from './committer.ts';
import type { FlushPlan } from './flush-plan.ts';
import type { Progress } from './progress.ts';
import type { SourceErrorReason } from './unreadable.ts';

/**
 * The one place the runtime reports to: metrics and the progress line, around the source, the stages and the
 * committer. Each call is per poll, batch or flush, never per record.
 */
export class TaskObserver {
  constructor(private readonly metrics: PipelineMetrics, private readonly progress: Progress, private readonly topology: string,
    private readonly topic: string, private readonly table: string) {}

  start(): void {
    this.progress.start();
  }

  stop(): void {
    this.progress.stop();
  }

  polled(records: number): void {
    this.metrics.pollRecords.observe({ topology: this.topology }, records);
  }

  taken(records: number): void {
    this.metrics.consumed.inc({ topology: this.topology, topic: this.topic }, records);
  }

  stages(counts: readonly StageCounts[]): void {
    const { topology } = this;
    for (const c of counts) {
      this.metrics.stageRecords.inc({ topology, stage: c.stage, outcome: 'in' }, c.in);
      this.metrics.stageRecords.inc({ topology, stage: c.stage, outcome: 'out' }, c.out);
      if (c.deadLetters) this.metrics.stageRecords.inc({ topology, stage: c.stage, outcome: 'dead-letter' }, c.deadLetters);
    }
  }

  late(stage: string, records: number): void {
    this.metrics.lateRecords.inc({ topology: this.topology, stage }, records);
    this.progress.late += records;
  }

  sourceError(topic: string, reason: SourceErrorReason): void {
    this.metrics.sourceErrors.inc({ topology: this.topology, topic, reason });
  }

  lag(byPartition: ReadonlyMap<number, number>): void {
    let total = 0;
    for (const [p, lag] of byPartition) {
      this.metrics.consumerLag.set({ topic: this.topic, partition: String(p) }, lag);
      total += lag;
    }
    this.progress.lag = total;
  }

  /** The loop stopped polling to wait (for a flush, or the stage workers), or went on. */
  paused(paused: boolean): void {
    this.metrics.paused.set({ topology: this.topology }, paused ? 1 : 0);
  }

  /** Times one flush's commit: call the result when it succeeded; it returns the seconds. */
  flushTimer(): () => number {
    return this.metrics.flushDuration.startTimer({ topology: this.topology, table: this.table });
  }

  /** A flush committed: rows, dead letters by reason, progress. Returns whether any dead letter was committed. */
  flushed(plan: FlushPlan, result: CommitResult, seconds: number): boolean {
    const { metrics, progress, topology } = this;
    metrics.noteFlush({ at: Date.now(), topology, records: plan.records, rows: result.written, seconds });
    metrics.rowsWritten.inc({ topology, table: this.table }, result.written);
    if (result.commitSeconds !== undefined) metrics.commitDuration.observe({ topology }, result.commitSeconds);
    metrics.lastFlush.set({ topology }, Date.now() / 1000);
    const byReason = new Map<DeadLetterReason, number>();
    for (const d of plan.deadLetters.concat(result.rejected)) byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
    for (const [reason, n] of byReason) metrics.invalid.inc({ topology, reason }, n);
    progress.total += plan.records;
    progress.invalid += plan.deadLetters.length + result.rejected.length;
    return byReason.size > 0;
  }

  /** The group assigned or revoked these partitions; `owned` is how many this task owns now. */
  rebalanced(kind: 'assign' | 'revoke', partitions: readonly number[], owned: number): void {
    const { metrics, topology } = this;
    metrics.rebalances.inc({ topology, kind });
    metrics.assignedPartitions.set({ topology, topic: this.topic }, owned);
    // A revoked partition's lag is another process's now; and a retry counter that exists at 0 lets increase() see the first retry.
    if (kind === 'revoke') for (const p of partitions) metrics.consumerLag.remove({ topic: this.topic, partition: String(p) });
    else metrics.flushRetries.inc({ topology, table: this.table }, 0);
  }

  flushFailed(): void {
    this.metrics.flushRetries.inc({ topology: this.topology, table: this.table });
  }
}

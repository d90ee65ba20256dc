import { PlanExecutor } from '../dsl/executor.ts';
import { changelogTopic, type PostgresAppendSinkSpec, type TopicSinkSpec, type TopologyPlan } from '../dsl/plan.ts';
import { errorMessage, PipelineError } from '../errors.ts';
import { ensureTopics } from '../kafka/admin.ts';
import type { KafkaConnection } from '../kafka/client-config.ts';
import { KafkaProducer } from '../kafka/producer.ts';
import type { PipelineMetrics } from '../metrics/registry.ts';
import { tableName, withSetupLock, type Database } from '../postgres/db.ts';
import { ensureDeadLetterTable, type DeadLetter, type DeadLetterRelay } from '../postgres/dead-letters.ts';
import { inFlushTransaction } from '../postgres/flush-transaction.ts';
import { ensureOffsetsTable, loadOffsets, type OffsetMove } from '../postgres/offsets.ts';
import { deadLetterOf, type StageContext, type StreamRecord } from '../records.ts';
import { filterSegment, type CopySegment } from '../sinks/copy-segment.ts';
import { PostgresCopySink } from '../sinks/postgres-copy.ts';
import { PostgresWindowSink } from '../sinks/postgres-windows.ts';
import { KafkaSource, type PartitionError } from '../sources/kafka-source.ts';
import { batchSize, recordOf, selectBatch, type PackedBatch } from '../sources/packed-batch.ts';
import { readChangelog } from '../state/changelog.ts';
import type { ChangelogEntry } from '../state/store.ts';
import { copyTargets, runBatch, type CopyTarget } from './batch.ts';
import type { Progress } from './progress.ts';
import { Aborted, retry, sleep, throttledLog } from './retry.ts';
import { StageWorkers, type PlanRef, type WorkerCopyOutput, type WorkerResult } from './stage-workers.ts';
import { sourceErrorReason, UnreadablePartitions } from './unreadable.ts';
import { registryGiveUpMs } from '../schema/registry.ts';

/**
 * Records a poll takes at most by default. Kafka Streams' max.poll.records is 1,000; with packed reads a poll is cheap,
 * and fewer polls mean fewer batches to the stage workers and back (`npm run bench -- ingest`, README: Performance).
 */
export const MAX_POLL_RECORDS = 5000;

/** The one batching policy: a flush happens at maxRecords or after maxWaitMs, whichever comes first. */
export interface BatchPolicy {
  maxRecords: number;
  maxWaitMs: number;
}

export interface StreamTaskOptions {
  topology: string;
  conn: KafkaConnection;
  db: Database;
  plan: TopologyPlan;
  groupId: string;
  dlqTopic: string;
  relay: DeadLetterRelay;
  batch: BatchPolicy;
  /** Records one poll takes at most (Kafka Streams' max.poll.records); MAX_POLL_RECORDS when not given. */
  maxPollRecords?: number;
  /**
   * Flushes written at the same time, each on its own Postgres connection for a disjoint set of partitions
   * (partition % lanes), each with its own offsets: the database backend is the bottleneck at one core, and two
   * COPY streams use the second. Exactly-once holds per partition, so it holds for any number of lanes.
   */
  lanes?: number;
  /**
   * Worker threads that run the stages and COPY encoding (0: all on the main thread), for plans without state
   * stores whose sinks are Postgres tables; the plan is rebuilt in each worker from planRef.
   */
  stageThreads?: number;
  planRef?: PlanRef;
  /** false: no record is read straight into its row (CopyTarget.direct); all take the stages. Default true. */
  directJson?: boolean;
  stopWhenIdleMs?: number;
  /** Once aborted: read on to the high watermarks of that moment, then stop as at `signal` (TopologyContext.drain). */
  drain?: AbortSignal;
  metrics: PipelineMetrics;
  progress: Progress;
  log: (line: string) => void;
  signal: AbortSignal;
}

class Pending {
  /** What reached each sink other than a Postgres append sink, by sink name. */
  outputs = new Map<string, StreamRecord[]>();
  /** Rows for each Postgres append sink, COPY text encoded a polled batch at a time. */
  copies = new Map<string, CopySegment[]>();
  deadLetters: DeadLetter[] = [];
  /** Highest offset taken per partition (whatever became of the record). */
  last = new Map<number, number>();
  count = 0;
  startedAt = Date.now();

  dropPartitions(partitions: Set<number>): void {
    if (![...this.last.keys()].some((p) => partitions.has(p))) return;
    for (const [name, list] of this.outputs) this.outputs.set(name, list.filter((r) => !partitions.has(r.partition)));
    for (const [name, segments] of this.copies) {
      this.copies.set(name, segments.map((s) => filterSegment(s, (r) => !partitions.has(r.partition))).filter((s) => s !== undefined));
    }
    this.deadLetters = this.deadLetters.filter((d) => !partitions.has(d.sourcePartition));
    for (const p of partitions) this.last.delete(p);
    if (!this.last.size) this.count = 0;
  }
}

interface Flush {
  pending: Pending;
  offsets: OffsetMove[];
  changelog: { topic: string; partition: number; entries: ChangelogEntry[] }[];
  closedThrough: Map<number, number>;
}

/** A set of partitions flushed one transaction at a time: its pending batch and the flush in flight. */
class Lane {
  pending = new Pending();
  inflight: Promise<FlushOutcome> | undefined;
  /** The flush in flight is still being written (its promise has not settled). */
  writing = false;
}

type FlushOutcome = { ok: true } | { ok: false; error: unknown; partitions: number[] };

/**
 * The runtime of one topology: it polls batches from the source topic, runs the plan's stages, and commits each
 * flush as one unit: (1) changelog entries of the state stores and records for topic sinks are produced and
 * acknowledged, (2) one Postgres transaction moves the source offsets (fenced), writes every Postgres sink and the
 * dead letters, and commits. While one flush is written the next batch is consumed and processed, up to twice the
 * batch size; at most one flush is in flight a lane, and that bound is the backpressure (past it the loop stops
 * polling until the flush completes).
 * On a failed flush the affected partitions are rewound to the offsets in Postgres, the truth, and their state is
 * restored from the changelog as of those offsets, so whatever the failed transaction did, nothing is lost or
 * counted twice.
 */
export class StreamTask {
  private readonly source: KafkaSource;
  private readonly executor: PlanExecutor;
  private readonly copySinks = new Map<string, { spec: PostgresAppendSinkSpec; sink: PostgresCopySink; label: string }>();
  private readonly copyTargets: Map<string, CopyTarget>;
  private workers: StageWorkers | undefined;
  /** Batches sent to the stage workers whose results are not yet in the pending batches; applied in order. */
  private processing: Promise<void>[] = [];
  private applied: Promise<void> = Promise.resolve();
  private readonly windowSinks = new Map<string, PostgresWindowSink>();
  private readonly topicSinks = new Map<string, TopicSinkSpec>();
  private producer: KafkaProducer | undefined;
  private readonly committed = new Map<number, number>();
  private readonly lastSeen = new Map<number, number>();
  /** Scratch for take(): the indices of a poll's messages taken, by lane, and how many. */
  private readonly taken: Uint32Array[] = [];
  private readonly takenCount: number[] = [];
  private readonly lanes: Lane[];
  /** Partitions held at a batch that could not be read: nothing at or after it is taken. */
  private readonly unreadable = new UnreadablePartitions();
  private readonly unreadableLog: (line: string) => void;
  private lastActivity = Date.now();
  private connectedAt = 0;
  private assignedOnce = false;
  /** Idle checks that found a partition behind its high watermark with nothing held: one more idle period is given. */
  private behindChecks = 0;
  private leftBehind: string[] = [];
  /** Where each partition's draining ends (its watermarks when the drain began). */
  private drainTo: Map<number, { low: number; high: number }> | undefined;
  private readonly ctx: StageContext;
  private connected = false;

  /** Connected, and no assigned partition is held at a batch it cannot read (/readyz). */
  get ready(): boolean {
    return this.connected && this.unreadable.size === 0;
  }

  constructor(private readonly o: StreamTaskOptions) {
    this.executor = new PlanExecutor(o.plan);
    this.lanes = Array.from({ length: Math.max(1, o.lanes ?? 1) }, () => new Lane());
    this.copyTargets = copyTargets(this.executor, { directJson: o.directJson });
    for (const s of this.executor.sinks) {
      if (s.kind === 'postgres') {
        this.copySinks.set(s.name, {
          spec: s, label: s.table,
          sink: new PostgresCopySink({ table: tableName(s.table), columns: s.columns, dlqTopic: o.dlqTopic }),
        });
      } else if (s.kind === 'postgres-windows') {
        this.windowSinks.set(s.name, new PostgresWindowSink(s, o.plan.applicationId, o.plan.topic));
      } else {
        this.topicSinks.set(s.name, s);
      }
    }
    this.ctx = {
      deadLetter: (r, reason, message) => this.laneOf(r.partition).pending.deadLetters.push(deadLetterOf(r, o.dlqTopic, reason, message)),
      late: (_r, stage) => o.metrics.lateRecords.inc({ topology: o.topology, stage }),
    };
    this.source = new KafkaSource(o.conn, o.plan.topic, o.groupId, {
      onAssign: (partitions) => this.onAssign(partitions),
      onRevoke: (partitions) => this.onRevoke(partitions),
    });
    this.source.onStats = (stats) => {
      const parts = stats.topics?.[o.plan.topic]?.partitions ?? {};
      let lag = 0;
      for (const [p, s] of Object.entries(parts)) {
        if (p === '-1' || s.consumer_lag < 0) continue;
        o.metrics.consumerLag.set({ topic: o.plan.topic, partition: p }, s.consumer_lag);
        lag += s.consumer_lag;
      }
      o.progress.lag = lag;
    };
    const kafkaLog = throttledLog(o.log);
    this.source.onError = (err) => kafkaLog(`kafka: ${errorMessage(err)}`);
    this.unreadableLog = throttledLog(o.log);
    if ((o.stageThreads ?? 0) > 0) {
      if (!o.planRef) throw new Error('stage threads need a planRef to build the plan in each worker');
      if (this.executor.stateful.length || this.copyTargets.size !== this.executor.sinks.length) {
        throw new Error('stage threads run plans without state stores whose sinks are all Postgres tables');
      }
    }
  }

  /** Creates what the plan writes to: window tables, changelog topics (compacted, one partition per source partition). */
  private async prepare(): Promise<void> {
    const { o } = this;
    await ensureOffsetsTable(o.db);
    await ensureDeadLetterTable(o.db);
    for (const { spec } of this.copySinks.values()) {
      await withSetupLock(o.db, async (t) => {
        await t.none(spec.createSql.replace('$TABLE', tableName(spec.table)));
      });
    }
    const needsProducer = this.executor.stateful.length > 0 || this.topicSinks.size > 0;
    if (!needsProducer && !this.windowSinks.size) return;
    const producer = new KafkaProducer(o.conn, { 'client.id': `${o.plan.applicationId}-task` });
    await producer.connect();
    const partitions = await producer.partitionCount(o.plan.topic);
    if (!partitions) throw new Error(`topic ${o.plan.topic} has no partitions`);
    await ensureTopics(o.conn, [
      ...this.executor.stateful.map((s) => ({ name: changelogTopic(o.plan.applicationId, s.storeName), partitions, config: { 'cleanup.policy': 'compact' } })),
      ...[...this.topicSinks.values()].map((s) => ({ name: s.topic, partitions })),
    ]);
    for (const sink of this.windowSinks.values()) await sink.init(o.db, partitions);
    if (needsProducer) this.producer = producer;
    else await producer.disconnect();
  }

  async run(): Promise<void> {
    const { o } = this;
    try {
      await retry('preparing state and sinks', () => this.prepare(), o.log, o.signal);
      await retry('connecting to Kafka', () => this.source.connect(), o.log, o.signal);
    } catch (err) {
      if (err instanceof Aborted) return;
      throw err;
    }
    if ((o.stageThreads ?? 0) > 0) this.workers = new StageWorkers(o.stageThreads!, o.planRef!, o.directJson);
    this.connected = true;
    this.connectedAt = this.lastActivity = Date.now();
    o.relay.start();
    o.progress.start();
    try {
      while (!o.signal.aborted) {
        let batch: PackedBatch | undefined;
        let errors: PartitionError[] = [];
        try {
          if (this.unreadable.size) await this.retryUnreadable();
          const polled = await this.source.poll(o.maxPollRecords ?? MAX_POLL_RECORDS);
          if (batchSize(polled.batch)) {
            batch = polled.batch;
            o.metrics.pollRecords.observe({ topology: o.topology }, batchSize(batch));
          }
          if (polled.straddled && batch) {
            await this.refetch(batch);
            batch = undefined;
          } else {
            errors = polled.errors;
          }
        } catch (err) {
          o.log(`poll: ${errorMessage(err)}`);
          await sleep(500, o.signal);
        }
        if (batch) {
          this.lastActivity = Date.now();
          await this.accept(batch);
        }
        if (errors.length) await this.onPartitionErrors(errors, !batch);
        if (!batch && this.lanes.every((l) => l.pending.count === 0)) {
          for (const lane of this.lanes) await this.settle(lane); // nothing to overlap the flushes in flight with
        }
        for (const lane of this.lanes) {
          const p = lane.pending;
          const due = p.count >= o.batch.maxRecords || (p.count > 0 && Date.now() - p.startedAt >= o.batch.maxWaitMs);
          // While the lane's last flush is still being written, reading goes on into the next batch, up to twice its
          // size: waiting for that flush right away left Kafka and the stages idle ~a third of each flush.
          if (due && !(lane.writing && p.count < 2 * o.batch.maxRecords)) await this.startFlush(lane);
        }
        if (this.idle() && await this.caughtUp()) break;
        if (o.drain?.aborted && await this.drained()) break;
      }
      for (const lane of this.lanes) await this.settle(lane);
      for (const lane of this.lanes) if (lane.pending.count) await this.startFlush(lane);
      for (const lane of this.lanes) await this.settle(lane);
    } catch (err) {
      if (!(err instanceof Aborted)) throw err;
    } finally {
      this.connected = false;
      o.progress.stop();
      await o.relay.stop();
      await this.source.disconnect();
      await this.producer?.disconnect();
      await this.workers?.close();
    }
    if (this.leftBehind.length) {
      throw new PipelineError('SOURCE_BEHIND', `stopped when idle with records left behind in ${o.plan.topic}: ${this.leftBehind.join('; ')}`);
    }
  }

  /**
   * Errors of partitions in a poll, after its messages were taken. A batch that could not be read holds its
   * partition there (UnreadablePartitions); other errors are logged. Every one is counted by reason.
   */
  private async onPartitionErrors(errors: PartitionError[], nothingRead: boolean): Promise<void> {
    const { o } = this;
    for (const e of errors) {
      const seen = e.topic === o.plan.topic && e.partition >= 0 ? this.lastSeen.get(e.partition) : undefined;
      const held = seen === undefined ? undefined : this.unreadable.hold(e, seen + 1);
      o.metrics.sourceErrors.inc({ topology: o.topology, topic: e.topic || o.plan.topic, reason: held?.reason ?? sourceErrorReason(e.code) });
      if (!held) {
        this.unreadableLog(`kafka: ${e.topic ? `${e.topic}[${e.partition}]: ` : ''}${e.message}`);
        continue;
      }
      this.source.pause([e.partition]);
      this.unreadableLog(`cannot read ${o.plan.topic}[${e.partition}] at offset ${held.offset} (${held.reason}): ${e.message}; `
        + `nothing from there on is taken, trying again every ${this.unreadable.retryMs / 1000} s`);
    }
    if (nothingRead && !this.unreadable.size) await sleep(500, o.signal);
  }

  /** Seeks each held partition whose time has come back to its batch and resumes it, to read it again. */
  private async retryUnreadable(): Promise<void> {
    for (const [p, u] of this.unreadable.due()) {
      if (!this.lastSeen.has(p)) continue;
      await retry(`seeking ${this.o.plan.topic}[${p}] to ${u.offset}`, () => this.source.seek(p, u.offset), this.o.log, this.o.signal);
      this.source.resume([p]);
    }
  }

  /**
   * Whether a drain has taken every record below the high watermarks it began with (or below where a partition is
   * held). The flushes after the loop then commit them.
   */
  private async drained(): Promise<boolean> {
    if (!this.drainTo) {
      const to = new Map<number, { low: number; high: number }>();
      for (const p of this.lastSeen.keys()) {
        try {
          to.set(p, await this.source.watermarks(p));
        } catch { /* not known: the drain's bound stops it */ }
      }
      this.drainTo = to;
      this.o.log(`draining to offsets ${[...to].map(([p, w]) => `${p}:${w.high}`).join(', ') || '(no partitions)'}`);
    }
    for (const [p, w] of this.drainTo) {
      const seen = this.lastSeen.get(p);
      if (seen === undefined || this.unreadable.get(p)) continue; // given up meanwhile, or held
      if (Math.max(seen + 1, w.low) < w.high) return false;
    }
    return true;
  }

  /**
   * Whether an idle instance may stop: every assigned partition is committed up to its high watermark. A partition
   * held at a batch it cannot read, or still behind after one more idle period, is left behind: the run then
   * ends with an error naming it, never with exit 0.
   */
  private async caughtUp(): Promise<boolean> {
    const behind: string[] = [];
    for (const p of [...this.committed.keys()].sort((a, b) => a - b)) {
      const held = this.unreadable.get(p);
      if (held) {
        behind.push(`partition ${p} at offset ${held.offset} (${held.reason}: ${held.message})`);
        continue;
      }
      let w: { low: number; high: number };
      try {
        w = await this.source.watermarks(p);
      } catch (err) {
        behind.push(`partition ${p}: its high watermark cannot be read (${errorMessage(err)})`);
        continue;
      }
      const next = Math.max(this.committed.get(p) ?? -1, w.low);
      if (next < w.high) behind.push(`partition ${p} at offset ${next} of ${w.high}`);
    }
    if (!behind.length) return true;
    if (this.unreadable.size || ++this.behindChecks > 1) {
      this.leftBehind = behind;
      return true;
    }
    this.lastActivity = Date.now(); // records may still be on their way: one more idle period
    return false;
  }

  /**
   * A poll that straddled an assignment change is not taken: its messages may mix offsets fetched before the change
   * with offsets after it, and taking a later offset first would skip the earlier ones for good. Every owned
   * partition in it is sought back to the first offset not yet taken, so librdkafka delivers them again in order.
   */
  private async refetch(batch: PackedBatch): Promise<void> {
    const { o } = this;
    await this.source.settled();
    const partitions = new Set(batch.partitions);
    o.log(`a poll straddled a rebalance: reading partitions [${[...partitions].join(',')}] again from the first offset not taken`);
    for (const p of partitions) {
      const seen = this.lastSeen.get(p);
      if (seen === undefined) continue; // not ours (any more)
      await retry(`seeking ${o.plan.topic}[${p}] to ${seen + 1}`, () => this.source.seek(p, seen + 1), o.log, o.signal);
    }
  }

  /**
   * Everything read is committed and nothing new came for stopWhenIdleMs. Joining the group can take longer than
   * that (the group waits for a killed member's session to time out), so the wait starts at the first assignment,
   * or 60 s after connecting for an instance that gets no partitions.
   */
  private idle(): boolean {
    const ms = this.o.stopWhenIdleMs;
    if (ms === undefined || this.lanes.some((l) => l.pending.count > 0 || l.inflight !== undefined)) return false;
    if (!this.assignedOnce && Date.now() - this.connectedAt < 60_000) return false;
    return Date.now() - this.lastActivity >= ms;
  }

  private async accept(batch: PackedBatch): Promise<void> {
    const { o } = this;
    if (batch.topic !== o.plan.topic) return;
    const n = batchSize(batch);
    if (this.executor.needsPrepare && !this.workers) {
      const raw = Array.from({ length: n }, (_, i) => recordOf(batch, i));
      await retry('preparing the batch', () => this.executor.prepare(raw), o.log, o.signal, { giveUpAfterMs: registryGiveUpMs() });
    }
    // Only now, after any wait, take what is still ours and new: a rebalance or a rewind may have come meanwhile.
    const count = this.take(batch);
    if (!count) return;
    o.metrics.consumed.inc({ topology: o.topology, topic: o.plan.topic }, count);
    for (let lane = 0; lane < this.lanes.length; lane++) {
      const k = this.takenCount[lane];
      if (!k) continue;
      // Usually the whole poll goes to one lane as it is; a subset is copied out.
      const part = k === n ? batch : selectBatch(batch, this.taken[lane].subarray(0, k));
      if (this.workers) this.send(part);
      else this.apply(part);
    }
    // Backpressure on the workers: two batches each at most, in flight or waiting.
    while (this.workers && this.processing.length > 2 * this.workers.threads) await this.processing.shift();
  }

  /**
   * Which messages of a poll are ours and new (a rebalance or a rewind may have come while it ran): their indices by
   * lane go into this.taken, and they join their lane's pending batch. A poll holds runs of one partition's messages,
   * so the partition maps are read and written once a run: a per-message offset stored in a Map, or in a variable a
   * closure shares, was a new heap number each time (~30 bytes a record on the main thread, by a sampling heap profile).
   */
  private take(batch: PackedBatch): number {
    const n = batchSize(batch);
    const lanes = this.lanes.length;
    for (let lane = 0; lane < lanes; lane++) {
      if (!(this.taken[lane]?.length >= n)) this.taken[lane] = new Uint32Array(Math.max(n, 1024));
      this.takenCount[lane] = 0;
    }
    let count = 0;
    for (let i = 0, j = 0; i < n; i = j) {
      const partition = batch.partitions[i];
      for (j = i + 1; j < n && batch.partitions[j] === partition; ) j++;
      let seen = this.lastSeen.get(partition);
      if (seen === undefined) continue; // not ours (any more)
      const limit = this.unreadable.size ? this.unreadable.limit(partition) : Infinity;
      const lane = partition % lanes;
      const pending = this.lanes[lane].pending;
      const out = this.taken[lane];
      const before = this.takenCount[lane];
      let k = before;
      for (let m = i; m < j; m++) {
        const offset = batch.offsets[m];
        if (offset <= seen || offset >= limit) continue;
        seen = offset;
        if (pending.count === 0) pending.startedAt = Date.now();
        pending.count++;
        out[k++] = m;
      }
      if (k === before) continue;
      this.lastSeen.set(partition, seen);
      pending.last.set(partition, seen);
      this.takenCount[lane] = k;
      count += k - before;
    }
    return count;
  }

  /** Runs a batch on the main thread; its rows and records join the pending batch of their lane. */
  private apply(batch: PackedBatch): void {
    const out = runBatch(this.executor, batch, this.ctx, this.copyTargets);
    const pending = this.laneOf(batch.partitions[0]).pending;
    for (const [name, rows] of out.copy) this.addRows(pending, name, rows, batch);
    for (const [name, records] of out.other) {
      for (const r of records) {
        const p = this.laneOf(r.partition).pending;
        let list = p.outputs.get(name);
        if (!list) p.outputs.set(name, (list = []));
        list.push(r);
      }
    }
  }

  /** A batch's rows for a sink, as a segment of the pending batch; a row's record is made again from the batch if needed. */
  private addRows(pending: Pending, name: string, rows: Omit<WorkerCopyOutput, 'name'>, batch: PackedBatch): void {
    if (!rows.src.length) return;
    let list = pending.copies.get(name);
    if (!list) pending.copies.set(name, (list = []));
    list.push({
      text: Buffer.from(rows.text.buffer, rows.text.byteOffset, rows.text.byteLength), ends: rows.ends, keyHashes: rows.keyHashes, keyAt: rows.keyAt,
      record: (i) => recordOf(batch, rows.src[i]),
    });
  }

  /** Sends one lane's batch to the stage workers; its result joins the lane's pending batch after every earlier one. */
  private send(batch: PackedBatch): void {
    const result = this.workers!.run(batch);
    result.catch(() => undefined); // seen through the chain below
    const done = this.applied.then(() => result).then((r) => this.applyWorkerResult(r));
    done.catch(() => undefined); // a worker's failure is thrown to whoever waits for the batch: the run loop
    this.applied = done;
    this.processing.push(done);
  }

  /** The rows and dead letters of a batch the workers ran; its records are looked at again only if rejected. */
  private applyWorkerResult(r: WorkerResult): void {
    const { o } = this;
    const batch = r.batch;
    for (const d of r.deadLetters) this.ctx.deadLetter(recordOf(batch, d.src), d.reason, d.message);
    for (const [stage, count] of r.late) o.metrics.lateRecords.inc({ topology: o.topology, stage }, count);
    const pending = this.laneOf(batch.partitions[0]).pending;
    for (const c of r.copy) this.addRows(pending, c.name, c, batch);
  }

  /** Waits until every batch sent to the stage workers is in the pending batches (a worker's failure is thrown). */
  private async drain(): Promise<void> {
    if (!this.processing.length) return;
    const all = this.processing;
    this.processing = [];
    for (const p of all) await p;
  }

  private laneOf(partition: number): Lane {
    return this.lanes[partition % this.lanes.length];
  }

  private async startFlush(lane: Lane): Promise<void> {
    await this.drain();
    await this.settle(lane);
    await this.source.settled();
    const pending = lane.pending;
    lane.pending = new Pending();
    if (!pending.count) return;
    const offsets: OffsetMove[] = [...pending.last].map(([partition, last]) => ({
      partition, expected: this.committed.get(partition) ?? -1, next: last + 1,
    }));
    // The state as of the end of this batch: cut now, since the next batch is processed while this one is written.
    const changelog: Flush['changelog'] = [];
    const closedThrough = new Map<number, number>();
    for (const s of this.executor.stateful) {
      const topic = changelogTopic(this.o.plan.applicationId, s.storeName);
      for (const m of offsets) {
        const entries = s.cut(m.partition, m.next);
        if (entries.length) changelog.push({ topic, partition: m.partition, entries });
        closedThrough.set(m.partition, Math.min(closedThrough.get(m.partition) ?? Infinity, s.closedThrough(m.partition)));
      }
    }
    lane.writing = true;
    lane.inflight = this.flush({ pending, offsets, changelog, closedThrough }).finally(() => { lane.writing = false; });
  }

  private async flush(f: Flush): Promise<FlushOutcome> {
    const { o } = this;
    const end = o.metrics.flushDuration.startTimer({ topology: o.topology, table: this.tableLabel() });
    let rejected: DeadLetter[] = [];
    let written = 0;
    try {
      // (1) Changelog and topic sinks first, acknowledged: the Postgres commit below is what makes them count.
      if (this.producer) {
        for (const c of f.changelog) {
          for (const e of c.entries) {
            await this.producer.produce({ topic: c.topic, partition: c.partition, key: Buffer.from(e.key), value: e.value === null ? null : Buffer.from(JSON.stringify(e.value)) });
          }
        }
        for (const [name, spec] of this.topicSinks) {
          for (const r of f.pending.outputs.get(name) ?? []) {
            const m = spec.serialize(r.value, r.key);
            await this.producer.produce({ topic: spec.topic, key: m.key, value: m.value, headers: r.headers });
          }
        }
        await this.producer.flush();
      }
      // (2) One transaction: fenced offsets, every Postgres sink, dead letters.
      const result = await inFlushTransaction(o.db, o.groupId, o.plan.topic, f.offsets, f.pending.deadLetters, async (conn, rejectedRows) => {
        let n = 0;
        for (const [name, { sink }] of this.copySinks) n += await sink.write(conn, f.pending.copies.get(name) ?? [], rejectedRows);
        for (const [name, sink] of this.windowSinks) n += await sink.write(conn, f.pending.outputs.get(name) ?? [], f.closedThrough);
        return n;
      });
      written = result.written;
      rejected = result.rejected;
    } catch (error) {
      return { ok: false, error, partitions: f.offsets.map((m) => m.partition) };
    }
    end();
    for (const m of f.offsets) if (this.committed.has(m.partition)) this.committed.set(m.partition, m.next);
    o.metrics.rowsWritten.inc({ topology: o.topology, table: this.tableLabel() }, written);
    const byReason = new Map<string, number>();
    for (const d of f.pending.deadLetters.concat(rejected)) byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
    for (const [reason, n] of byReason) o.metrics.invalid.inc({ topology: o.topology, reason }, n);
    o.progress.total += f.pending.count;
    o.progress.invalid += f.pending.deadLetters.length + rejected.length;
    this.source.commitForMonitoring(f.offsets.map((m) => ({ partition: m.partition, offset: m.next })));
    if (byReason.size) o.relay.poke();
    return { ok: true };
  }

  private tableLabel(): string {
    return [...this.copySinks.values()].map((s) => s.label).concat([...this.windowSinks.values()].map((s) => s.table.replace(/"/g, ''))).join(',') || 'none';
  }

  /** Waits for the lane's flush in flight; if it failed, rewinds its partitions to what Postgres holds. */
  private async settle(lane: Lane): Promise<void> {
    const inflight = lane.inflight;
    if (!inflight) return;
    const outcome = await inflight;
    if (lane.inflight === inflight) lane.inflight = undefined;
    if (outcome.ok) return;
    const { o } = this;
    o.metrics.flushRetries.inc({ topology: o.topology, table: this.tableLabel() });
    o.log(`flush failed, rewinding partitions ${outcome.partitions.join(',')} to the offsets in Postgres: ${errorMessage(outcome.error)}`);
    await this.rewind(outcome.partitions);
  }

  private async rewind(partitions: number[]): Promise<void> {
    const { o } = this;
    const owned = partitions.filter((p) => this.committed.has(p));
    await this.drain();
    for (const lane of this.lanes) lane.pending.dropPartitions(new Set(partitions));
    // Read again from what Postgres holds: a batch that could not be read is met again on the way.
    this.source.resume(this.unreadable.release(owned));
    if (!owned.length) return;
    const stored = await retry('reading offsets from Postgres', () => loadOffsets(o.db, o.groupId, o.plan.topic, owned), o.log, o.signal);
    await this.restoreState(owned, stored);
    for (const p of owned) {
      if (!this.committed.has(p)) continue; // revoked meanwhile
      const next = stored.get(p) ?? -1;
      await retry(`seeking ${o.plan.topic}[${p}] to ${next}`, () => this.source.seek(p, next), o.log, o.signal);
      this.committed.set(p, next);
      this.lastSeen.set(p, next < 0 ? -1 : next - 1);
    }
  }

  /** State stores of the partitions as of the offsets Postgres holds, from their changelogs. */
  private async restoreState(partitions: number[], offsets: Map<number, number>): Promise<void> {
    const { o } = this;
    for (const s of this.executor.stateful) {
      const topic = changelogTopic(o.plan.applicationId, s.storeName);
      for (const p of partitions) {
        const entries = await retry(`restoring ${topic}[${p}]`, () => readChangelog(o.conn, topic, p), o.log, o.signal);
        s.restore(p, entries, offsets.get(p) ?? -1);
      }
    }
  }

  private async onAssign(partitions: number[]): Promise<Map<number, number>> {
    const { o } = this;
    const stored = await retry('reading offsets from Postgres', () => loadOffsets(o.db, o.groupId, o.plan.topic, partitions), o.log, o.signal);
    await this.restoreState(partitions, stored);
    for (const p of partitions) {
      const next = stored.get(p) ?? -1;
      this.committed.set(p, next);
      this.lastSeen.set(p, next < 0 ? -1 : next - 1);
    }
    this.lastActivity = Date.now();
    this.assignedOnce = true;
    o.log(`assigned ${o.plan.topic} partitions [${partitions.join(',')}] at offsets [${partitions.map((p) => stored.get(p)).join(',')}] (from Postgres)`);
    return stored;
  }

  /** Finish the flush in flight (so its offsets land before another instance reads them), drop the rest. */
  private async onRevoke(partitions: number[]): Promise<void> {
    if (this.lanes.some((l) => l.writing)) this.o.log(`partitions [${partitions.join(',')}] revoked with a flush in flight: finishing it before giving them up`);
    for (const lane of this.lanes) if (lane.inflight) await lane.inflight;
    await this.drain();
    for (const lane of this.lanes) lane.pending.dropPartitions(new Set(partitions));
    this.unreadable.release(partitions);
    for (const p of partitions) {
      this.committed.delete(p);
      this.lastSeen.delete(p);
      for (const s of this.executor.stateful) s.drop(p);
    }
  }
}

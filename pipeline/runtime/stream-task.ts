import { PlanExecutor } from '../dsl/executor.ts';
import type { TopologyPlan } from '../dsl/plan.ts';
import { AccessError, errorMessage, PipelineError } from '../errors.ts';
import { deadLetterOf } from '../records.ts';
import type { Sink } from '../sinks/sink.ts';
import { batchSize, recordOf, selectBatch, type PackedBatch } from '../sources/packed-batch.ts';
import type { PartitionError, Source, SourceFactory } from '../sources/source.ts';
import type { Committer } from './committer.ts';
import { Dispatcher } from './dispatch.ts';
import { PendingBatch, prepareFlush, type FlushPlan } from './flush-plan.ts';
import { PartitionLedger } from './ledger.ts';
import type { TaskObserver } from './observer.ts';
import { Aborted, retry, sleep, throttledLog } from './retry.ts';
import type { PlanRef } from './stage-workers.ts';
import { sourceErrorReason, UnreadablePartitions } from './unreadable.ts';
import { registryGiveUpMs } from '../schema/registry.ts';
import type { GlobalTableFeed } from '../kafka/global-tables.ts';
import type { GlobalTable } from '../state/global-table.ts';
import { TableCatchUp } from './table-catch-up.ts';

/**
 * Records a poll takes at most by default (Kafka Streams' max.poll.records is 1,000): with packed reads a poll is
 * cheap, and fewer polls mean fewer batches to the stage workers and back.
 */
export const MAX_POLL_RECORDS = 5000;

/**
 * The one batching policy: a flush happens at maxRecords or after maxWaitMs, whichever comes first. While a lane's
 * flush is written, reading goes on into its next batch, up to readAhead records past maxRecords (default
 * maxRecords: twice the batch): waiting for the flush right away left the source and the stages idle for part of it.
 * With readAhead given, polls are cut to fit, so a flush holds at most maxRecords + readAhead records.
 */
export interface BatchPolicy {
  maxRecords: number;
  maxWaitMs: number;
  readAhead?: number;
}

/** Where dead letters committed with a flush go on to their topic (postgres/dead-letters.ts: DeadLetterRelay). */
export interface DeadLetterOutlet {
  start(): void;
  /** New dead letters were committed. */
  poke(): void;
  stop(): Promise<void>;
}

export interface StreamTaskOptions {
  topology: string;
  /** The plan, optimised (dsl/optimize.ts) or not. */
  plan: TopologyPlan;
  source: SourceFactory;
  committer: Committer;
  /** The plan's sinks, as the committer writes them. */
  sinks: readonly Sink[];
  dlqTopic: string;
  deadLetters?: DeadLetterOutlet;
  batch: BatchPolicy;
  /** Records one poll takes at most (Kafka Streams' max.poll.records); MAX_POLL_RECORDS when not given. */
  maxPollRecords?: number;
  /**
   * Flushes written at the same time, each on its own connection for a disjoint set of partitions (partition %
   * lanes), each with its own offsets: when the database is the bottleneck, two COPY streams use a second core.
   * Exactly-once holds per partition, so it holds for any number of lanes.
   */
  lanes?: number;
  /** Worker threads that run the stages and COPY encoding (0: all on the main thread); see Dispatcher. */
  stageThreads?: number;
  planRef?: PlanRef;
  directJson?: boolean;
  /** true: every row goes to Postgres as COPY text, also those binary COPY could carry (see Dispatcher.useBinaryCopy). */
  textCopy?: boolean;
  /** What fills the plan's global tables (kafka/global-tables.ts), given them: read whole before any record is processed. */
  globalTables?: (tables: ReadonlyMap<string, GlobalTable>) => GlobalTableFeed;
  stopWhenIdleMs?: number;
  /** Once aborted: read on to the high watermarks of that moment, then stop as at `signal` (TopologyContext.drain). */
  drain?: AbortSignal;
  observer: TaskObserver;
  log: (line: string) => void;
  signal: AbortSignal;
}

/** A set of partitions flushed one transaction at a time: its pending batch and the flush in flight. */
class Lane {
  pending = new PendingBatch();
  inflight: Promise<FlushOutcome> | undefined;
  /** The flush in flight is still being written (its promise has not settled). */
  writing = false;
}

/** Where one input partition's drain ends: its watermarks when the drain began. */
interface DrainBound {
  p: number;
  input: number;
  low: number;
  high: number;
}

type FlushOutcome = { ok: true } | { ok: false; error: unknown; partitions: number[] };

/**
 * The runtime of one topology: the loop. It polls batches from the source, takes what is its own and new (the
 * PartitionLedger says what is), has the Dispatcher run the plan's stages, and when a lane's batch is due prepares
 * its flush (prepareFlush: what to commit) and hands it to the Committer (committing). While one flush is written
 * the next batch is consumed and processed, up to twice the batch size; at most one flush is in flight a lane, and
 * that bound is the backpressure (past it the loop stops polling until the flush completes).
 * On a failed flush the affected partitions are rewound to the offsets the committer holds, the truth, and their
 * state is restored from the changelog as of those offsets, so whatever the failed commit did, nothing is lost or
 * counted twice.
 */
export class StreamTask {
  private readonly source: Source;
  private readonly executor: PlanExecutor;
  private readonly dispatcher: Dispatcher;
  private readonly sinks: ReadonlyMap<string, Sink>;
  private readonly ledger: PartitionLedger;
  /** The topics read, the first being the source's topic (several: co-partitioned inputs of one task each). */
  private readonly inputs: readonly string[];
  /** Scratch for take(): the indices of a poll's messages taken, by lane, and how many. */
  private readonly taken: Uint32Array[] = [];
  private readonly takenCount: number[] = [];
  private readonly lanes: Lane[];
  /** Partitions of each input held at a batch that could not be read: nothing at or after it is taken. */
  private readonly unreadable: UnreadablePartitions[];
  private readonly unreadableLog: (line: string) => void;
  /** Table inputs read to their end at assignment before stream records are taken. */
  private readonly tables: TableCatchUp;
  private lastActivity = Date.now();
  private connectedAt = 0;
  private assignedOnce = false;
  /** Idle checks that found a partition behind its high watermark with nothing held: one more idle period is given. */
  private behindChecks = 0;
  private leftBehind: string[] = [];
  /** Where each partition's draining ends (its watermarks when the drain began). */
  private drainTo: DrainBound[] | undefined;
  private connected = false;
  private globalFeed: GlobalTableFeed | undefined;

  /** Connected, and no assigned partition is held at a batch it cannot read (/readyz). */
  get ready(): boolean {
    return this.connected && this.heldCount() === 0;
  }

  constructor(private readonly o: StreamTaskOptions) {
    this.executor = new PlanExecutor(o.plan);
    this.lanes = Array.from({ length: Math.max(1, o.lanes ?? 1) }, () => new Lane());
    this.sinks = new Map(o.sinks.map((s) => [s.name, s]));
    this.dispatcher = new Dispatcher({
      executor: this.executor,
      pendingOf: (p) => this.laneOf(p).pending,
      deadLetter: (r, reason, message) => this.laneOf(r.partition).pending.deadLetters.push(deadLetterOf(r, o.dlqTopic, reason, message)),
      late: (stage, n) => o.observer.late(stage, n),
      stages: (counts) => o.observer.stages(counts),
      threads: o.stageThreads ?? 0,
      planRef: o.planRef,
      directJson: o.directJson,
    });
    this.source = o.source({
      onAssign: (partitions) => this.onAssign(partitions),
      onRevoke: (partitions) => this.onRevoke(partitions),
    });
    this.inputs = this.source.inputs ?? [this.source.topic];
    this.ledger = new PartitionLedger(this.inputs);
    this.unreadable = this.inputs.map(() => new UnreadablePartitions());
    const tableInputs = new Set(o.plan.sources.flatMap((n, i) => (n.table ? [i] : [])));
    this.tables = new TableCatchUp(tableInputs, this.inputs.length);
    this.source.onLag = (lag) => o.observer.lag(lag);
    const sourceLog = throttledLog(o.log);
    this.source.onError = (err) => sourceLog(`${this.source.kind}: ${errorMessage(err)}`);
    this.unreadableLog = throttledLog(o.log);
  }

  async run(): Promise<void> {
    const { o } = this;
    try {
      try {
        await retry('preparing state and sinks', () => o.committer.setup(), o.log, o.signal);
        await this.chooseCopyFormat(true);
        await retry(`connecting to ${this.source.kind === 'kafka' ? 'Kafka' : this.source.topic}`, () => this.source.connect(), o.log, o.signal);
        if (this.executor.globalTables.size) {
          if (!o.globalTables) throw new Error('the plan reads global tables, and nothing was given to fill them');
          const feed = o.globalTables(this.executor.globalTables);
          await retry('reading the global tables', () => feed.bootstrap(), o.log, o.signal);
          this.globalFeed = feed;
          feed.start();
        }
      } catch (err) {
        if (err instanceof Aborted) return;
        throw err;
      }
      await this.loop();
    } finally {
      await this.globalFeed?.stop();
      await o.committer.close();
      await this.dispatcher.close();
    }
    if (this.leftBehind.length) {
      throw new PipelineError('SOURCE_BEHIND', `stopped when idle with records left behind in ${this.source.topic}: ${this.leftBehind.join('; ')}`);
    }
  }

  private async loop(): Promise<void> {
    const { o } = this;
    this.connected = true;
    this.connectedAt = this.lastActivity = Date.now();
    o.deadLetters?.start();
    o.observer.start();
    try {
      while (!o.signal.aborted) {
        let batch: PackedBatch | undefined;
        let errors: PartitionError[] = [];
        try {
          if (this.heldCount()) await this.retryUnreadable();
          const polled = await this.source.poll(this.pollSize());
          if (batchSize(polled.batch)) {
            batch = polled.batch;
            o.observer.polled(batchSize(batch));
          }
          if (polled.straddled && batch) {
            await this.refetch(batch);
            batch = undefined;
          } else {
            errors = polled.errors;
          }
        } catch (err) {
          if (err instanceof AccessError) throw err; // the broker refuses this principal: no poll will do better
          o.log(`poll: ${errorMessage(err)}`);
          await sleep(500, o.signal);
        }
        if (batch) {
          this.lastActivity = Date.now();
          await this.accept(batch);
        }
        if (this.tables.waiting().size) await this.releaseTables();
        if (errors.length) await this.onPartitionErrors(errors, !batch);
        if (!batch && this.lanes.every((l) => l.pending.count === 0)) {
          for (const lane of this.lanes) await this.settle(lane); // nothing to overlap the flushes in flight with
        }
        const finished = this.source.finished?.() === true;
        for (let i = 0; i < this.lanes.length; i++) {
          const lane = this.lanes[i];
          const p = lane.pending;
          const due = p.count >= o.batch.maxRecords || (p.count > 0 && (finished || Date.now() - p.startedAt >= o.batch.maxWaitMs));
          // Reading on while the lane's flush is written, unless there is nothing left to read.
          if (due && (finished || !(lane.writing && p.count < this.batchLimit))) await this.startFlush(i);
        }
        if (finished && this.lanes.every((l) => l.pending.count === 0 && l.inflight === undefined)) break;
        if (this.idle() && await this.caughtUp()) break;
        if (o.drain?.aborted && await this.drained()) break;
      }
      for (const lane of this.lanes) await this.settle(lane);
      for (let i = 0; i < this.lanes.length; i++) if (this.lanes[i].pending.count) await this.startFlush(i);
      for (const lane of this.lanes) await this.settle(lane);
    } catch (err) {
      if (!(err instanceof Aborted)) throw err;
    } finally {
      this.connected = false;
      o.observer.stop();
      await o.deadLetters?.stop();
      await this.source.disconnect();
    }
  }

  /** Records a lane's pending batch holds at most (see BatchPolicy). */
  private get batchLimit(): number {
    return this.o.batch.maxRecords + (this.o.batch.readAhead ?? this.o.batch.maxRecords);
  }

  /**
   * Records the next poll may take. With an explicit readAhead, no more than the fullest lane has room for, so no
   * flush outgrows batchLimit; by default whole polls (a flush may then exceed it by less than a poll).
   */
  private pollSize(): number {
    const max = this.o.maxPollRecords ?? MAX_POLL_RECORDS;
    if (this.o.batch.readAhead === undefined) return max;
    let fullest = 0;
    for (const l of this.lanes) fullest = Math.max(fullest, l.pending.count);
    return Math.max(1, Math.min(max, this.batchLimit - fullest));
  }

  /**
   * Errors of partitions in a poll, after its messages were taken. A batch that could not be read holds its
   * partition there (UnreadablePartitions); other errors are logged. Every one is counted by reason.
   */
  private async onPartitionErrors(errors: PartitionError[], nothingRead: boolean): Promise<void> {
    const { o } = this;
    for (const e of errors) {
      const input = this.inputs.indexOf(e.topic || this.source.topic);
      const topic = this.inputs[input] ?? e.topic;
      const next = input >= 0 && e.partition >= 0 ? this.ledger.nextToTake(e.partition, input) : undefined;
      const held = next === undefined ? undefined : this.unreadable[input].hold(e, next);
      o.observer.sourceError(topic, held?.reason ?? sourceErrorReason(e.code));
      if (!held) {
        this.unreadableLog(`${this.source.kind}: ${e.topic ? `${e.topic}[${e.partition}]: ` : ''}${e.message}`);
        continue;
      }
      this.source.pause([e.partition], topic);
      this.unreadableLog(`cannot read ${topic}[${e.partition}] at offset ${held.offset} (${held.reason}): ${e.message}; `
        + `nothing from there on is taken, trying again every ${this.unreadable[input].retryMs / 1000} s`);
    }
    if (nothingRead && !this.heldCount()) await sleep(500, o.signal);
  }

  /** Input partitions held at a batch they could not read. */
  private heldCount(): number {
    let n = 0;
    for (const u of this.unreadable) n += u.size;
    return n;
  }

  /** Seeks each held partition whose time has come back to its batch and resumes it, to read it again. */
  private async retryUnreadable(): Promise<void> {
    for (const [input, topic] of this.inputs.entries()) {
      for (const [p, u] of this.unreadable[input].due()) {
        if (!this.ledger.owns(p)) continue;
        await retry(`seeking ${topic}[${p}] to ${u.offset}`, () => this.source.seek(p, u.offset, topic), this.o.log, this.o.signal);
        this.source.resume([p], topic);
      }
    }
  }

  /**
   * Whether a drain has taken every record below the high watermarks it began with (or below where a partition is
   * held). The flushes after the loop then commit them.
   */
  private async drained(): Promise<boolean> {
    if (!this.drainTo) {
      const to: DrainBound[] = [];
      for (const p of this.ledger.partitions()) {
        for (const [input, topic] of this.inputs.entries()) {
          try {
            to.push({ p, input, ...(await this.source.watermarks(p, topic)) });
          } catch { /* not known: the drain's bound stops it */ }
        }
      }
      this.drainTo = to;
      const where = (b: DrainBound) => (this.inputs.length > 1 ? `${b.p}/${this.inputs[b.input]}` : `${b.p}`);
      this.o.log(`draining to offsets ${to.map((b) => `${where(b)}:${b.high}`).join(', ') || '(no partitions)'}`);
    }
    for (const w of this.drainTo) {
      const { p, input } = w;
      const next = this.ledger.nextToTake(p, input);
      if (next === undefined || this.unreadable[input].get(p)) continue; // given up meanwhile, or held
      if (Math.max(next, w.low) < w.high && !this.onlyMarkersLeft(p, input, w.high, 'taken')) return false;
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
    const several = this.inputs.length > 1;
    for (const p of this.ledger.partitions()) {
      for (const [input, topic] of this.inputs.entries()) {
        const where = several ? `${topic} partition ${p}` : `partition ${p}`;
        const held = this.unreadable[input].get(p);
        if (held) {
          behind.push(`${where} at offset ${held.offset} (${held.reason}: ${held.message})`);
          continue;
        }
        let w: { low: number; high: number };
        try {
          w = await this.source.watermarks(p, topic);
        } catch (err) {
          behind.push(`${where}: its high watermark cannot be read (${errorMessage(err)})`);
          continue;
        }
        const next = Math.max(this.ledger.position(p, input)?.committed ?? -1, w.low);
        if (next < w.high && !this.onlyMarkersLeft(p, input, w.high)) behind.push(`${where} at offset ${next} of ${w.high}`);
      }
    }
    if (!behind.length) return true;
    if (this.heldCount() || ++this.behindChecks > 1) {
      this.leftBehind = behind;
      return true;
    }
    this.lastActivity = Date.now(); // records may still be on their way: one more idle period
    return false;
  }

  /**
   * Whether what is left of a partition below its high watermark are transaction markers only (a topic written with
   * Kafka transactions ends in one): every record taken is committed (or, for a drain, taken), and the consumer's last
   * poll, all of it taken, had read past the watermark.
   */
  private onlyMarkersLeft(partition: number, input: number, high: number, upTo: 'taken' | 'committed' = 'committed'): boolean {
    const p = this.ledger.position(partition, input);
    if (!p || (upTo === 'committed' && p.taken + 1 !== p.committed)) return false;
    const at = this.source.readPosition?.(partition, this.inputs[input]);
    return at !== undefined && at >= high;
  }

  /**
   * The table inputs of the partitions must reach their ends (as the broker has them now) before stream records of
   * those partitions are taken: from `next`, the first offset of each input the task will read.
   */
  private async readTablesFirst(partitions: number[], next: Map<number, number[]>): Promise<void> {
    if (!this.tables.active) return;
    const { o } = this;
    this.tables.drop(partitions);
    for (const p of partitions) {
      for (const input of this.tables.tableInputs()) {
        const topic = this.inputs[input];
        const w = await retry(`reading the watermarks of ${topic}[${p}]`, () => this.source.watermarks(p, topic), o.log, o.signal);
        this.tables.await(p, input, Math.max(next.get(p)?.[input] ?? -1, w.low), w.high);
      }
    }
    const waiting = [...this.tables.waiting()].map(([p, t]) => [...t].map(([input, end]) => `${this.inputs[input]}[${p}] to ${end}`).join(', '));
    if (waiting.length) o.log(`reading table ${waiting.join(', ')} before the stream records of those partitions`);
  }

  /** Resumes the stream inputs of each partition whose tables have been read to their ends, from their first offset not taken. */
  private async releaseTables(): Promise<void> {
    const { o } = this;
    for (const [p, targets] of [...this.tables.waiting()]) {
      for (const input of [...targets.keys()]) {
        const topic = this.inputs[input];
        const next = Math.max(this.ledger.nextToTake(p, input) ?? -1, this.source.readPosition?.(p, topic) ?? -1);
        const paused = this.tables.reached(p, input, next);
        if (!paused) continue;
        for (const s of paused) {
          const at = this.ledger.nextToTake(p, s);
          if (at === undefined) continue;
          await retry(`seeking ${this.inputs[s]}[${p}] to ${at}`, () => this.source.seek(p, at, this.inputs[s]), o.log, o.signal);
          this.source.resume([p], this.inputs[s]);
        }
      }
    }
  }

  /**
   * A poll that straddled an assignment change is not taken: its messages may mix offsets fetched before the change
   * with offsets after it, and taking a later offset first would skip the earlier ones for good. Every owned
   * partition in it is sought back to the first offset not yet taken, so the source delivers them again in order.
   */
  private async refetch(batch: PackedBatch): Promise<void> {
    const { o } = this;
    await this.source.settled();
    const partitions = new Set(batch.partitions);
    const input = this.inputs.indexOf(batch.topic);
    if (input < 0) return;
    o.log(`a poll straddled a rebalance: reading partitions [${[...partitions].join(',')}]${this.inputs.length > 1 ? ` of ${batch.topic}` : ''} again from the first offset not taken`);
    for (const p of partitions) {
      const next = this.ledger.nextToTake(p, input);
      if (next === undefined) continue; // not ours (any more)
      await retry(`seeking ${batch.topic}[${p}] to ${next}`, () => this.source.seek(p, next, batch.topic), o.log, o.signal);
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
    const input = this.inputs.indexOf(batch.topic);
    if (input < 0) return;
    const n = batchSize(batch);
    if (this.dispatcher.preparesHere) {
      const raw = Array.from({ length: n }, (_, i) => recordOf(batch, i));
      await retry('preparing the batch', () => this.executor.prepare(raw), o.log, o.signal, { giveUpAfterMs: registryGiveUpMs() });
    }
    // Only now, after any wait, take what is still ours and new: a rebalance or a rewind may have come meanwhile.
    const count = this.take(batch, input);
    if (!count) return;
    o.observer.taken(count);
    for (let lane = 0; lane < this.lanes.length; lane++) {
      const k = this.takenCount[lane];
      if (!k) continue;
      // Usually the whole poll goes to one lane as it is; a subset is copied out.
      this.dispatcher.dispatch(k === n ? batch : selectBatch(batch, this.taken[lane].subarray(0, k)));
    }
    if (this.dispatcher.busy) {
      o.observer.paused(true);
      while (this.dispatcher.busy) await this.dispatcher.next();
      o.observer.paused(false);
    }
  }

  /**
   * Which messages of a poll are ours and new (a rebalance or a rewind may have come while it ran): their indices by
   * lane go into this.taken, and they join their lane's pending batch. A poll holds runs of one partition's messages,
   * so the ledger is read and moved once a run: a per-message offset stored in a Map, or in a variable a closure
   * shares, was a new heap number each time.
   */
  private take(batch: PackedBatch, input: number): number {
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
      const position = this.ledger.position(partition, input);
      if (position === undefined) continue; // not ours (any more)
      if (this.tables.holds(partition, input)) {
        if (this.tables.hold(partition, input)) this.source.pause([partition], this.inputs[input]);
        continue; // its table is read first (releaseTables)
      }
      let seen = position.taken;
      const unreadable = this.unreadable[input];
      const limit = unreadable.size ? unreadable.limit(partition) : Infinity;
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
      position.taken = seen;
      this.takenCount[lane] = k;
      count += k - before;
    }
    return count;
  }

  private laneOf(partition: number): Lane {
    return this.lanes[partition % this.lanes.length];
  }

  private async startFlush(index: number): Promise<void> {
    const lane = this.lanes[index];
    await this.dispatcher.drain();
    const waits = lane.writing; // backpressure: the lane's flush in flight holds the loop
    if (waits) this.o.observer.paused(true);
    await this.settle(lane);
    if (waits) this.o.observer.paused(false);
    await this.source.settled();
    const pending = lane.pending;
    lane.pending = new PendingBatch();
    if (!pending.count) return;
    const plan = prepareFlush(index, this.lanes.length, pending, this.ledger, this.executor.stateful, this.o.plan.applicationId);
    lane.writing = true;
    lane.inflight = this.flush(plan).finally(() => { lane.writing = false; });
  }

  private async flush(plan: FlushPlan): Promise<FlushOutcome> {
    const { o } = this;
    const end = o.observer.flushTimer();
    let result;
    try {
      result = await o.committer.commit(plan);
    } catch (error) {
      return { ok: false, error, partitions: plan.offsets.map((m) => m.partition) };
    }
    const seconds = end();
    this.ledger.committed(plan.offsets);
    const deadLetters = o.observer.flushed(plan, result, seconds);
    if (!o.committer.commitsToKafka) this.source.commitForMonitoring(plan.offsets.filter((m) => this.ledger.owns(m.partition)).map((m) => ({ topic: m.topic, partition: m.partition, offset: m.next })));
    if (deadLetters) o.deadLetters?.poke();
    return { ok: true };
  }

  /** Waits for the lane's flush in flight; if it failed, rewinds its partitions to what the committer holds. */
  private async settle(lane: Lane): Promise<void> {
    const inflight = lane.inflight;
    if (!inflight) return;
    const outcome = await inflight;
    if (lane.inflight === inflight) lane.inflight = undefined;
    if (outcome.ok) return;
    const { o } = this;
    o.observer.flushFailed();
    o.log(`flush failed, rewinding partitions ${outcome.partitions.join(',')} to the offsets in ${o.committer.kind}: ${errorMessage(outcome.error)}`);
    if (outcome.error instanceof PipelineError && outcome.error.code === 'COPY_BINARY') await this.chooseCopyFormat(false);
    await this.rewind(outcome.partitions);
  }

  /**
   * Reads the Postgres sinks' column types, and has the rows the direct reader reads for them encoded in binary COPY
   * where the types allow it (Dispatcher.useBinaryCopy): at start, and again when a flush found a table's types
   * changed under binary rows (COPY_BINARY), before its rows are made again.
   */
  private async chooseCopyFormat(start: boolean): Promise<void> {
    const { o } = this;
    if (o.textCopy) return;
    for (const sink of o.sinks) {
      if (!sink.columnTypes) continue;
      const types = await retry(`reading the column types of ${sink.label}`, () => sink.columnTypes!(), o.log, o.signal);
      const binary = this.dispatcher.useBinaryCopy(sink.name, types);
      if (binary || !start) o.log(`${sink.label}: rows read straight from JSON go in ${binary ? `binary COPY, for columns of types ${types!.join(', ')} (--text-copy: as text)` : 'text COPY'}`);
    }
  }

  private async rewind(partitions: number[]): Promise<void> {
    const { o } = this;
    const owned = partitions.filter((p) => this.ledger.owns(p));
    await this.dispatcher.drain();
    this.dropPending(partitions);
    // Read again from what the committer holds: a batch that could not be read is met again on the way.
    for (const [input, topic] of this.inputs.entries()) this.source.resume(this.unreadable[input].release(owned), topic);
    for (const p of owned) for (const input of this.tables.pausedOf(p)) this.source.resume([p], this.inputs[input]);
    this.tables.drop(owned);
    if (!owned.length) return;
    const stored = await this.storedOffsets(owned);
    await this.restoreState(owned, stored);
    for (const p of owned) {
      if (!this.ledger.owns(p)) continue; // revoked meanwhile
      const next = stored.get(p)!;
      for (const [input, topic] of this.inputs.entries()) {
        await retry(`seeking ${topic}[${p}] to ${next[input]}`, () => this.source.seek(p, next[input], topic), o.log, o.signal);
      }
      this.ledger.rewind(p, next);
    }
    await this.readTablesFirst(owned.filter((p) => this.ledger.owns(p)), stored);
  }

  /** The next offset the committer holds of each input, by task partition. */
  private async storedOffsets(partitions: number[]): Promise<Map<number, number[]>> {
    const { o } = this;
    const out = new Map<number, number[]>(partitions.map((p) => [p, []]));
    for (const topic of this.inputs) {
      const stored = await retry(`reading offsets from ${o.committer.kind}`, () => o.committer.offsets(partitions, topic), o.log, o.signal);
      for (const p of partitions) out.get(p)!.push(stored.get(p) ?? -1);
    }
    return out;
  }

  private dropPending(partitions: number[]): void {
    const set = new Set(partitions);
    for (let i = 0; i < this.lanes.length; i++) {
      const pending = this.lanes[i].pending;
      if (!pending.count || !partitions.some((p) => p % this.lanes.length === i)) continue;
      pending.drop(set, this.sinks);
      // Records of other partitions of the lane may remain; the count only decides when the flush is due.
      if (!this.ledger.hasUnprepared((p) => !set.has(p) && p % this.lanes.length === i)) pending.count = 0;
    }
  }

  /** State stores of the partitions as of the offsets the committer holds, from their changelogs. */
  private async restoreState(partitions: number[], offsets: Map<number, number[]>): Promise<void> {
    const { o } = this;
    for (const s of this.executor.stateful) {
      for (const p of partitions) {
        const entries = await retry(`restoring ${s.storeName}[${p}]`, () => o.committer.changelog(s.storeName, p), o.log, o.signal);
        const at = offsets.get(p) ?? [-1];
        s.restore(p, entries, at.length === 1 ? at[0] : at);
      }
    }
  }

  private async onAssign(partitions: number[]): Promise<Map<number, number[]>> {
    const { o } = this;
    const stored = await this.storedOffsets(partitions);
    await this.restoreState(partitions, stored);
    for (const p of partitions) this.ledger.assign(p, stored.get(p)!);
    await this.readTablesFirst(partitions, stored);
    o.observer.rebalanced('assign', partitions, this.ledger.partitions().length);
    this.lastActivity = Date.now();
    this.assignedOnce = true;
    const at = (p: number) => stored.get(p)!.join('/');
    o.log(`assigned ${this.inputs.join(' + ')} partitions [${partitions.join(',')}] at offsets [${partitions.map(at).join(',')}] (from ${o.committer.kind})`);
    return stored;
  }

  /** Finish the flush in flight (so its offsets land before another instance reads them), drop the rest. */
  private async onRevoke(partitions: number[]): Promise<void> {
    if (this.lanes.some((l) => l.writing)) this.o.log(`partitions [${partitions.join(',')}] revoked with a flush in flight: finishing it before giving them up`);
    for (const lane of this.lanes) if (lane.inflight) await lane.inflight;
    await this.dispatcher.drain();
    this.dropPending(partitions);
    for (const u of this.unreadable) u.release(partitions);
    this.tables.drop(partitions);
    for (const p of partitions) {
      this.ledger.revoke(p);
      for (const s of this.executor.stateful) s.drop(p);
    }
    this.o.observer.rebalanced('revoke', partitions, this.ledger.partitions().length);
  }
}

import type { DeadLetter } from '../postgres/dead-letters.ts';
import { deadLetterOf, type StageContext, type StreamRecord } from '../records.ts';
import { PlanExecutor } from '../dsl/executor.ts';
import type { TopologyPlan } from '../dsl/plan.ts';
import type { ChangelogEntry } from '../state/store.ts';

export interface TestInput {
  key?: string | null;
  /** An object or string is sent as JSON/UTF-8 bytes; a Buffer as is; null is a tombstone. */
  value: unknown;
  timestamp?: number;
  partition?: number;
  headers?: StreamRecord['headers'];
}

/**
 * Runs a topology without a broker, like Kafka Streams' TopologyTestDriver: pipe records into the source topic,
 * read what reached each sink, the dead letters and the late records, look into the state stores, and commit to
 * collect changelog entries as the runtime would write them. A driver built with `restoreFrom` starts from another
 * driver's changelog and committed offsets, as a restarted instance would.
 */
export class TopologyTestDriver {
  readonly executor: PlanExecutor;
  private readonly outputs = new Map<string, StreamRecord[]>();
  readonly deadLetters: DeadLetter[] = [];
  readonly lateRecords: StreamRecord[] = [];
  private readonly nextOffset = new Map<number, number>();
  private readonly committed = new Map<number, number>();
  private readonly changelogs = new Map<string, ChangelogEntry[]>();
  private wallClock: number;
  private readonly ctx: StageContext;

  constructor(readonly plan: TopologyPlan, options: { wallClock?: number; restoreFrom?: TopologyTestDriver } = {}) {
    this.executor = new PlanExecutor(plan);
    this.wallClock = options.wallClock ?? Date.UTC(2026, 0, 1);
    this.ctx = {
      deadLetter: (r, reason, message) => this.deadLetters.push(deadLetterOf(r, `${plan.topic}.dlq`, reason, message)),
      late: (r) => this.lateRecords.push(r),
    };
    const from = options.restoreFrom;
    if (from) {
      for (const [p, offset] of from.committed) {
        this.committed.set(p, offset);
        this.nextOffset.set(p, offset);
      }
      for (const [k, entries] of from.changelogs) this.changelogs.set(k, [...entries]);
      for (const s of this.executor.stateful) {
        for (const [p, offset] of this.committed) s.restore(p, this.changelog(s.storeName, p), offset);
      }
    }
  }

  /** Pipes records into the source topic as one batch. */
  pipeInput(...inputs: TestInput[]): void {
    const batch: StreamRecord[] = inputs.map((i) => {
      const partition = i.partition ?? 0;
      const offset = this.nextOffset.get(partition) ?? 0;
      this.nextOffset.set(partition, offset + 1);
      const raw = i.value === null ? null : Buffer.isBuffer(i.value) ? i.value : Buffer.from(typeof i.value === 'string' ? i.value : JSON.stringify(i.value));
      const rawKey = i.key === undefined || i.key === null ? null : Buffer.from(i.key);
      return {
        topic: this.plan.topic, partition, offset, timestamp: i.timestamp ?? this.wallClock, rawKey, key: i.key ?? null,
        headers: i.headers, raw, value: raw,
      };
    });
    this.executor.run(batch, this.ctx, this.outputs);
  }

  advanceWallClockTime(ms: number): void {
    this.wallClock += ms;
  }

  /** Takes what reached a sink (by name, e.g. `to-orders_revenue_1m`) since the last read. */
  readOutput<V = unknown>(sink: string): StreamRecord<V>[] {
    const out = this.outputs.get(sink) ?? [];
    this.outputs.set(sink, []);
    return out as StreamRecord<V>[];
  }

  /** What a state store holds for a partition. */
  store(name: string, partition = 0): Map<string, unknown> {
    const stage = this.executor.stateful.find((s) => s.storeName === name);
    if (!stage) throw new Error(`no store named ${name}`);
    const store = (stage as unknown as { store(p: number): { entries(): IterableIterator<[string, unknown]> } }).store(partition);
    return new Map(store.entries());
  }

  /**
   * Commits what was piped so far: changelog entries are cut and written, then the offsets committed, as the
   * runtime does. crashBeforeCommit writes the changelog but not the offsets: a crash between the two.
   */
  commit(options: { crashBeforeCommit?: boolean } = {}): void {
    for (const [p, next] of this.nextOffset) {
      for (const s of this.executor.stateful) this.changelog(s.storeName, p).push(...s.cut(p, next));
      if (!options.crashBeforeCommit) this.committed.set(p, next);
    }
  }

  changelog(store: string, partition = 0): ChangelogEntry[] {
    const k = `${store}/${partition}`;
    let list = this.changelogs.get(k);
    if (!list) this.changelogs.set(k, (list = []));
    return list;
  }
}

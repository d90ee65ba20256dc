import type Kafka from 'node-rdkafka';
import { FencedError } from '../errors.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import type { StreamRecord } from '../records.ts';
import { isCopySegment } from '../sinks/copy-segment.ts';
import { packMessages } from '../sources/packed-batch.ts';
import type { PartitionListener, Polled, Source } from '../sources/source.ts';
import type { CommitResult, Committer } from '../runtime/committer.ts';
import type { FlushPlan } from '../runtime/flush-plan.ts';
import type { ChangelogEntry } from '../state/store.ts';

export interface MemoryMessage {
  key?: string | null;
  /** An object or string is sent as JSON/UTF-8 bytes; a Buffer as is; null is a tombstone. */
  value: unknown;
  timestamp?: number;
  headers?: Kafka.MessageHeader[];
}

/** A message as a consumer would hand it over (1 Jan 2026 when it has no timestamp). */
export function messageOf(topic: string, partition: number, offset: number, m: MemoryMessage): Kafka.Message {
  const value = m.value === null ? null : Buffer.isBuffer(m.value) ? m.value : Buffer.from(typeof m.value === 'string' ? m.value : JSON.stringify(m.value));
  return {
    topic, partition, offset, key: m.key === undefined || m.key === null ? undefined : Buffer.from(m.key), value,
    timestamp: m.timestamp ?? Date.UTC(2026, 0, 1), size: value?.length ?? 0, headers: m.headers,
  } as Kafka.Message;
}

/**
 * A source of partitions held in memory, for driving the real runtime (StreamTask) without a broker: it reads and
 * seeks as a consumer does (each partition has a fetch position that a poll moves on), and a test assigns and revokes
 * partitions, makes the next poll straddle a rebalance, or limits how much one poll returns.
 */
export class MemorySource implements Source {
  readonly kind = 'memory';
  private readonly logs = new Map<number, Kafka.Message[]>();
  private readonly positions = new Map<number, number>();
  private readonly paused = new Set<number>();
  private assigned: number[] = [];
  private rebalancing: Promise<void> = Promise.resolve();
  private straddle = false;
  /** Records one poll returns at most (besides the runtime's own max). */
  pollLimit = Infinity;
  onLag?: (lag: Map<number, number>) => void;
  onError?: (err: Error) => void;

  constructor(readonly topic: string, private readonly listener: PartitionListener, private readonly initial: number[] = [0]) {}

  /** Appends messages to a partition; returns their offsets. */
  append(partition: number, ...messages: MemoryMessage[]): number[] {
    let log = this.logs.get(partition);
    if (!log) this.logs.set(partition, (log = []));
    return messages.map((m) => {
      const offset = log.length;
      log.push(messageOf(this.topic, partition, offset, m));
      return offset;
    });
  }

  async connect(): Promise<void> {
    await this.assign(this.initial);
  }

  /** Hands partitions to the runtime, as a rebalance does: each starts where the runtime's listener says. */
  assign(partitions: number[]): Promise<void> {
    this.rebalancing = this.rebalancing.then(async () => {
      const start = await this.listener.onAssign(partitions);
      for (const p of partitions) this.positions.set(p, Math.max(0, start.get(p)?.[0] ?? 0));
      this.assigned = [...new Set([...this.assigned, ...partitions])].sort((a, b) => a - b);
    });
    return this.rebalancing;
  }

  /** Takes partitions back; the runtime finishes its flush in flight first. */
  revoke(partitions: number[]): Promise<void> {
    this.rebalancing = this.rebalancing.then(async () => {
      await this.listener.onRevoke(partitions);
      this.assigned = this.assigned.filter((p) => !partitions.includes(p));
      for (const p of partitions) this.positions.delete(p);
    });
    return this.rebalancing;
  }

  /** The next poll returns its messages marked as straddling an assignment change. */
  straddleNext(): void {
    this.straddle = true;
  }

  async poll(max: number): Promise<Polled> {
    await new Promise((resolve) => setImmediate(resolve));
    const out: Kafka.Message[] = [];
    const limit = Math.min(max, this.pollLimit);
    // Each partition gets its share of a poll, as fetches from several partitions interleave in a consumer's queue.
    const active = this.assigned.filter((p) => !this.paused.has(p));
    const share = Math.max(1, Math.ceil(limit / Math.max(1, active.length)));
    for (const p of active) {
      const log = this.logs.get(p) ?? [];
      let at = this.positions.get(p) ?? 0;
      for (let k = 0; at < log.length && k < share && out.length < limit; k++) out.push(log[at++]);
      this.positions.set(p, at);
    }
    const straddled = this.straddle && out.length > 0;
    if (straddled) this.straddle = false;
    return { batch: packMessages(this.topic, out), straddled, errors: [] };
  }

  async seek(partition: number, offset: number): Promise<void> {
    this.positions.set(partition, Math.max(0, offset));
  }

  pause(partitions: number[]): void {
    for (const p of partitions) this.paused.add(p);
  }

  resume(partitions: number[]): void {
    for (const p of partitions) this.paused.delete(p);
  }

  settled(): Promise<void> {
    return this.rebalancing;
  }

  async watermarks(partition: number): Promise<{ low: number; high: number }> {
    return { low: 0, high: this.logs.get(partition)?.length ?? 0 };
  }

  commitForMonitoring(): void {}

  async disconnect(): Promise<void> {
    await this.rebalancing;
  }
}

/**
 * A committer that keeps its truth in memory, with the rules of the Postgres one: a commit moves each partition's
 * offset only from the value it expects (or throws FencedError, and applies nothing), and applies all of a flush or
 * none of it. A test makes commits fail, or holds them until it lets them go.
 */
export class MemoryCommitter implements Committer {
  readonly kind = 'memory';
  /** The next offset held for each partition, by topic. */
  readonly storedByTopic = new Map<string, Map<number, number>>();
  /** Every record committed to each sink, in commit order, by sink name. */
  readonly committed = new Map<string, StreamRecord[]>();
  readonly deadLetters: DeadLetter[] = [];
  readonly changelogs = new Map<string, ChangelogEntry[]>();
  readonly plans: FlushPlan[] = [];
  /** Commits that throw before applying anything, for as long as this returns an error. */
  failWhen: (plan: FlushPlan, attempt: number) => Error | undefined = () => undefined;
  private attempts = 0;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  private entered: (() => void) | undefined;

  async setup(): Promise<void> {}

  /** The offsets held of the one topic committed so far (storedOf(topic) when there are several). */
  get stored(): Map<number, number> {
    if (this.storedByTopic.size > 1) throw new Error(`offsets of ${[...this.storedByTopic.keys()].join(', ')} are held: ask storedOf(topic)`);
    return this.storedByTopic.values().next().value ?? new Map<number, number>();
  }

  storedOf(topic: string): Map<number, number> {
    let m = this.storedByTopic.get(topic);
    if (!m) this.storedByTopic.set(topic, (m = new Map()));
    return m;
  }

  /** Holds every commit until release(); resolves once a commit is waiting. */
  hold(): Promise<void> {
    this.gate = new Promise((resolve) => { this.open = resolve; });
    return new Promise((resolve) => { this.entered = resolve; });
  }

  release(): void {
    this.open?.();
    this.gate = undefined;
  }

  async commit(plan: FlushPlan): Promise<CommitResult> {
    if (this.gate) {
      this.entered?.();
      await this.gate;
    }
    const failure = this.failWhen(plan, this.attempts++);
    if (failure) throw failure;
    return this.apply(plan);
  }

  /**
   * Commits a plan now, as commit does once let through (TopologyTestDriver commits this way). With
   * crashAfterChangelog, only the changelog is written and then the commit throws: a crash between producing the
   * changelog and the Postgres transaction.
   */
  apply(plan: FlushPlan, o: { crashAfterChangelog?: boolean } = {}): CommitResult {
    const fenced = plan.offsets.filter((m) => (this.storedOf(m.topic).get(m.partition) ?? -1) !== m.expected).map((m) => m.partition);
    if (fenced.length) throw new FencedError(this.kind, fenced);
    for (const c of plan.changelog) {
      const key = `${c.topic}/${c.partition}`;
      this.changelogs.set(key, [...(this.changelogs.get(key) ?? []), ...c.entries]);
    }
    if (o.crashAfterChangelog) throw new Error('crashed after the changelog, before the transaction');
    let written = 0;
    for (const [sink, items] of plan.items) {
      let list = this.committed.get(sink);
      if (!list) this.committed.set(sink, (list = []));
      for (const item of items) {
        if (isCopySegment(item)) {
          for (let i = 0; i < item.ends.length; i++) list.push(item.record(i));
          written += item.ends.length;
        } else {
          list.push(item as StreamRecord);
          written++;
        }
      }
    }
    this.deadLetters.push(...plan.deadLetters);
    for (const m of plan.offsets) this.storedOf(m.topic).set(m.partition, m.next);
    this.plans.push(plan);
    return { written, rejected: [] };
  }

  async offsets(partitions: number[], topic: string): Promise<Map<number, number>> {
    const stored = this.storedOf(topic);
    return new Map(partitions.map((p) => [p, stored.get(p) ?? -1]));
  }

  async changelog(store: string, partition: number): Promise<ChangelogEntry[]> {
    return this.changelogOf(store, partition);
  }

  /** A store's changelog of one partition as written so far. */
  changelogOf(store: string, partition: number): ChangelogEntry[] {
    return [...this.changelogs.entries()].filter(([k]) => k.endsWith(`-${store}-changelog/${partition}`)).flatMap(([, e]) => e);
  }

  async close(): Promise<void> {}
}

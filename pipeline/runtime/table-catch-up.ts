/**
 * Table inputs read first. A task whose inputs are a stream and a table (a KTable joined by a stream) reads each
 * table partition up to the end offset it had when the task was assigned (or rewound) before it takes any record of
 * the stream inputs of that partition. A stream record is then joined with the table as it stood when the record
 * arrived, and not with however far a concurrent read of the table had got: without it, a restart or a first run
 * over a backlog joins early records with an older table than a live run does.
 * Stream partitions met meanwhile are paused, and sought back to their first offset not taken once the table has
 * caught up (what the caller does with `reached`).
 */
export class TableCatchUp {
  /** Task partition → table input → the offset it must reach. */
  private readonly targets = new Map<number, Map<number, number>>();
  /** Task partition → stream inputs paused while it waits. */
  private readonly held = new Map<number, Set<number>>();

  constructor(private readonly tables: ReadonlySet<number>, inputs: number) {
    // With only tables (a table-table join) there is nothing to hold back.
    if (tables.size === inputs) this.tables = new Set();
  }

  /** Whether the plan has table inputs to read first. */
  get active(): boolean {
    return this.tables.size > 0;
  }

  isTable(input: number): boolean {
    return this.tables.has(input);
  }

  tableInputs(): number[] {
    return [...this.tables];
  }

  /** The table input must reach `end` before the partition's stream records are taken (start: where it reads from). */
  await(partition: number, input: number, start: number, end: number): void {
    if (start >= end) return;
    let t = this.targets.get(partition);
    if (!t) this.targets.set(partition, (t = new Map()));
    t.set(input, end);
  }

  /** Partitions still waiting, with the table inputs and offsets they wait for. */
  waiting(): ReadonlyMap<number, ReadonlyMap<number, number>> {
    return this.targets;
  }

  /** Whether records of this input and partition must not be taken yet. */
  holds(partition: number, input: number): boolean {
    return !this.tables.has(input) && this.targets.has(partition);
  }

  /** Notes a stream input paused while its partition waits; true the first time (the caller pauses it). */
  hold(partition: number, input: number): boolean {
    let h = this.held.get(partition);
    if (!h) this.held.set(partition, (h = new Set()));
    if (h.has(input)) return false;
    h.add(input);
    return true;
  }

  /**
   * The table input has read up to `next` in the partition. When every table input of the partition has reached its
   * end, returns the stream inputs that were paused (to seek back and resume); otherwise undefined.
   */
  reached(partition: number, input: number, next: number): number[] | undefined {
    const t = this.targets.get(partition);
    const end = t?.get(input);
    if (end === undefined || next < end) return undefined;
    t!.delete(input);
    if (t!.size) return undefined;
    this.targets.delete(partition);
    const paused = [...(this.held.get(partition) ?? [])];
    this.held.delete(partition);
    return paused;
  }

  /** Forgets partitions (revoked, or about to wait again after a rewind). */
  drop(partitions: Iterable<number>): void {
    for (const p of partitions) {
      this.targets.delete(p);
      this.held.delete(p);
    }
  }

  /** Stream inputs paused for a partition (a rewind seeks them anyway, and must resume them). */
  pausedOf(partition: number): number[] {
    return [...(this.held.get(partition) ?? [])];
  }
}

import type { Stage, StageContext, StatefulStage, StreamRecord } from '../records.ts';
import type { OptimizedPlan } from './optimize.ts';
import type { PlanNode, SinkSpec, StageBuild, TopologyPlan } from './plan.ts';
import { GlobalTable } from '../state/global-table.ts';

/** Records a stage took in, passed on and rejected (dead letters), over some batches. */
export interface StageCounts {
  stage: string;
  in: number;
  out: number;
  deadLetters: number;
}

/**
 * Runs a plan's tree over batches: stage instances of its own, records routed through branches, and what reaches a
 * sink collected per sink. Used by the runtime and by the test driver alike, so both run the same code.
 */
export class PlanExecutor {
  private readonly stages = new Map<string, Stage>();
  readonly stateful: StatefulStage[] = [];
  readonly sinks: SinkSpec[] = [];
  /** The plan's global tables, by topic: the runtime (or the test driver) fills them, the join stages read them. */
  readonly globalTables = new Map<string, GlobalTable>();
  /** The direct reader, when the plan was optimised and the direct-json-rows rewrite applied. */
  readonly direct: OptimizedPlan['direct'];

  constructor(readonly plan: TopologyPlan | OptimizedPlan) {
    this.direct = 'direct' in plan ? plan.direct : undefined;
    for (const g of plan.globalTables ?? []) this.globalTables.set(g.topic, new GlobalTable(g));
    const build: StageBuild = {
      globalTable: (topic) => {
        const t = this.globalTables.get(topic);
        if (!t) throw new Error(`no global table of ${topic} in the plan`);
        return t;
      },
    };
    const seen = new Set<string>();
    const visit = (n: PlanNode) => {
      if (seen.has(n.id)) return; // a node of two parents (merge, join) has one instance
      seen.add(n.id);
      if (n.stage) {
        const stage = n.stage(build);
        this.stages.set(n.id, stage);
        if (stage.stateful) this.stateful.push(stage.stateful);
      }
      if (n.sink) this.sinks.push(n.sink);
      n.children.forEach(visit);
    };
    for (const source of plan.sources) {
      visit(source);
      this.roots.set(source.sourceTopic!, source);
    }
  }

  /** Each source node by its topic: a batch (one topic's records) enters the plan there. */
  private readonly roots = new Map<string, PlanNode>();

  /** Lets every stage do its asynchronous preparation for a batch (see Stage.prepare). */
  async prepare(batch: StreamRecord[]): Promise<void> {
    for (const stage of this.stages.values()) if (stage.prepare) await stage.prepare(batch);
  }

  get needsPrepare(): boolean {
    return [...this.stages.values()].some((s) => s.prepare);
  }

  /** Runs one batch from the source; what reaches each sink is appended to out (by sink name). */
  run(batch: StreamRecord[], ctx: StageContext, out: Map<string, StreamRecord[]>): void {
    if (!batch.length) return;
    this.ctx = ctx;
    const root = this.roots.size === 1 ? this.plan.root : this.roots.get(batch[0].topic);
    if (!root) throw new Error(`records of ${batch[0].topic}, which the topology does not read`);
    this.visit(root, batch, this.counting, out);
  }

  /** Records in, out and dead-lettered per stage since the last call (for the per-batch metrics), by stage name. */
  takeCounts(): StageCounts[] {
    const out = [...this.counts.values()].filter((c) => c.in || c.deadLetters);
    this.counts.clear();
    return out;
  }

  /** Records that skipped the stages the direct reader replaces count as in and out of it. */
  countDirect(n: number): void {
    if (n) this.count('direct-json-rows', n, n);
  }

  private ctx: StageContext | undefined;
  private current: StageCounts | undefined;
  private readonly counts = new Map<string, StageCounts>();
  private readonly counting: StageContext = {
    deadLetter: (r, reason, message) => {
      if (this.current) this.current.deadLetters++;
      this.ctx!.deadLetter(r, reason, message);
    },
    late: (r, stage) => this.ctx!.late(r, stage),
  };

  private count(name: string, n: number, out: number): StageCounts {
    let c = this.counts.get(name);
    if (!c) this.counts.set(name, (c = { stage: name, in: 0, out: 0, deadLetters: 0 }));
    c.in += n;
    c.out += out;
    return c;
  }

  private visit(node: PlanNode, records: StreamRecord[], ctx: StageContext, out: Map<string, StreamRecord[]>, from?: PlanNode): void {
    if (!records.length) return;
    if (node.sink) {
      let list = out.get(node.sink.name);
      if (!list) out.set(node.sink.name, (list = []));
      for (const r of records) list.push(r);
      return;
    }
    let result = records;
    const stage = this.stages.get(node.id);
    if (stage) {
      this.current = this.count(stage.name, records.length, 0);
      const side = node.parents && from ? node.parents.indexOf(from.id) : -1;
      result = side >= 0 && isTwoSided(stage) ? stage.processSide(side as 0 | 1, records, ctx) : stage.process(records, ctx);
      this.current.out += result.length;
      this.current = undefined;
    }
    if (node.predicates) {
      const arms: StreamRecord[][] = node.predicates.map(() => []);
      for (const r of result) {
        const i = node.predicates.findIndex((p) => p(r.value, r.key));
        if (i >= 0) arms[i].push(r);
      }
      node.children.forEach((c, i) => this.visit(c, arms[i], ctx, out, node));
      return;
    }
    // Stages change records in place, so every child after the first gets copies of its own, made before any runs.
    const inputs = node.children.map((_, i) => (i === 0 ? result : result.map((r) => ({ ...r }))));
    node.children.forEach((c, i) => this.visit(c, inputs[i], ctx, out, node));
  }
}

/** A stage where two streams meet that tells their records apart (a join): 0 is the left stream, 1 the right. */
export interface TwoSidedStage extends Stage {
  processSide(side: 0 | 1, batch: StreamRecord[], ctx: StageContext): StreamRecord[];
}

function isTwoSided(stage: Stage): stage is TwoSidedStage {
  return typeof (stage as Partial<TwoSidedStage>).processSide === 'function';
}

import type { Stage, StageContext, StatefulStage, StreamRecord } from '../records.ts';
import type { OptimizedPlan } from './optimize.ts';
import type { PlanNode, SinkSpec, TopologyPlan } from './plan.ts';

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
  /** The direct reader, when the plan was optimised and the direct-json-rows rewrite applied. */
  readonly direct: OptimizedPlan['direct'];

  constructor(readonly plan: TopologyPlan | OptimizedPlan) {
    this.direct = 'direct' in plan ? plan.direct : undefined;
    const visit = (n: PlanNode) => {
      if (n.stage) {
        const stage = n.stage();
        this.stages.set(n.id, stage);
        if (stage.stateful) this.stateful.push(stage.stateful);
      }
      if (n.sink) this.sinks.push(n.sink);
      n.children.forEach(visit);
    };
    visit(plan.root);
  }

  /** Lets every stage do its asynchronous preparation for a batch (see Stage.prepare). */
  async prepare(batch: StreamRecord[]): Promise<void> {
    for (const stage of this.stages.values()) if (stage.prepare) await stage.prepare(batch);
  }

  get needsPrepare(): boolean {
    return [...this.stages.values()].some((s) => s.prepare);
  }

  /** Runs one batch from the source; what reaches each sink is appended to out (by sink name). */
  run(batch: StreamRecord[], ctx: StageContext, out: Map<string, StreamRecord[]>): void {
    this.ctx = ctx;
    this.visit(this.plan.root, batch, this.counting, out);
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

  private visit(node: PlanNode, records: StreamRecord[], ctx: StageContext, out: Map<string, StreamRecord[]>): void {
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
      result = stage.process(records, ctx);
      this.current.out += result.length;
      this.current = undefined;
    }
    if (node.predicates) {
      const arms: StreamRecord[][] = node.predicates.map(() => []);
      for (const r of result) {
        const i = node.predicates.findIndex((p) => p(r.value, r.key));
        if (i >= 0) arms[i].push(r);
      }
      node.children.forEach((c, i) => this.visit(c, arms[i], ctx, out));
      return;
    }
    // Stages change records in place, so every child after the first gets copies of its own, made before any runs.
    const inputs = node.children.map((_, i) => (i === 0 ? result : result.map((r) => ({ ...r }))));
    node.children.forEach((c, i) => this.visit(c, inputs[i], ctx, out));
  }
}

import type { Stage, StageContext, StatefulStage, StreamRecord } from '../records.ts';
import type { PlanNode, SinkSpec, TopologyPlan } from './plan.ts';

/**
 * Runs a plan's tree over batches: stage instances of its own, records routed through branches, and what reaches a
 * sink collected per sink. Used by the runtime and by the test driver alike, so both run the same code.
 */
export class PlanExecutor {
  private readonly stages = new Map<string, Stage>();
  readonly stateful: StatefulStage[] = [];
  readonly sinks: SinkSpec[] = [];

  constructor(readonly plan: TopologyPlan) {
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
    this.visit(this.plan.root, batch, ctx, out);
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
    if (stage) result = stage.process(records, ctx);
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

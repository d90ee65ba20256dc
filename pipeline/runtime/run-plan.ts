import { optimize } from '../dsl/optimize.ts';
import { sinksOf, storesOf, type TopologyPlan } from '../dsl/plan.ts';
import { ensureTopics } from '../kafka/admin.ts';
import { DeadLetterRelay } from '../postgres/dead-letters.ts';
import { sinkOf } from '../sinks/index.ts';
import { KafkaSource } from '../sources/kafka-source.ts';
import type { SourceFactory } from '../sources/source.ts';
import type { TopologyContext } from '../topology.ts';
import { PostgresCommitter } from './committer.ts';
import { TaskObserver } from './observer.ts';
import { Progress } from './progress.ts';
import { Aborted, retry } from './retry.ts';
import type { PlanRef } from './stage-workers.ts';
import { StreamTask, type BatchPolicy } from './stream-task.ts';

/** How a plan runs from a Kafka topic into Postgres: the common flags of such topologies, as values. */
export interface RunPlanSettings {
  /** Partitions of the source and dead-letter topics when they are created. */
  partitions: number;
  dlqTopic: string;
  /** The consumer group, also the key of the offsets in Postgres. */
  groupId: string;
  batch: BatchPolicy;
  maxPollRecords: number;
  lanes: number;
  stageThreads: number;
  /** false: no record is read straight into its row (the direct-json-rows rewrite is not applied). */
  directJson: boolean;
  stopWhenIdleMs?: number;
  /** The source, when it is not the plan's Kafka topic (a file), with its partition count. */
  source?: { create: SourceFactory; partitions: number };
  planRef?: PlanRef;
}

/**
 * Runs a plan on the runtime from its source (the plan's Kafka topic, or s.source) into its sinks: topics created,
 * the plan optimised, offsets and rows committed by the PostgresCommitter, dead letters relayed. s.planRef names the
 * function that built the plan, for stage workers to build their own.
 */
export async function runPlan(name: string, plan: TopologyPlan, ctx: TopologyContext, s: RunPlanSettings): Promise<void> {
  const topics = [...(s.source ? [] : [plan.topic]), s.dlqTopic].map((t) => ({ name: t, partitions: s.partitions }));
  try {
    await retry('creating topics', () => ensureTopics(ctx.kafka, topics), ctx.log, ctx.signal);
  } catch (err) {
    if (err instanceof Aborted) return;
    throw err;
  }
  const db = ctx.database();
  const sourcePartitions = s.source?.partitions;
  const sinks = sinksOf(plan).map((spec) => sinkOf(spec, { applicationId: plan.applicationId, sourceTopic: plan.topic, dlqTopic: s.dlqTopic }));
  const table = sinks.filter((k) => k.write).map((k) => k.label).join(',') || 'none';
  const task = new StreamTask({
    topology: name,
    plan: optimize(plan, { directJson: s.directJson }),
    source: s.source?.create ?? ((listener) => new KafkaSource(ctx.kafka, plan.topic, s.groupId, listener)),
    committer: new PostgresCommitter({
      db, kafka: ctx.kafka, applicationId: plan.applicationId, groupId: s.groupId, topic: plan.topic, sinks, stores: storesOf(plan),
      partitions: sourcePartitions === undefined ? undefined : async () => sourcePartitions, log: ctx.log,
    }),
    sinks,
    dlqTopic: s.dlqTopic,
    deadLetters: new DeadLetterRelay(db, ctx.kafka, ctx.metrics, ctx.log),
    batch: s.batch,
    maxPollRecords: s.maxPollRecords,
    lanes: s.lanes,
    stageThreads: s.stageThreads,
    planRef: s.planRef,
    directJson: s.directJson,
    stopWhenIdleMs: s.stopWhenIdleMs,
    drain: ctx.drain,
    observer: new TaskObserver(ctx.metrics, new Progress(name, 'rec'), name, plan.topic, table),
    log: ctx.log,
    signal: ctx.signal,
  });
  const readiness = setInterval(() => ctx.setReady(task.ready), 500);
  readiness.unref();
  try {
    await task.run();
  } finally {
    clearInterval(readiness);
  }
}

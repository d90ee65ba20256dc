import { optimize } from '../dsl/optimize.ts';
import { isRepartitionTopic, REPARTITION_TOPIC_CONFIG, sinksOf, storesOf, type TopologyPlan } from '../dsl/plan.ts';
import { checkCoPartitioned, ensureTopics } from '../kafka/admin.ts';
import { KafkaGlobalTables } from '../kafka/global-tables.ts';
import { DeadLetterRelay } from '../postgres/dead-letters.ts';
import { sinkOf } from '../sinks/index.ts';
import { KafkaSource } from '../sources/kafka-source.ts';
import type { SourceFactory } from '../sources/source.ts';
import type { TopologyContext } from '../topology.ts';
import { PostgresCommitter, type Committer } from './committer.ts';
import { KafkaCommitter } from './kafka-committer.ts';
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
  /** true: COPY every row as text, also those the direct reader could write in binary (for comparison). */
  textCopy?: boolean;
  stopWhenIdleMs?: number;
  /**
   * exactly-once (the default): Postgres sinks commit with the source offsets in Postgres; a plan whose sinks are all
   * Kafka topics commits with Kafka transactions (offsets in the group). at-least-once: such a plan produces, then
   * commits the offsets to the group. Either way a topic sink of a plan that also writes Postgres is at least once.
   */
  processingGuarantee?: 'exactly-once' | 'at-least-once';
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
  if (plan.subtopologies && plan.subtopologies.length > 1) return runSubtopologies(name, plan, plan.subtopologies, ctx, s);
  const topics = topicsOf(plan, s.source ? [] : plan.inputs, s);
  for (const g of plan.globalTables ?? []) topics.push({ name: g.topic, partitions: s.partitions, config: { 'cleanup.policy': 'compact' } });
  try {
    await retry('creating topics', () => ensureTopics(ctx.kafka, topics), ctx.log, ctx.signal);
    if (!s.source && plan.inputs.length > 1) await retry('reading the inputs\' partition counts', () => checkCoPartitioned(ctx.kafka, plan.inputs), ctx.log, ctx.signal);
  } catch (err) {
    if (err instanceof Aborted) return;
    throw err;
  }
  const sourcePartitions = s.source?.partitions;
  const sinks = sinksOf(plan).map((spec) => sinkOf(spec, { applicationId: plan.applicationId, sourceTopic: plan.topic, dlqTopic: s.dlqTopic }));
  const table = sinks.filter((k) => k.write).map((k) => k.label).join(',') || 'none';
  let kafkaSource: KafkaSource | undefined;
  const source: SourceFactory = s.source?.create ?? ((listener) => (kafkaSource = new KafkaSource(ctx.kafka, plan.inputs, s.groupId, listener)));
  // Every sink a topic, read from Kafka: committed to Kafka, no database.
  const kafkaOnly = !s.source && sinks.every((k) => k.produce && !k.write);
  const db = kafkaOnly ? undefined : ctx.database();
  const committer: Committer = db
    ? new PostgresCommitter({
      db, kafka: ctx.kafka, applicationId: plan.applicationId, groupId: s.groupId, topic: plan.topic, sinks, stores: storesOf(plan),
      partitions: sourcePartitions === undefined ? undefined : async () => sourcePartitions, log: ctx.log,
    })
    : new KafkaCommitter({
      kafka: ctx.kafka, applicationId: plan.applicationId, groupId: s.groupId, topic: plan.topic, sinks, stores: storesOf(plan), log: ctx.log,
      consumer: () => kafkaSource!.groupConsumer, transactional: (s.processingGuarantee ?? 'exactly-once') === 'exactly-once',
    });
  const task = new StreamTask({
    topology: name,
    plan: optimize(plan, { directJson: s.directJson }),
    source,
    committer,
    sinks,
    dlqTopic: s.dlqTopic,
    deadLetters: db && new DeadLetterRelay(db, ctx.kafka, s.dlqTopic, ctx.metrics, ctx.log),
    batch: s.batch,
    maxPollRecords: s.maxPollRecords,
    lanes: s.lanes,
    stageThreads: s.stageThreads,
    planRef: s.planRef,
    directJson: s.directJson,
    textCopy: s.textCopy,
    globalTables: (tables) => new KafkaGlobalTables(ctx.kafka, tables, ctx.log, s.groupId),
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

/** The topics a plan reads, and its dead-letter topic, to create: repartition topics with their own config. */
function topicsOf(plan: TopologyPlan, inputs: readonly string[], s: RunPlanSettings): { name: string; partitions: number; config?: Record<string, string> }[] {
  return [...inputs, s.dlqTopic].map((t) => ({
    name: t, partitions: s.partitions, ...(isRepartitionTopic(plan.applicationId, t) ? { config: { ...REPARTITION_TOPIC_CONFIG } } : {}),
  }));
}

/**
 * A plan with repartition topics: each sub-topology runs as tasks of its own, in this process, with a consumer group
 * of its own (`<group>-<i>`) and its own committer. One that only writes topics (a repartition topic among them)
 * commits with Kafka transactions, so a record goes through a repartition topic exactly once as well.
 */
async function runSubtopologies(name: string, plan: TopologyPlan, subs: TopologyPlan[], ctx: TopologyContext, s: RunPlanSettings): Promise<void> {
  if (s.source) throw new Error(`${name}: a plan with repartition topics reads Kafka topics`);
  const topics = topicsOf(plan, plan.inputs, s);
  try {
    await retry('creating topics', () => ensureTopics(ctx.kafka, topics), ctx.log, ctx.signal);
  } catch (err) {
    if (err instanceof Aborted) return;
    throw err;
  }
  // One sub-topology failing stops the others (a downstream one would wait for good for what the failed one writes).
  const stop = new AbortController();
  ctx.signal.addEventListener('abort', () => stop.abort(), { once: true });
  const subCtx: TopologyContext = { ...ctx, signal: stop.signal };
  const runs = subs.map((sub, i) => runPlan(`${name}[${i}]`, sub, subCtx, { ...s, groupId: `${s.groupId}-${i}`, planRef: undefined, stageThreads: 0 })
    .catch((err: unknown) => { stop.abort(); throw err; }));
  const results = await Promise.allSettled(runs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

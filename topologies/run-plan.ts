import { ensureTopics, topicName } from '../pipeline/kafka/admin.ts';
import { tableName } from '../pipeline/postgres/db.ts';
import { describeMermaid, describeText, type TopologyPlan } from '../pipeline/dsl/plan.ts';
import { DeadLetterRelay } from '../pipeline/postgres/dead-letters.ts';
import { Progress } from '../pipeline/runtime/progress.ts';
import { Aborted, retry } from '../pipeline/runtime/retry.ts';
import type { PlanRef } from '../pipeline/runtime/stage-workers.ts';
import { MAX_POLL_RECORDS, StreamTask } from '../pipeline/runtime/stream-task.ts';
import type { OptionSpec, OptionValues } from '../pipeline/config/options.ts';
import type { TopologyContext } from '../pipeline/topology.ts';

/** The flags every topology that consumes a topic into Postgres takes. */
export const consumerOptions = (defaults: { group: string; batch: number; lanes?: number }): OptionSpec[] => [
  { name: 'topic', type: 'string', default: 'orders', help: 'topic to produce to, or read from' },
  { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic when it is created' },
  { name: 'dlq-topic', type: 'string', help: 'dead-letter topic (default: <topic>.dlq)' },
  { name: 'group-id', type: 'string', default: defaults.group, help: 'consumer group, also the key of the offsets in Postgres' },
  { name: 'batch-size', type: 'int', min: 1, max: 1_000_000, default: defaults.batch, help: 'records per flush (one transaction)' },
  { name: 'max-poll-records', type: 'int', min: 1, max: 100_000, default: MAX_POLL_RECORDS, help: 'records one poll takes from the consumer at most (Kafka Streams\' max.poll.records); a poll returns early at the end of the partitions' },
  { name: 'batch-wait-ms', type: 'int', min: 1, max: 600_000, default: 250, help: 'longest time a record waits for its flush' },
  { name: 'sink-connections', type: 'int', min: 1, max: 16, default: defaults.lanes ?? 1, help: 'flushes written at once, each on its own connection for a disjoint set of partitions (helps when Postgres, not this process, is the bottleneck)' },
  { name: 'stop-when-idle', type: 'number', min: 0, help: 'exit 0 once everything read is committed and nothing new came for this many seconds' },
];

/**
 * For stateless plans whose sinks are Postgres tables: worker threads that run the stages and the COPY encoding.
 * The main thread keeps reading Kafka (node-rdkafka cannot run in a worker) and writing the flushes.
 */
export const stageThreadsOption = (defaultThreads: number): OptionSpec => ({
  name: 'stage-threads', type: 'int', min: 0, max: 16, default: defaultThreads,
  help: 'worker threads that parse, validate and encode records (0: all on the main thread)',
});

/** For plans that validate JSON with a local schema straight into a table's columns by name (codec/json-rows.ts). */
export const genericJsonOption: OptionSpec = {
  name: 'generic-json', type: 'bool',
  help: 'parse every value with JSON.parse and validate it with ajv, also those the direct reader would read straight into rows (for comparison)',
};

export const dlqTopicOf = (v: OptionValues) => (v['dlq-topic'] as string | undefined) ?? `${v.topic as string}.dlq`;

/** The names the common flags give, checked before anything connects (they reach Kafka and SQL). */
export function validateNames(v: OptionValues): void {
  topicName(v.topic as string);
  topicName(dlqTopicOf(v), '--dlq-topic');
  tableName(v.table as string);
}

/** --describe (text) or --describe=mermaid of a plan. */
export function describePlan(plan: TopologyPlan, v: OptionValues): string {
  return v.describe === 'mermaid' ? describeMermaid(plan, dlqTopicOf(v)) : describeText(plan, dlqTopicOf(v));
}

/**
 * Runs a plan on the runtime with the common flags: topics created, offsets in Postgres, dead letters relayed.
 * planRef names the function that built the plan, for stage workers to build their own (--stage-threads).
 */
export async function runPlan(name: string, plan: TopologyPlan, ctx: TopologyContext, v: OptionValues, planRef?: PlanRef): Promise<void> {
  const dlqTopic = dlqTopicOf(v);
  const partitions = v.partitions as number;
  try {
    await retry('creating topics', () => ensureTopics(ctx.kafka, [{ name: plan.topic, partitions }, { name: dlqTopic, partitions }]), ctx.log, ctx.signal);
  } catch (err) {
    if (err instanceof Aborted) return;
    throw err;
  }
  const db = ctx.database();
  const task = new StreamTask({
    topology: name,
    conn: ctx.kafka,
    db,
    plan,
    groupId: v['group-id'] as string,
    dlqTopic,
    relay: new DeadLetterRelay(db, ctx.kafka, ctx.metrics, ctx.log),
    batch: { maxRecords: v['batch-size'] as number, maxWaitMs: v['batch-wait-ms'] as number },
    maxPollRecords: v['max-poll-records'] as number,
    lanes: v['sink-connections'] as number,
    stageThreads: (v['stage-threads'] as number | undefined) ?? 0,
    planRef,
    directJson: !v['generic-json'],
    stopWhenIdleMs: v['stop-when-idle'] === undefined ? undefined : (v['stop-when-idle'] as number) * 1000,
    drain: ctx.drain,
    metrics: ctx.metrics,
    progress: new Progress(name, 'rec'),
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

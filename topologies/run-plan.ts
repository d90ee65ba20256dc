import {
  describeMermaid, describeText, MAX_POLL_RECORDS, optimize, runPlan, sinksOf, tableName, topicName,
  type OptionSpec, type PlanRef, type RunPlanSettings, type TopologyContext, type TopologyPlan, type ValuesOf,
} from '../pipeline/index.ts';

/** The flags every topology that consumes a topic into Postgres takes. */
export const consumerOptions = (defaults: { group: string; batch: number; lanes?: number }) => [
  { name: 'topic', type: 'string', default: 'orders', help: 'topic to produce to, or read from' },
  { name: 'partitions', type: 'int', min: 1, max: 1000, default: 6, help: 'partitions of the topic when it is created' },
  { name: 'dlq-topic', type: 'string', help: 'dead-letter topic (default: <topic>.dlq)' },
  { name: 'group-id', type: 'string', default: defaults.group, help: 'consumer group, also the key of the offsets in Postgres' },
  { name: 'batch-size', type: 'int', min: 1, max: 1_000_000, default: defaults.batch, help: 'records per flush (one transaction)' },
  { name: 'max-poll-records', type: 'int', min: 1, max: 100_000, default: MAX_POLL_RECORDS, help: 'records one poll takes from the consumer at most (Kafka Streams\' max.poll.records); a poll returns early at the end of the partitions' },
  { name: 'batch-wait-ms', type: 'int', min: 1, max: 600_000, default: 250, help: 'longest time a record waits for its flush' },
  { name: 'sink-connections', type: 'int', min: 1, max: 16, default: defaults.lanes ?? 1, help: 'flushes written at once, each on its own connection for a disjoint set of partitions (helps when Postgres, not this process, is the bottleneck)' },
  { name: 'stop-when-idle', type: 'number', min: 0, help: 'exit 0 once everything read is committed and nothing new came for this many seconds' },
  { name: 'processing-guarantee', type: 'string', choices: ['exactly-once', 'at-least-once'], default: 'exactly-once', help: 'for a topology whose sinks are all Kafka topics: Kafka transactions (exactly-once), or produce then commit the offsets (at-least-once); Postgres sinks are always exactly once' },
] as const satisfies readonly OptionSpec[];

/** What the common flags give, and the optional ones of some topologies. */
export type ConsumerValues = ValuesOf<ReturnType<typeof consumerOptions>> & { table: string; 'stage-threads'?: number; 'generic-json'?: boolean | undefined; 'text-copy'?: boolean | undefined };

/**
 * For stateless plans whose sinks are Postgres tables: worker threads that run the stages and the COPY encoding.
 * The main thread keeps reading Kafka (node-rdkafka cannot run in a worker) and writing the flushes.
 */
export const stageThreadsOption = (defaultThreads: number) => ({
  name: 'stage-threads', type: 'int', min: 0, max: 16, default: defaultThreads,
  help: 'worker threads that parse, validate and encode records (0: all on the main thread)',
}) as const satisfies OptionSpec;

/** For plans that validate JSON with a local schema straight into a table's columns by name (codec/json-rows.ts). */
export const genericJsonOption = {
  name: 'generic-json', type: 'bool',
  help: 'parse every value with JSON.parse and validate it with ajv, also those the direct reader would read straight into rows (for comparison)',
} as const satisfies OptionSpec;

/** For plans whose direct reader's rows can go to Postgres in COPY's binary format (codec/copy-binary.ts). */
export const textCopyOption = {
  name: 'text-copy', type: 'bool',
  help: 'COPY every row as text, also those that would go in binary (for comparison)',
} as const satisfies OptionSpec;

export const dlqTopicOf = (v: { topic: string; 'dlq-topic': string | undefined }) => v['dlq-topic'] ?? `${v.topic}.dlq`;

/** The names the common flags give, checked before anything connects (they reach Kafka and SQL). */
export function validateNames(v: ConsumerValues): void {
  topicName(v.topic);
  topicName(dlqTopicOf(v), '--dlq-topic');
  tableName(v.table);
}

/** --describe (text) or --describe=mermaid of a plan. */
export function describePlan(plan: TopologyPlan, v: ConsumerValues & { describe: string | undefined }): string {
  const optimized = optimize(plan, { directJson: !v['generic-json'] });
  if (v.describe === 'mermaid') return describeMermaid(optimized, dlqTopicOf(v));
  const guarantee = (p: TopologyPlan) => (!sinksOf(p).every((s) => s.kind === 'topic')
    ? 'exactly-once (every Postgres sink in the transaction with the source offsets; a topic sink next to them at least once)'
    : v['processing-guarantee'] === 'at-least-once' ? 'at-least-once (produced, then the offsets committed to the group)'
      : 'exactly-once (a Kafka transaction per task: outputs, changelog, dead letters and offsets; read them with isolation.level=read_committed)');
  const lines = plan.subtopologies
    ? plan.subtopologies.map((sub, i) => `  processing guarantee of sub-topology ${i}: ${guarantee(sub)}`)
    : [`  processing guarantee: ${guarantee(plan)}`];
  return [describeText(optimized, dlqTopicOf(v)), ...lines].join('\n');
}

/** The common flags of a topology that consumes a topic into Postgres, read once into the runtime's settings. */
export function runSettings(v: ConsumerValues): RunPlanSettings {
  return {
    partitions: v.partitions,
    dlqTopic: dlqTopicOf(v),
    groupId: v['group-id'],
    batch: { maxRecords: v['batch-size'], maxWaitMs: v['batch-wait-ms'] },
    maxPollRecords: v['max-poll-records'],
    lanes: v['sink-connections'],
    stageThreads: v['stage-threads'] ?? 0,
    directJson: !v['generic-json'],
    textCopy: v['text-copy'] === true,
    stopWhenIdleMs: v['stop-when-idle'] === undefined ? undefined : v['stop-when-idle'] * 1000,
    processingGuarantee: v['processing-guarantee'],
  };
}

/** Runs a plan on the runtime with the common flags (see runPlan). */
export function runWithFlags(name: string, plan: TopologyPlan, ctx: TopologyContext, v: ConsumerValues, planRef?: PlanRef): Promise<void> {
  return runPlan(name, plan, ctx, { ...runSettings(v), planRef });
}

/** The groups of a plan's inputs that must be co-partitioned (each sub-topology's, when it has several). */
export function copartitionedInputs(plan: TopologyPlan): string[][] {
  return (plan.subtopologies ?? [plan]).map((p) => p.inputs).filter((g) => g.length > 1);
}

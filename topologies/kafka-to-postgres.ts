import path from 'node:path';
import { readFileSync } from 'node:fs';
import {
  Aborted, ConfigError, connectorPlan, SchemaChanged, defineTopology, errorMessage, loadConnectorConfigs, registryFromEnv, retry, sibling, tableColumns,
  type ConnectorPipeline, type ConnectorPlanArgs, type TopologyContext, type ValuesOf,
} from '../pipeline/index.ts';
import { consumerOptions, describePlan, genericJsonOption, runWithFlags, stageThreadsOption, textCopyOption } from './run-plan.ts';

const options = [
  { name: 'config', type: 'list', help: 'a connector config, JSON or YAML (schemas/connector.schema.json); repeatable, all run in one process' },
  // Two flushes at once, as orders-ingest: Postgres is what bounds an upsert, and a second connection gives it the
  // second core (`npm run bench -- upsert --sink-connections 1|2`, docs/performance.md).
  ...consumerOptions({ group: 'kafka-to-postgres', batch: 10_000, lanes: 2 }),
  stageThreadsOption(1),
  genericJsonOption,
  textCopyOption,
] as const;

type Values = ValuesOf<typeof options>;

const configs = new WeakMap<object, ConnectorPipeline[]>();
const pipelinesOf = (v: Values) => {
  let p = configs.get(v);
  if (!p) configs.set(v, (p = loadConnectorConfigs(v.config ?? [])));
  return p;
};

/** A pipeline's schema, where it came from, and for a registry subject the version's id. */
type ResolvedSchema = { schema: object; name: string; registry?: { subject: string; id: number } };

/** A pipeline's schema file, read. */
function schemaFile(p: ConnectorPipeline, file: string): ResolvedSchema {
  try {
    return { schema: JSON.parse(readFileSync(file, 'utf8')) as object, name: path.relative(process.cwd(), file) };
  } catch (err) {
    throw new ConfigError(`${p.origin}/schema: ${file} is not a readable JSON Schema file (${errorMessage(err)})`);
  }
}

/** Each topic of a pipeline as a plan's arguments, with its schema. */
function planArgs(p: ConnectorPipeline, s: ResolvedSchema): ConnectorPlanArgs[] {
  const columns = tableColumns(s.schema as Record<string, unknown>, p.columns, p.key, p.origin);
  return p.topics.map((topic) => ({
    pipeline: p.topics.length > 1 ? `${p.name}-${topic}` : p.name, topic, table: p.table, key: p.key, mode: p.mode,
    deleteOnTombstone: p.deleteOnTombstone, autoCreate: p.autoCreate, autoEvolve: p.autoEvolve, schema: s.schema, schemaName: s.name, columns,
    registry: s.registry,
  }));
}

function checked(p: ConnectorPipeline, build: () => ReturnType<typeof connectorPlan>) {
  try {
    return build();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${p.origin}: ${errorMessage(err)}`);
  }
}

/** The common flags as one pipeline's topic sees them: the config's own settings win. */
function valuesFor(v: Values, p: ConnectorPipeline, a: ConnectorPlanArgs) {
  return {
    ...v, topic: a.topic, table: a.table, 'dlq-topic': p.deadLetterTopic ?? `${a.topic}.dlq`,
    'group-id': p.groupId ?? `${v['group-id']}-${p.name}`,
    'batch-size': p.batchSize ?? v['batch-size'], 'sink-connections': p.sinkConnections ?? v['sink-connections'],
    // A registry pipeline's schema gate prepares each batch where its SchemaChanged reaches the pipeline: here.
    'stage-threads': a.registry ? 0 : v['stage-threads'],
  };
}

const PLAN_MODULE = sibling('../pipeline/connector/plan.ts', import.meta.url);

/** retry(), but undefined once the run is stopped. */
async function retryUnlessStopped<T>(what: string, fn: () => Promise<T>, ctx: TopologyContext): Promise<T | undefined> {
  try {
    return await retry(what, fn, ctx.log, ctx.signal);
  } catch (err) {
    if (err instanceof Aborted) return undefined;
    throw err;
  }
}

/** A pipeline's schema: its file, or its subject's latest version in the registry (undefined once stopped). */
async function resolveSchema(p: ConnectorPipeline, ctx: TopologyContext): Promise<ResolvedSchema | undefined> {
  if ('file' in p.schema) return schemaFile(p, p.schema.file);
  const registry = registryFromEnv();
  if (!registry) throw new ConfigError(`${p.origin}/schema: a registry subject needs SCHEMA_REGISTRY_URL`);
  const subject = p.schema.subject;
  const latest = await retryUnlessStopped(`reading subject ${subject} from the registry`, () => registry.latestSchema(subject), ctx);
  return latest && { schema: latest.schema, name: `registry subject ${subject}, version ${latest.version}`, registry: { subject, id: latest.id } };
}

/**
 * Runs every topic of every pipeline. A pipeline on a registry subject that meets a record of a newer version
 * (SchemaChanged, before any record of that batch is taken) is built again from the new version, its table evolved
 * at setup, and goes on from its committed offsets.
 */
async function run(ctx: TopologyContext, v: Values): Promise<void> {
  const jobs: { p: ConnectorPipeline; topic: number; first: ResolvedSchema }[] = [];
  for (const p of pipelinesOf(v)) {
    const first = await resolveSchema(p, ctx);
    if (!first) return;
    p.topics.forEach((_t, topic) => jobs.push({ p, topic, first }));
  }
  if (ctx.signal.aborted) return;
  // One pipeline failing stops the others (then the run fails with its error); each stops with the process otherwise.
  const stop = new AbortController();
  ctx.signal.addEventListener('abort', () => stop.abort(), { once: true });
  const names = (p: ConnectorPipeline, topic: number) => (p.topics.length > 1 ? `${p.name}-${p.topics[topic]}` : p.name);
  const ready = new Map(jobs.map((j) => [names(j.p, j.topic), false]));
  const runs = jobs.map(async ({ p, topic, first }) => {
    const name = names(p, topic);
    const sub: TopologyContext = {
      ...ctx, signal: stop.signal, log: (line) => ctx.log(`[${name}] ${line}`),
      setReady: (r) => { ready.set(name, r); ctx.setReady([...ready.values()].every(Boolean)); },
    };
    try {
      for (let schema: ResolvedSchema | undefined = first; schema; ) {
        const a = planArgs(p, schema)[topic];
        try {
          await runWithFlags(a.pipeline, checked(p, () => connectorPlan(a)), sub, valuesFor(v, p, a), { module: PLAN_MODULE, export: 'connectorPlan', args: [a] });
          return;
        } catch (err) {
          if (!(err instanceof SchemaChanged) || stop.signal.aborted) throw err;
          sub.log(`${errorMessage(err)}: building the pipeline again from it`);
          schema = await resolveSchema(p, sub);
        }
      }
    } catch (err) {
      stop.abort();
      throw err;
    }
  });
  const results = await Promise.allSettled(runs);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

export const kafkaToPostgres = defineTopology({
  name: 'kafka-to-postgres',
  description: 'Moves JSON topics into Postgres tables as --config says (append or upsert, deletes on tombstones, auto-create), exactly once.',
  uses: { kafka: true, postgres: true },
  options,
  validate: (v) => {
    for (const p of pipelinesOf(v)) if ('file' in p.schema) for (const a of planArgs(p, schemaFile(p, p.schema.file))) checked(p, () => connectorPlan(a));
  },
  topics: (v) => ({ reads: pipelinesOf(v).flatMap((p) => p.topics), writes: pipelinesOf(v).flatMap((p) => p.topics.map((t) => p.deadLetterTopic ?? `${t}.dlq`)) }),
  describe: (v) => pipelinesOf(v).map((p) => {
    if (!('file' in p.schema)) return `pipeline ${p.name}: topics ${p.topics.join(', ')} -> table ${p.table} (${p.mode}); schema from registry subject ${p.schema.subject}, read at start`;
    return planArgs(p, schemaFile(p, p.schema.file)).map((a) => describePlan(checked(p, () => connectorPlan(a)), valuesFor(v, p, a))).join('\n\n');
  }).join('\n\n'),
  run,
});

import { StreamsBuilder } from '../dsl/builder.ts';
import type { TopologyPlan } from '../dsl/plan.ts';
import { pgp } from '../postgres/db.ts';
import { registryFromEnv } from '../schema/registry.ts';
import { compileSchema } from '../schema/validator.ts';
import { schemaGate } from './schema-gate.ts';
import type { ConnectorPipeline } from './config.ts';
import { byNameColumns, createTableSql, rowOf, type Column } from './columns.ts';

// The plan alone (no node-rdkafka here): stage workers import this module to build their own copy of a pipeline's plan.

/** One topic of a connector pipeline, with its schema resolved: plain data, so it crosses to a stage worker. */
export interface ConnectorPlanArgs extends Pick<ConnectorPipeline, 'table' | 'key' | 'mode' | 'deleteOnTombstone' | 'autoCreate' | 'autoEvolve'> {
  pipeline: string;
  topic: string;
  schema: object;
  /** Where the schema came from, for --describe: a file, or a registry subject and version. */
  schemaName: string;
  /** A schema from the registry: its subject and the id of the version the pipeline runs with (see schemaGate). */
  registry?: { subject: string; id: number };
  columns: Column[];
}

/**
 * topic -> parse-json -> validate (the pipeline's schema) -> the table: COPY (append), or staging + ON CONFLICT
 * (upsert, deletes on tombstones). When every column is a top-level scalar property of its own name, rows are by
 * name, and the direct-json-rows rewrite can read them straight from the bytes (dsl/optimize.ts).
 */
export function connectorPlan(a: ConnectorPlanArgs): TopologyPlan {
  const b = new StreamsBuilder(`kafka-to-postgres-${a.pipeline}`);
  const byName = byNameColumns(a.columns);
  let stream = b.stream(a.topic, { schema: compileSchema(a.schema), schemaName: a.schemaName, tombstones: a.deleteOnTombstone ? 'pass' : undefined });
  const registry = a.registry && registryFromEnv();
  if (a.registry && registry) {
    const { subject, id } = a.registry;
    stream = stream.process(`schema version gate (subject ${subject}, schema id ${id})`, () => schemaGate(subject, id, registry));
  }
  stream
    .toPostgres({
      table: a.table,
      columns: a.columns.map((c) => c.name),
      row: byName ? undefined : rowOf(a.columns),
      keyColumns: a.key.length ? a.key : undefined,
      createSql: a.autoCreate ? createTableSql(a.columns, a.key, (n) => pgp.as.name(n)) : '',
      mode: a.mode,
      deleteOnTombstone: a.deleteOnTombstone,
      shape: { columns: a.columns.map((c) => ({ name: c.name, type: c.type })), autoEvolve: a.autoEvolve },
    });
  return b.build();
}

import { PipelineError } from '../errors.ts';
import type { Stage } from '../records.ts';
import type { SchemaRegistryClient } from '../schema/registry.ts';
import { decodeWireFormat } from '../schema/wire-format.ts';

/** A record was written with a newer version of the pipeline's subject than it runs with: evolve, then go on. */
export class SchemaChanged extends PipelineError {
  constructor(readonly subject: string, readonly id: number) {
    super('SCHEMA_CHANGED', `subject ${subject} has a newer version (schema id ${id}) than the pipeline runs with`);
  }
}

/**
 * For a pipeline whose schema is a registry subject: before a batch is taken, each schema id its records carry (the
 * Confluent wire format) that it has not met is looked up once; when the subject's latest version is no longer the
 * one the pipeline started with, it throws SchemaChanged, and the pipeline is built again from the new version (the
 * table evolved) before any record of the batch is processed: nothing of it was taken, so it is read again. Plain
 * JSON records, which name no version, are validated against the version the pipeline started with.
 */
export function schemaGate(subject: string, startedWith: number, registry: SchemaRegistryClient): Stage {
  const known = new Set<number>([startedWith]);
  return {
    name: 'schema-version-gate',
    async prepare(batch) {
      for (const r of batch) {
        const id = r.raw === null ? undefined : decodeWireFormat(r.raw)?.schemaId;
        if (id === undefined || known.has(id)) continue;
        const latest = await registry.latestSchema(subject);
        if (latest.id !== startedWith) throw new SchemaChanged(subject, latest.id);
        known.add(id); // another subject's, or an older version: the validation decides
      }
    },
    process: (batch) => batch,
  };
}

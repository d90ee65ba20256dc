import type { Stage, StreamRecord } from '../records.ts';
import { UnknownSchemaError, valueSubject, type SchemaRegistryClient } from '../schema/registry.ts';
import type { Validator } from '../schema/validator.ts';
import { decodeWireFormat } from '../schema/wire-format.ts';

/**
 * Validation with a schema registry: a wire-format message is checked against the schema its id names, a plain JSON
 * message against the subject's latest version (the local schema when the subject has none). Schemas are fetched
 * in prepare(), before the batch is processed, once per id; process() then stays synchronous.
 */
export function validateWithRegistry<T>(local: Validator<T>, registry: SchemaRegistryClient, topic: string): Stage<unknown, T> {
  const validators = new Map<number, Validator<unknown>>();
  const unknown = new Set<number>();
  let latest: number | undefined;
  let latestChecked = false;
  const idOf = (r: StreamRecord) => (r.raw === null ? undefined : decodeWireFormat(r.raw)?.schemaId);
  return {
    name: 'validate',
    async prepare(batch) {
      const ids = new Set<number>();
      let plain = false;
      for (const r of batch) {
        const id = idOf(r);
        if (id === undefined) plain = true;
        else if (!validators.has(id) && !unknown.has(id)) ids.add(id);
      }
      if (plain && !latestChecked) {
        latest = await registry.latestId(valueSubject(topic));
        latestChecked = true;
        if (latest !== undefined && !validators.has(latest)) ids.add(latest);
      }
      for (const id of ids) {
        try {
          validators.set(id, await registry.validator(id));
        } catch (err) {
          if (!(err instanceof UnknownSchemaError)) throw err;
          unknown.add(id);
        }
      }
    },
    process(batch, ctx) {
      const out: StreamRecord<T>[] = [];
      for (const r of batch) {
        const id = idOf(r) ?? latest;
        const validate = id === undefined ? local : validators.get(id);
        if (!validate) ctx.deadLetter(r, 'unknown-schema', `the registry has no schema with id ${id}`);
        else if (validate(r.value)) out.push(r as StreamRecord<T>);
        else ctx.deadLetter(r, 'schema', validate.errorText());
      }
      return out;
    },
  };
}

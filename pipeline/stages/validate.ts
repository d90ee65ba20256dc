import type { Tombstones } from './parse-json.ts';
import type { Stage, StreamRecord } from '../records.ts';
import type { Validator } from '../schema/validator.ts';

/**
 * JSON Schema validation with a schema compiled once; an invalid record goes to the dead-letter topic. Tombstones
 * that parse-json passed on (tombstones: 'pass') pass here too.
 */
export function validate<T>(validator: Validator<T>, o: { tombstones?: Tombstones } = {}): Stage<unknown, T> {
  const pass = o.tombstones === 'pass';
  return {
    name: 'validate',
    process(batch, ctx) {
      const out: StreamRecord<T>[] = [];
      for (const r of batch) {
        if (validator(r.value) || (pass && r.raw === null)) out.push(r as StreamRecord<T>);
        else ctx.deadLetter(r, 'schema', validator.errorText());
      }
      return out;
    },
  };
}

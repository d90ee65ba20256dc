import type { Stage, StreamRecord } from '../records.ts';
import type { Validator } from '../schema/validator.ts';

/** JSON Schema validation with a schema compiled once; an invalid record goes to the dead-letter topic. */
export function validate<T>(validator: Validator<T>): Stage<unknown, T> {
  return {
    name: 'validate',
    process(batch, ctx) {
      const out: StreamRecord<T>[] = [];
      for (const r of batch) {
        if (validator(r.value)) out.push(r as StreamRecord<T>);
        else ctx.deadLetter(r, 'schema', validator.errorText());
      }
      return out;
    },
  };
}

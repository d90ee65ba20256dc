import type { Stage, StreamRecord } from '../records.ts';

/**
 * Maps each value. A throw from fn rejects that record (reason = the error's code or 'map') instead of the batch.
 */
export function mapValues<I, O>(name: string, fn: (value: I, record: StreamRecord<I>) => O): Stage<I, O> {
  return {
    name,
    process(batch, ctx) {
      const out: StreamRecord<O>[] = [];
      for (const r of batch) {
        try {
          (r as unknown as StreamRecord<O>).value = fn(r.value, r);
          out.push(r as unknown as StreamRecord<O>);
        } catch (err) {
          const e = err as { code?: string; message?: string };
          ctx.deadLetter(r, e.code === 'COPY_UNENCODABLE' ? 'unencodable' : 'map', e.message ?? String(err));
        }
      }
      return out;
    },
  };
}

import { isUtf8 } from 'node:buffer';
import type { Stage, StreamRecord } from '../records.ts';

/**
 * Bytes to JSON. Rejects tombstones (null values), bytes that are not UTF-8 (decoding would silently put U+FFFD
 * in their place) and text that is not JSON, each with its own reason.
 */
export function parseJson(): Stage<unknown, unknown> {
  return {
    name: 'parse-json',
    process(batch, ctx) {
      const out: StreamRecord[] = [];
      for (const r of batch) {
        const raw = r.raw;
        if (raw === null) {
          ctx.deadLetter(r, 'tombstone', 'the message has no value (tombstone)');
          continue;
        }
        if (!isUtf8(raw)) {
          ctx.deadLetter(r, 'invalid-utf8', 'the message value is not valid UTF-8');
          continue;
        }
        try {
          r.value = JSON.parse(raw.toString('utf8'));
        } catch (err) {
          ctx.deadLetter(r, 'malformed-json', (err as Error).message);
          continue;
        }
        out.push(r);
      }
      return out;
    },
  };
}

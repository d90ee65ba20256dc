import { isUtf8 } from 'node:buffer';
import type { Stage, StreamRecord } from '../records.ts';
import { decodeWireFormat } from '../schema/wire-format.ts';

/** What becomes of a tombstone (a null value): a dead letter (the default), or passed on with value null (deletes). */
export type Tombstones = 'dead-letter' | 'pass';

/**
 * Bytes to JSON. Rejects tombstones (null values) unless told to pass them on, bytes that are not UTF-8 (decoding would silently put U+FFFD
 * in their place) and text that is not JSON, each with its own reason. A value in the Confluent wire format
 * (magic byte 0 and a schema id before the JSON, as producers write with SCHEMA_REGISTRY_URL set) is read from
 * its JSON part; it cannot be mistaken for plain JSON, which never starts with byte 0.
 */
export function parseJson(o: { tombstones?: Tombstones } = {}): Stage<unknown, unknown> {
  const pass = o.tombstones === 'pass';
  return {
    name: 'parse-json',
    process(batch, ctx) {
      const out: StreamRecord[] = [];
      for (const r of batch) {
        let raw = r.raw;
        if (raw !== null) raw = decodeWireFormat(raw)?.payload ?? raw;
        if (raw === null) {
          if (pass) {
            r.value = null;
            out.push(r);
          } else ctx.deadLetter(r, 'tombstone', 'the message has no value (tombstone)');
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

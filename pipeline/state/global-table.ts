import { decodeWireFormat } from '../schema/wire-format.ts';
import type { Validator } from '../schema/validator.ts';

/** A global table as a topology declares it (StreamsBuilder.globalTable). */
export interface GlobalTableSpec<V = unknown> {
  topic: string;
  /** Each value is JSON, checked against this schema when given; a value that is not is skipped (and counted). */
  schema?: Validator<V>;
}

/**
 * The latest value of each key of a topic, in every instance (Kafka Streams' GlobalKTable): all partitions are read
 * from the beginning at start, and the table is complete up to the topic's end as of then before any record is
 * processed; later updates are applied as they come. Tombstones delete. The topic itself is the table's changelog:
 * nothing else is written, and a restart reads it again (keep it compacted).
 */
export class GlobalTable<V = unknown> {
  private readonly data = new Map<string, V>();
  /** Values that were not JSON or not valid, since the start: skipped. */
  skipped = 0;
  lastSkipped: string | undefined;

  constructor(readonly spec: GlobalTableSpec<V>) {}

  get(key: string): V | undefined {
    return this.data.get(key);
  }

  get size(): number {
    return this.data.size;
  }

  /** One message of the topic: its key's new value, or its deletion (a null value). */
  apply(key: Buffer | null, value: Buffer | null): void {
    if (key === null) return this.skip('a message without a key');
    const k = key.toString('utf8');
    if (value === null) {
      this.data.delete(k);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse((decodeWireFormat(value)?.payload ?? value).toString('utf8'));
    } catch (err) {
      return this.skip(`key ${k}: ${(err as Error).message}`);
    }
    const check = this.spec.schema;
    if (check && !check(parsed)) return this.skip(`key ${k}: ${check.errorText()}`);
    this.data.set(k, parsed as V);
  }

  private skip(why: string): void {
    this.skipped++;
    this.lastSkipped = why;
  }
}

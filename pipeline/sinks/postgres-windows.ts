import type { CopyValue } from '../codec/copy-text.ts';
import type { PostgresWindowSinkSpec } from '../dsl/plan.ts';
import { pgp, tableName, withSetupLock, type Connection } from '../postgres/db.ts';
import type { StreamRecord, Windowed } from '../records.ts';
import type { FlushInfo, Sink, SinkSetup } from './sink.ts';

export const WATERMARKS_TABLE = 'pipeline_watermarks';
const NEVER = '-9223372036854775808';

/**
 * Final window results, merged across partitions by Postgres. Each partition's final results are staged in
 * `<table>_partials` with the partition's close watermark (event time up to which its windows are final) in
 * pipeline_watermarks, all in the flush's transaction. Then, still in it, every window that all partitions have
 * closed is merged (combine per column) into the table and its partials removed. The table so holds complete
 * windows only, and a crash anywhere leaves partials, watermarks and offsets in step.
 */
export class PostgresWindowSink implements Sink<StreamRecord> {
  readonly table: string;
  readonly name: string;
  readonly label: string;
  private readonly partials: string;
  private readonly cols: string[];

  constructor(private readonly spec: PostgresWindowSinkSpec, private readonly applicationId: string, private readonly topic: string) {
    this.name = spec.name;
    this.label = spec.table;
    this.table = tableName(spec.table);
    this.partials = tableName(`${spec.table}_partials`);
    this.cols = Object.keys(spec.columns);
    for (const c of [spec.windowStart, spec.windowEnd, spec.keyColumn, ...this.cols]) tableName(c, 'column');
  }

  describe(): string {
    return `Postgres table ${this.spec.table} (final windows, merged across partitions, in the flush's transaction)`;
  }

  without(results: StreamRecord[], partitions: ReadonlySet<number>): StreamRecord[] {
    return results.filter((r) => !partitions.has(r.partition));
  }

  async setup(setup: SinkSetup): Promise<void> {
    const { db } = setup;
    const partitions = await setup.partitions();
    const s = this.spec;
    const colDefs = this.cols.map((c) => `${pgp.as.name(c)} ${s.columns[c].type} NOT NULL`).join(', ');
    const ws = pgp.as.name(s.windowStart);
    const we = pgp.as.name(s.windowEnd);
    const key = pgp.as.name(s.keyColumn);
    await withSetupLock(db, async (t) => {
      await t.none(`CREATE TABLE IF NOT EXISTS ${this.table} (${ws} timestamptz NOT NULL, ${we} timestamptz NOT NULL,
        ${key} ${s.keyType} NOT NULL, ${colDefs}, PRIMARY KEY (${ws}, ${key}))`);
      await t.none(`CREATE TABLE IF NOT EXISTS ${this.partials} (${ws} timestamptz NOT NULL, ${we} timestamptz NOT NULL,
        ${key} ${s.keyType} NOT NULL, partition integer NOT NULL, ${colDefs}, PRIMARY KEY (${ws}, ${key}, partition))`);
      await t.none(`CREATE TABLE IF NOT EXISTS ${WATERMARKS_TABLE} (application_id text NOT NULL, topic text NOT NULL,
        partition integer NOT NULL, closed_through bigint NOT NULL, PRIMARY KEY (application_id, topic, partition))`);
      // Every partition of the source counts: a window is complete only when all of them have closed it.
      await t.none(`INSERT INTO ${WATERMARKS_TABLE} SELECT $1, $2, p, ${NEVER} FROM generate_series(0, $3 - 1) AS p ON CONFLICT DO NOTHING`,
        [this.applicationId, this.topic, partitions]);
    });
  }

  /** Inside the flush transaction. closedThrough: per partition in the flush, event time up to which windows are final. */
  async write(conn: Connection, results: StreamRecord[], { closedThrough }: FlushInfo): Promise<number> {
    const s = this.spec;
    if (results.length) {
      const columns = [s.windowStart, s.windowEnd, s.keyColumn, 'partition', ...this.cols];
      const rows = results.map((r) => {
        const w = r.key as Windowed<unknown>;
        const values = s.row(w, r.value);
        const row: Record<string, CopyValue> = {
          [s.windowStart]: new Date(w.start).toISOString(), [s.windowEnd]: new Date(w.end).toISOString(),
          [s.keyColumn]: w.key as CopyValue, partition: r.partition,
        };
        for (const c of this.cols) row[c] = values[c];
        return row;
      });
      const cs = new pgp.helpers.ColumnSet(columns, { table: { table: `${s.table}_partials` } });
      const update = this.cols.map((c) => `${pgp.as.name(c)} = EXCLUDED.${pgp.as.name(c)}`).join(', ');
      await conn.none(`${pgp.helpers.insert(rows, cs)} ON CONFLICT (${pgp.as.name(s.windowStart)}, ${pgp.as.name(s.keyColumn)}, partition) DO UPDATE SET ${update}`);
    }
    // Lock every watermark row of the application first, so flushes of other partitions (another lane, another
    // instance) merge one after another and never deadlock on each other's rows.
    await conn.any(`SELECT 1 FROM ${WATERMARKS_TABLE} WHERE application_id = $1 AND topic = $2 ORDER BY partition FOR UPDATE`, [this.applicationId, this.topic]);
    for (const [partition, t] of closedThrough) {
      if (!Number.isFinite(t)) continue;
      await conn.none(`UPDATE ${WATERMARKS_TABLE} SET closed_through = GREATEST(closed_through, $4)
        WHERE application_id = $1 AND topic = $2 AND partition = $3`, [this.applicationId, this.topic, partition, Math.floor(t)]);
    }
    const { global } = await conn.one<{ global: string | null }>(`SELECT min(closed_through)::text AS global FROM ${WATERMARKS_TABLE}
      WHERE application_id = $1 AND topic = $2`, [this.applicationId, this.topic]);
    if (global === null || global === NEVER) return 0;
    const ws = pgp.as.name(s.windowStart);
    const we = pgp.as.name(s.windowEnd);
    const key = pgp.as.name(s.keyColumn);
    const merged = this.cols.map((c) => `${s.columns[c].combine}(${pgp.as.name(c)})`).join(', ');
    const combine = this.cols.map((c) => {
      const n = pgp.as.name(c);
      const how = s.columns[c].combine;
      return `${n} = ${how === 'sum' ? `${this.table}.${n} + EXCLUDED.${n}` : `${how === 'min' ? 'LEAST' : 'GREATEST'}(${this.table}.${n}, EXCLUDED.${n})`}`;
    }).join(', ');
    const cutoff = `to_timestamp(${Number(global)} / 1000.0)`;
    const moved = await conn.result(`INSERT INTO ${this.table} (${ws}, ${we}, ${key}, ${this.cols.map((c) => pgp.as.name(c)).join(', ')})
      SELECT ${ws}, ${we}, ${key}, ${merged} FROM ${this.partials} WHERE ${we} <= ${cutoff} GROUP BY ${ws}, ${we}, ${key}
      ON CONFLICT (${ws}, ${key}) DO UPDATE SET ${combine}`);
    await conn.none(`DELETE FROM ${this.partials} WHERE ${we} <= ${cutoff}`);
    return moved.rowCount;
  }
}

import type { Connection } from '../postgres/db.ts';
import { pgp } from '../postgres/db.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import { ConfigError } from '../errors.ts';
import { lastOfEachKey, PostgresCopySink, type PostgresCopySinkOptions, type Rows, type Selection } from './postgres-copy.ts';
import type { SinkSetup } from './sink.ts';

export interface PostgresUpsertSinkOptions extends PostgresCopySinkOptions {
  /** The key columns: the table needs a primary key or unique constraint on exactly these. */
  keyColumns: string[];
  /** A tombstone's row (its key, the rest NULL) deletes the key's row instead. */
  deleteOnTombstone: boolean;
}

/**
 * Upserts (and deletes) with COPY, inside the flush's transaction, so a crash at any instant applies a flush whole
 * or not at all, and the fenced offsets move with it. Within a flush the last record of a key wins (by offset within
 * a partition; keys that arrive on several partitions are the producer's partitioning to get right, as with Kafka
 * Connect's upserts). The rows left are COPY'd into two temporary staging tables, one for upserts and one for
 * deletes (each key in one of them only), and applied with
 *
 *   DELETE FROM t USING deletes d WHERE t.key = d.key
 *   INSERT INTO t (...) SELECT DISTINCT ON (key) ... FROM upserts ORDER BY key, ctid DESC
 *     ON CONFLICT (key) DO UPDATE SET column = EXCLUDED.column, ...
 *
 * (DISTINCT ON for keys whose COPY text differs but which Postgres holds equal, such as a uuid in capitals: the last
 * one wins there too). The staging tables are made from the table's own column types, without its constraints; each
 * connection keeps its own, emptied after every part. A part that Postgres rejects is rolled back to its savepoint and bisected, as in append.
 */
export class PostgresUpsertSink extends PostgresCopySink {
  private readonly upserts: string;
  private readonly deletes: string;
  private readonly applySql: string;
  private readonly createSql: string;
  /** `(col, ...)`, quoted, in the rows' order. */
  private readonly columnList: string;

  constructor(private readonly u: PostgresUpsertSinkOptions) {
    super(u);
    const id = u.name.replace(/[^A-Za-z0-9_]/g, '_');
    this.upserts = `pg_temp.${pgp.as.name(`${id}_upserts`)}`;
    this.deletes = `pg_temp.${pgp.as.name(`${id}_deletes`)}`;
    const cols = u.columns.map((c) => pgp.as.name(c));
    const keys = u.keyColumns.map((c) => pgp.as.name(c));
    this.columnList = `(${cols.join(', ')})`;
    const rest = cols.filter((c) => !keys.includes(c));
    const onConflict = rest.length ? `DO UPDATE SET ${rest.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}` : 'DO NOTHING';
    // Kept for the connection's session, emptied after each part: made afresh for each flush (and dropped at its
    // commit) they cost catalog writes in every flush. A table made in a flush that rolls back is gone with it, and
    // made again by the next.
    const create = (name: string) => `CREATE TEMP TABLE IF NOT EXISTS ${name} AS SELECT ${cols.join(', ')} FROM ${this.table} WITH NO DATA`;
    this.createSql = [create(this.upserts), ...(u.deleteOnTombstone ? [create(this.deletes)] : [])].join(';\n');
    this.applySql = [
      u.deleteOnTombstone ? `DELETE FROM ${this.table} t USING ${this.deletes} d WHERE ${keys.map((k) => `t.${k} = d.${k}`).join(' AND ')}` : '',
      `INSERT INTO ${this.table} (${cols.join(', ')}) SELECT DISTINCT ON (${keys.join(', ')}) ${cols.join(', ')} FROM ${this.upserts}`
        + ` ORDER BY ${keys.join(', ')}, ctid DESC ON CONFLICT (${keys.join(', ')}) ${onConflict}`,
      `TRUNCATE ${this.upserts}${u.deleteOnTombstone ? `, ${this.deletes}` : ''}`,
    ].filter(Boolean).join(';\n');
  }

  override describe(): string {
    return `Postgres table ${this.u.table} (upsert on ${this.u.keyColumns.join(', ')}${this.u.deleteOnTombstone ? ', delete on tombstone' : ''}: COPY into staging, INSERT ... ON CONFLICT, in the flush's transaction)`;
  }

  /** The staging tables' COPY is text: every row goes through them. */
  override async columnTypes(): Promise<undefined> {
    return undefined;
  }

  override async setup(s: SinkSetup): Promise<void> {
    await super.setup(s);
    const keys = await s.db.any<{ cols: string[] }>(
      `SELECT array_agg(a.attname::text ORDER BY a.attname) AS cols FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL GROUP BY i.indexrelid`, [this.table]);
    const want = [...this.u.keyColumns].sort().join(',');
    if (!keys.some((k) => k.cols.join(',') === want)) {
      throw new ConfigError(`table ${this.u.table} has no primary key or unique constraint on (${this.u.keyColumns.join(', ')}), which upsert needs for ON CONFLICT`);
    }
  }

  protected override keep(rows: Rows, _rejected: DeadLetter[]): Selection {
    return lastOfEachKey(rows);
  }

  protected override writePart(conn: Connection, rows: Rows, part: Uint32Array): Promise<unknown> {
    const upserts: number[] = [];
    const deletes: number[] = [];
    for (const g of part) {
      if (!this.u.deleteOnTombstone) {
        upserts.push(g);
        continue;
      }
      const [s, i] = rows.locate(g);
      (s.record(i).raw === null ? deletes : upserts).push(g);
    }
    return Promise.all([
      conn.none(this.createSql),
      conn.none('SAVEPOINT copy_part'),
      upserts.length ? this.copy(conn, `COPY ${this.upserts} ${this.columnList} FROM STDIN`, rows.buffers(Uint32Array.from(upserts))) : undefined,
      deletes.length ? this.copy(conn, `COPY ${this.deletes} ${this.columnList} FROM STDIN`, rows.buffers(Uint32Array.from(deletes))) : undefined,
      conn.multi(this.applySql),
    ]);
  }
}

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { copyChunks, encodeCopyRow, type CopyValue } from '../codec/copy-text.ts';
import { isRowError, type Connection } from '../postgres/db.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import { deadLetterOf, type StreamRecord } from '../records.ts';

/** A row ready for COPY: its text line, and its primary key (for in-batch duplicate detection). */
export interface CopyRow {
  line: string;
  key: string | undefined;
}

export function copyRow(values: readonly CopyValue[], keyIndex: number | undefined): CopyRow {
  return { line: encodeCopyRow(values), key: keyIndex === undefined ? undefined : String(values[keyIndex]) };
}

export interface PostgresCopySinkOptions {
  /** Quoted table name (see tableName()). */
  table: string;
  columns: string[];
  dlqTopic: string;
  chunkBytes?: number;
}

const UNIQUE_VIOLATION = '23505';
/** Large writes: a flush of 10,000 orders is about 1.1 MB of COPY text, so a few chunks. */
const CHUNK_BYTES = 256 * 1024;

/**
 * Appends rows with COPY, inside the transaction the runtime opened for a flush (see runtime/flush.ts).
 * A row Postgres rejects (a value out of range, a duplicate key) does not sink the batch: the COPY is retried on
 * halves inside savepoints until the bad rows stand alone, and those go to the dead letters with the database's
 * error. Within a batch, a second row with the same key is a duplicate: the first wins.
 */
export class PostgresCopySink {
  private readonly copySql: string;
  constructor(private readonly o: PostgresCopySinkOptions) {
    this.copySql = `COPY ${o.table} (${o.columns.join(', ')}) FROM STDIN`;
  }

  /** Writes the rows; rejected ones are appended to rejected. Returns the number of rows written. */
  async write(conn: Connection, batch: StreamRecord<CopyRow>[], rejected: DeadLetter[]): Promise<number> {
    const before = rejected.length;
    const rows = this.dropInBatchDuplicates(batch, rejected);
    const duplicates = rejected.length - before;
    await this.copyIsolating(conn, rows, rejected);
    return rows.length - (rejected.length - before - duplicates);
  }

  private dropInBatchDuplicates(rows: StreamRecord<CopyRow>[], rejected: DeadLetter[]): StreamRecord<CopyRow>[] {
    if (rows.length < 2 || rows[0].value.key === undefined) return rows;
    const seen = new Set<string>();
    const out: StreamRecord<CopyRow>[] = [];
    for (const r of rows) {
      const k = r.value.key!;
      if (seen.has(k)) rejected.push(this.deadLetter(r, 'duplicate', IN_BATCH));
      else {
        seen.add(k);
        out.push(r);
      }
    }
    return out;
  }

  /** COPY inside a savepoint; on a row error, split in halves until the offending rows are alone. */
  private async copyIsolating(conn: Connection, rows: StreamRecord<CopyRow>[], rejected: DeadLetter[], nested = false): Promise<void> {
    if (!rows.length) return;
    await conn.none('SAVEPOINT copy_part');
    try {
      await this.copy(conn, rows);
      // COMMIT releases the savepoint anyway: the common, whole-batch case saves a round trip (the event loop is busy
      // with the next batch, so each round trip of a flush costs far more than the network). While bisecting, each
      // success is released so the open subtransactions stay few.
      if (nested) await conn.none('RELEASE SAVEPOINT copy_part');
    } catch (err) {
      if (!isRowError(err)) throw err;
      await conn.none('ROLLBACK TO SAVEPOINT copy_part');
      await conn.none('RELEASE SAVEPOINT copy_part');
      if (rows.length === 1) {
        const e = err as { code: string; message: string; detail?: string };
        const reason = e.code === UNIQUE_VIOLATION ? 'duplicate' : 'rejected-by-database';
        rejected.push(this.deadLetter(rows[0], reason, `${e.code}: ${e.message}${e.detail ? ` (${e.detail})` : ''}`));
        return;
      }
      const half = rows.length >> 1;
      await this.copyIsolating(conn, rows.slice(0, half), rejected, true);
      await this.copyIsolating(conn, rows.slice(half), rejected, true);
    }
  }

  /**
   * The whole batch is encoded up front, in one synchronous pass, and handed to the socket at once. Encoding lazily,
   * a chunk per tick, interleaved the COPY with the next batch's processing on the event loop, so Postgres sat
   * waiting for data: flushes took ~150 ms for 10,000 rows that it ingests in ~30 ms (`npm run bench -- ingest`).
   */
  private async copy(conn: Connection, rows: StreamRecord<CopyRow>[]): Promise<void> {
    const chunks = [...copyChunks(lines(rows), this.o.chunkBytes ?? CHUNK_BYTES)];
    const stream = (conn.client as unknown as { query(q: unknown): NodeJS.WritableStream }).query(copyFrom(this.copySql));
    await pipeline(Readable.from(chunks), stream);
  }

  private deadLetter(r: StreamRecord<CopyRow>, reason: string, message: string): DeadLetter {
    return deadLetterOf(r, this.o.dlqTopic, reason, message);
  }
}

const IN_BATCH = 'the same key appeared earlier in this batch; the first one wins';

function* lines(rows: StreamRecord<CopyRow>[]): Generator<string> {
  for (const r of rows) yield r.value.line;
}

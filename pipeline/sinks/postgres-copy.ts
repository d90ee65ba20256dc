import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Connection, Database } from '../postgres/db.ts';
import { isRowError, pgp, tableName, withSetupLock } from '../postgres/db.ts';
import type { DeadLetter } from '../postgres/dead-letters.ts';
import { checkTableShape, type TableShape } from '../postgres/table-shape.ts';
import { PipelineError, type DeadLetterReason } from '../errors.ts';
import { deadLetterOf } from '../records.ts';
import { BINARY_HEADER, BINARY_TRAILER } from '../codec/copy-binary.ts';
import { filterSegment, keyField, lineStart, type CopySegment } from './copy-segment.ts';
import type { FlushInfo, Sink, SinkSetup } from './sink.ts';

export interface PostgresCopySinkOptions {
  /** The sink's name in the plan. */
  name: string;
  /** The table name as given (it is checked and quoted here, see tableName()). */
  table: string;
  columns: string[];
  dlqTopic: string;
  /** CREATE TABLE IF NOT EXISTS $TABLE (...), run at setup; $TABLE becomes the quoted table name. */
  createSql?: string;
  /** The columns the table must have, checked at setup (and added, with auto-evolve). */
  shape?: TableShape;
}

const UNIQUE_VIOLATION = '23505';
/** What Postgres says of binary COPY data it cannot read: invalid_binary_representation, bad_copy_file_format, protocol_violation (a value shorter than its type). */
const BINARY_UNREADABLE = new Set(['22P03', '22P04', '08P01']);

/**
 * Appends rows with COPY, inside the transaction the committer opened for a flush (see runtime/committer.ts).
 * A row Postgres rejects (a value out of range, a duplicate key) does not sink the batch: the COPY is retried on
 * halves inside savepoints until the bad rows stand alone, and those go to the dead letters with the database's
 * error. Within a batch, a second row with the same key is a duplicate: the first wins.
 */
export class PostgresCopySink implements Sink<CopySegment> {
  protected readonly copySql: string;
  private readonly copyBinarySql: string;
  /** The database of setup, where columnTypes() reads the types. */
  private db: Database | undefined;
  /** What a flush with binary rows runs first in its transaction, by the types they are encoded for (typesCheck). */
  private readonly typesChecks = new Map<string, string>();
  protected readonly table: string;
  readonly name: string;
  readonly label: string;
  constructor(protected readonly o: PostgresCopySinkOptions) {
    this.name = o.name;
    this.label = o.table;
    this.table = tableName(o.table);
    this.copySql = `COPY ${this.table} (${o.columns.map((c) => pgp.as.name(c)).join(', ')}) FROM STDIN`;
    this.copyBinarySql = `${this.copySql} (FORMAT binary)`;
  }

  async columnTypes(): Promise<readonly string[] | undefined> {
    if (!this.db) return undefined; // never set up (a committer without a database, in tests): text
    const rows = await this.db.any<{ attname: string; typname: string }>(
      `SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, [this.table]);
    const byName = new Map(rows.map((r) => [r.attname, r.typname]));
    const types = this.o.columns.map((c) => byName.get(c));
    return types.every((t) => t !== undefined) ? types : undefined;
  }

  describe(): string {
    return `Postgres table ${this.o.table} (COPY, in the flush's transaction)`;
  }

  async setup(s: SinkSetup): Promise<void> {
    const { createSql, shape } = this.o;
    if (createSql || shape) {
      await withSetupLock(s.db, async (t) => {
        if (createSql) await t.none(createSql.replace('$TABLE', this.table));
        if (shape) {
          const added = await checkTableShape(t, this.table, this.o.table, shape);
          if (added.length) s.log?.(`table ${this.o.table}: added column ${added.join(', ')} (auto-evolve)`);
        }
      });
    }
    this.db = s.db;
  }

  without(segments: CopySegment[], partitions: ReadonlySet<number>): CopySegment[] {
    return segments.map((s) => filterSegment(s, (r) => !partitions.has(r.partition))).filter((s) => s !== undefined);
  }

  write(conn: Connection, segments: CopySegment[], _flush: FlushInfo, rejected: DeadLetter[]): Promise<number> {
    return this.copySegments(conn, segments, rejected);
  }

  /** Writes the rows of the segments; rejected ones are appended to rejected. Returns the number of rows written. */
  async copySegments(conn: Connection, segments: CopySegment[], rejected: DeadLetter[]): Promise<number> {
    const rows = new Rows(segments);
    const before = rejected.length;
    const selected = this.keep(rows, rejected);
    await this.begin(conn);
    // Waited for before the COPY (one round trip a flush): a query queued on a client still busy is deprecated in pg,
    // and a COPY left running after a failed check would go on bisecting on a connection given back to the pool.
    for (const types of new Set(segments.flatMap((s) => (s.binary ? [s.binary.types] : [])))) await this.checkTypes(conn, types);
    await this.copyIsolating(conn, rows, selected.kept, rejected, selected.instead);
    return rows.length - (rejected.length - before);
  }

  /**
   * The rows to write (ascending row numbers): here the first of each key; each later one is a dead letter. A row
   * left out without a dead letter counts as written (an upsert's earlier record of a key, which the later one
   * overwrites), and `instead` then names the row to write in place of one Postgres rejects.
   */
  protected keep(rows: Rows, rejected: DeadLetter[]): Selection {
    return { kept: firstOfEachKey(rows, (s, i) => rejected.push(this.deadLetter(s, i, 'duplicate', IN_BATCH))) };
  }

  /** That the table's columns still have the types binary rows were encoded for; else a COPY_BINARY error. */
  private async checkTypes(conn: Connection, types: readonly string[]): Promise<void> {
    const key = types.join(',');
    let sql = this.typesChecks.get(key);
    if (!sql) this.typesChecks.set(key, (sql = typesCheck(this.table, this.o.columns, types)));
    try {
      await conn.none(sql);
    } catch (err) {
      if ((err as { code?: string }).code !== TYPES_CHANGED) throw err;
      throw new PipelineError('COPY_BINARY', `${(err as Error).message}, which these binary COPY rows were encoded for: they are made again for the types there are now`, { cause: err });
    }
  }

  /** Before the first part is written, in the flush's transaction (an upsert creates its staging tables). */
  protected async begin(_conn: Connection): Promise<void> {}

  /**
   * Writes some of the rows, queued right behind `SAVEPOINT copy_part` so that they go out the moment its answer
   * comes, without waiting for the event loop, which is busy with the next batch (a flush's time is mostly such
   * waits, `npm run bench -- ingest`). A row error rolls back to the savepoint and the part is split.
   */
  protected writePart(conn: Connection, rows: Rows, part: Uint32Array): Promise<unknown> {
    const runs = rows.runs(part);
    if (runs.length === 1) return Promise.all([conn.none('SAVEPOINT copy_part'), this.copyRun(conn, runs[0])]);
    // Text and binary rows (a batch binary could not carry is text): one COPY each, one after the other, since a
    // COPY queued behind one that failed would fail as well, for the aborted transaction.
    return (async () => {
      await conn.none('SAVEPOINT copy_part');
      for (const run of runs) await this.copyRun(conn, run);
    })();
  }

  /**
   * A run of rows of one format. Binary data Postgres cannot read means the table is not what the rows were encoded
   * for (checkTypes should have said so): no row of it is at fault, so the flush fails rather than dead-letter them,
   * and the rows are made again for the types there are now (StreamTask).
   */
  private async copyRun(conn: Connection, run: CopyRun): Promise<void> {
    if (!run.binary) return this.copy(conn, this.copySql, run.buffers);
    try {
      await this.copy(conn, this.copyBinarySql, [BINARY_HEADER, ...run.buffers, BINARY_TRAILER]);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !BINARY_UNREADABLE.has(code)) throw err;
      throw new PipelineError('COPY_BINARY', `Postgres could not read the binary COPY rows for ${this.o.table} (${code}: ${(err as Error).message}): they are made again for the types the table has now`, { cause: err });
    }
  }

  /** Writes a part inside a savepoint; on a row error, split in halves until the offending rows are alone. */
  private async copyIsolating(conn: Connection, rows: Rows, part: Uint32Array, rejected: DeadLetter[], instead: Selection['instead'], nested = false): Promise<void> {
    if (!part.length) return;
    try {
      await this.writePart(conn, rows, part);
      // COMMIT releases the savepoint anyway: the common, whole-batch case saves a round trip (the event loop is busy
      // with the next batch, so each round trip of a flush costs far more than the network). While bisecting, each
      // success is released so the open subtransactions stay few.
      if (nested) await conn.none('RELEASE SAVEPOINT copy_part');
    } catch (err) {
      if (!isRowError(err)) throw err;
      await conn.none('ROLLBACK TO SAVEPOINT copy_part');
      await conn.none('RELEASE SAVEPOINT copy_part');
      if (part.length === 1) {
        const e = err as { code: string; message: string; detail?: string };
        const reason = e.code === UNIQUE_VIOLATION ? 'duplicate' : 'rejected-by-database';
        const [s, i] = rows.locate(part[0]);
        rejected.push(this.deadLetter(s, i, reason, `${e.code}: ${e.message}${e.detail ? ` (${e.detail})` : ''}`));
        const earlier = instead?.(part[0]) ?? -1;
        if (earlier >= 0) await this.copyIsolating(conn, rows, Uint32Array.of(earlier), rejected, instead, true);
        return;
      }
      const half = part.length >> 1;
      await this.copyIsolating(conn, rows, part.subarray(0, half), rejected, instead, true);
      await this.copyIsolating(conn, rows, part.subarray(half), rejected, instead, true);
    }
  }

  /**
   * The rows go to the stream as the segments' own buffers (a slice where rows were left out, Rows.buffers), all
   * written in one go: handed over a chunk per tick, each chunk waited behind the next batch's processing on the
   * event loop, and Postgres sat idle between them (`npm run bench -- ingest`).
   */
  protected copy(conn: Connection, sql: string, buffers: Buffer[]): Promise<void> {
    return copyIn(conn, sql, buffers);
  }

  protected deadLetter(s: CopySegment, i: number, reason: DeadLetterReason, message: string): DeadLetter {
    return deadLetterOf(s.record(i), this.o.dlqTopic, reason, message);
  }
}

/** Runs `COPY ... FROM STDIN` (sql) on the connection with the buffers as its data, all written in one go. */
export async function copyIn(conn: Connection, sql: string, buffers: readonly Buffer[]): Promise<void> {
  const stream = (conn.client as unknown as { query(q: unknown): NodeJS.WritableStream }).query(copyFrom(sql));
  const done = finished(stream);
  for (const b of buffers) stream.write(b);
  stream.end();
  await done;
}

const TYPES_CHANGED = '55000';

/**
 * SQL that fails (object_not_in_prerequisite_state) unless the table's columns still have these types: binary COPY
 * data carries no types, and a value encoded for one can be read as another, wrongly or not at all (a uuid's 16
 * bytes are valid text). The lock is the one COPY takes anyway: with it held, no ALTER TABLE can change the types
 * until the flush commits.
 */
function typesCheck(table: string, columns: readonly string[], types: readonly string[]): string {
  const text = (xs: readonly string[]) => `ARRAY[${xs.map((x) => pgp.as.text(x)).join(', ')}]::text[]`;
  return `LOCK TABLE ${table} IN ROW EXCLUSIVE MODE;
DO $check$ BEGIN
  IF ARRAY(SELECT t.typname::text FROM unnest(${text(columns)}) WITH ORDINALITY AS c(name, n)
      LEFT JOIN pg_attribute a ON a.attrelid = ${pgp.as.text(table)}::regclass AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_type t ON t.oid = a.atttypid ORDER BY c.n) IS DISTINCT FROM ${text(types)} THEN
    RAISE EXCEPTION USING ERRCODE = '${TYPES_CHANGED}', MESSAGE = ${pgp.as.text(`the column types of ${table} are no longer ${types.join(', ')}`)};
  END IF;
END $check$;`;
}

const IN_BATCH = 'the same key appeared earlier in this batch; the first one wins';

/**
 * Row numbers to write: all of them, less every repeat of a key already seen in this flush (the first wins). An
 * open-addressing table of row numbers, by key hash; equal hashes are compared on the keys' COPY text.
 */
export function firstOfEachKey(rows: Rows, repeat: (s: CopySegment, i: number) => void): Uint32Array {
  return eachKeyOnce(rows, false, repeat);
}

/** Which rows a flush writes, and for a rejected one the row to write instead (-1: none). */
export interface Selection {
  kept: Uint32Array;
  instead?: (row: number) => number;
}

/**
 * Row numbers to write: the last row of each key in this flush (an upsert's: the later record of a key wins), and
 * for each row the one before it of the same key, which is written instead if Postgres rejects it: the table then
 * holds the last record of the key that Postgres accepts, as if each had been written in turn.
 */
export function lastOfEachKey(rows: Rows): Selection {
  const earlier = new Int32Array(rows.length).fill(-1);
  const kept = eachKeyOnce(rows, true, () => undefined, earlier);
  return { kept, instead: (g) => earlier[g] };
}

function eachKeyOnce(rows: Rows, last: boolean, repeat: (s: CopySegment, i: number) => void, earlier?: Int32Array): Uint32Array {
  const kept = new Uint32Array(rows.length);
  if (rows.length < 2 || rows.segments.some((s) => !s.keyHashes)) {
    for (let g = 0; g < kept.length; g++) kept[g] = g;
    return kept;
  }
  const mask = (1 << Math.ceil(Math.log2(rows.length * 2))) - 1;
  const table = new Int32Array(mask + 1).fill(-1);
  const hashOf = new Uint32Array(rows.length);
  let n = 0;
  // For the last of each key, rows are met from the end, and what is kept is turned back to ascending order.
  const segments = last ? [...rows.segments].reverse() : rows.segments;
  let g = last ? rows.length - 1 : 0;
  for (const s of segments) {
    for (let k = 0; k < s.ends.length; k++, last ? g-- : g++) {
      const i = last ? s.ends.length - 1 - k : k;
      const h = s.keyHashes![i];
      let slot = h & mask;
      let first = -1;
      for (let f = table[slot]; f !== -1; slot = (slot + 1) & mask, f = table[slot]) {
        if (hashOf[f] === h && rows.sameKey(f, s, i)) {
          first = f;
          break;
        }
      }
      if (first >= 0) {
        repeat(s, i);
        if (earlier) {
          // Met from the end: this row comes before the one of its key met last, and takes its place in the table.
          earlier[first] = g;
          table[slot] = g;
          hashOf[g] = h;
        }
      } else {
        table[slot] = g;
        hashOf[g] = h;
        kept[n++] = g;
      }
    }
  }
  return last ? kept.subarray(0, n).reverse() : kept.subarray(0, n);
}

/** Rows of one COPY format, as buffers of their data. */
export interface CopyRun {
  binary: boolean;
  buffers: Buffer[];
}

/** The rows of a flush's segments, numbered 0..length-1 across them. */
export class Rows {
  readonly length: number;
  /** The row number of each segment's first row. */
  private readonly firsts: number[] = [];
  constructor(readonly segments: CopySegment[]) {
    let n = 0;
    for (const s of segments) {
      this.firsts.push(n);
      n += s.ends.length;
    }
    this.length = n;
  }

  /** The segment and index of row g. */
  locate(g: number): [CopySegment, number] {
    let lo = 0;
    let hi = this.firsts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.firsts[mid] <= g) lo = mid;
      else hi = mid - 1;
    }
    return [this.segments[lo], g - this.firsts[lo]];
  }

  /** Whether row f has the same key as row i of segment s. */
  sameKey(f: number, s: CopySegment, i: number): boolean {
    const [t, j] = this.locate(f);
    return keyField(t, t.keyAt, j, t.keyFields).equals(keyField(s, s.keyAt, i, s.keyFields));
  }

  /** The rows (ascending row numbers) as runs of one COPY format each, in order (see buffers). */
  runs(part: Uint32Array): CopyRun[] {
    const binary = !!this.segments[0]?.binary;
    if (this.segments.every((s) => !!s.binary === binary)) return [{ binary, buffers: this.buffers(part) }];
    const out: CopyRun[] = [];
    let from = 0;
    for (let k = 1; k <= part.length; k++) {
      const isBinary = !!this.locate(part[k - 1])[0].binary;
      if (k < part.length && !!this.locate(part[k])[0].binary === isBinary) continue;
      out.push({ binary: isBinary, buffers: this.buffers(part.subarray(from, k)) });
      from = k;
    }
    return out;
  }

  /** The COPY data of the rows (ascending row numbers), as slices of the segments: one per run of consecutive rows. */
  buffers(part: Uint32Array): Buffer[] {
    const out: Buffer[] = [];
    let k = 0;
    while (k < part.length) {
      const [s, i] = this.locate(part[k]);
      let j = i;
      while (k + 1 < part.length && part[k + 1] === part[k] + 1 && j + 1 < s.ends.length) {
        k++;
        j++;
      }
      k++;
      const start = lineStart(s.ends, i);
      out.push(start === 0 && j === s.ends.length - 1 ? s.text : s.text.subarray(start, s.ends[j]));
    }
    return out;
  }
}

import { type Connection, type Database } from './db.ts';
import { insertDeadLetters, type DeadLetter } from './dead-letters.ts';
import { advanceOffsets, type OffsetMove } from './offsets.ts';

/**
 * The unit of exactly-once: one transaction that moves the source offsets (fenced, first, so racing instances
 * queue on their rows), writes what the body writes, and inserts the dead letters (the body's rejections too).
 * Any failure rolls everything back and is thrown; the caller rewinds to the offsets Postgres holds.
 */
export async function inFlushTransaction(db: Database, groupId: string, moves: OffsetMove[], deadLetters: DeadLetter[],
  body: (conn: Connection, rejected: DeadLetter[]) => Promise<number>): Promise<{ written: number; rejected: DeadLetter[]; commitSeconds: number }> {
  const conn = await db.connect();
  let broken = false;
  try {
    await advanceOffsets(conn, groupId, moves, { begin: true });
    const rejected: DeadLetter[] = [];
    const written = await body(conn, rejected);
    await insertDeadLetters(conn, deadLetters.length ? deadLetters.concat(rejected) : rejected);
    const at = performance.now();
    await conn.none('COMMIT');
    return { written, rejected, commitSeconds: (performance.now() - at) / 1000 };
  } catch (err) {
    broken = true;
    await conn.none('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    // A connection that saw an error is not given back to the pool: its state is unknown.
    conn.done(broken);
  }
}

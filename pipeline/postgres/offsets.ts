import type pgPromise from 'pg-promise';
import { FencedError } from '../errors.ts';
import { pgp, withSetupLock, type Database } from './db.ts';

/**
 * Source offsets stored in Postgres, next to the rows they produced ("storing offsets outside Kafka", as the
 * KafkaConsumer documentation describes). next_offset = -1 means nothing was committed yet for the partition.
 * Updates are fenced: a flush moves a partition only from the value this instance last saw, so an instance that
 * lost the partition in a rebalance cannot write it again.
 */
export const OFFSETS_TABLE = 'pipeline_offsets';
export const NO_OFFSET = -1;

export async function ensureOffsetsTable(db: Database): Promise<void> {
  await withSetupLock(db, async (t) => { await t.none(`CREATE TABLE IF NOT EXISTS ${OFFSETS_TABLE} (
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition))`); });
}

/** Reads (creating when absent) the stored next offset of each partition. */
export async function loadOffsets(db: Database, groupId: string, topic: string, partitions: number[]): Promise<Map<number, number>> {
  const rows = await db.tx(async (t) => {
    await t.none(`INSERT INTO ${OFFSETS_TABLE} (group_id, topic, partition, next_offset)
      SELECT $1, $2, p, ${NO_OFFSET} FROM unnest($3::int[]) AS p ON CONFLICT DO NOTHING`, [groupId, topic, partitions]);
    return t.any<{ partition: number; next_offset: string }>(
      `SELECT partition, next_offset FROM ${OFFSETS_TABLE} WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])`,
      [groupId, topic, partitions]);
  });
  return new Map(rows.map((r) => [r.partition, Number(r.next_offset)]));
}

export interface OffsetMove {
  topic: string;
  partition: number;
  expected: number;
  next: number;
}

/**
 * Inside the flush transaction: moves every partition from expected to next, or throws FencedError naming the
 * partitions that another instance moved. Runs before the rows are written, so its row locks also serialise two
 * instances that race for the same partition. A flush of a task with several inputs moves a partition of each.
 */
export async function advanceOffsets(t: pgPromise.IBaseProtocol<unknown>, groupId: string, moves: OffsetMove[],
  options: { begin?: boolean } = {}): Promise<void> {
  if (!moves.length) {
    if (options.begin) await t.none('BEGIN');
    return;
  }
  const values = moves.map((m) => pgp.as.format('($1::text, $2::int, $3::bigint, $4::bigint)', [m.topic, m.partition, m.expected, m.next])).join(',');
  const update = pgp.as.format(`UPDATE ${OFFSETS_TABLE} o SET next_offset = v.next, updated_at = now()
    FROM (VALUES ${values}) AS v(topic, partition, expected, next)
    WHERE o.group_id = $1 AND o.topic = v.topic AND o.partition = v.partition AND o.next_offset = v.expected
    RETURNING o.topic, o.partition`, [groupId]);
  // With begin, BEGIN goes in the same round trip: every round trip of a flush waits behind the event loop.
  const moved = options.begin
    ? ((await t.multi(`BEGIN; ${update}`)) as { topic: string; partition: number }[][])[1]
    : await t.any<{ topic: string; partition: number }>(update);
  if (moved.length !== moves.length) {
    const ok = new Set(moved.map((r) => `${r.topic}/${r.partition}`));
    const fenced = moves.filter((m) => !ok.has(`${m.topic}/${m.partition}`));
    throw new FencedError([...new Set(fenced.map((m) => m.topic))].join(', '), fenced.map((m) => m.partition));
  }
}

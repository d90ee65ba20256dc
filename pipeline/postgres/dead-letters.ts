import Kafka from 'node-rdkafka';
import type pgPromise from 'pg-promise';
import { clientConfig, type KafkaConnection } from '../kafka/client-config.ts';
import { readRange } from '../kafka/read-range.ts';
import { KafkaProducer, type Headers } from '../kafka/producer.ts';
import type { PipelineMetrics } from '../metrics/registry.ts';
import { errorMessage, type DeadLetterReason } from '../errors.ts';
import { pgp, withSetupLock, type Connection, type Database } from './db.ts';

/**
 * Dead letters are written to Postgres in the same transaction as the rows and offsets of their flush (an
 * outbox), then published to their dead-letter topic by one relay at a time per topic (an advisory lock on the
 * topic's name). So a crash never loses one, and it never publishes one twice either: each carries the relay's
 * sequence number in a header, the relay publishes in sequence order with the idempotent producer, and after taking
 * the lock it reads the tail of each dead-letter partition to forget what was already delivered.
 *
 * The lock is per topic, and a relay publishes only its own topic's rows, so pipelines that share a database do not
 * wait on each other (nor publish each other's dead letters with the wrong broker connection): a relay stopped,
 * stuck or failing holds back its own topic only.
 */
export interface DeadLetter {
  dlqTopic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers | undefined;
  reason: DeadLetterReason;
  message: string;
  sourceTopic: string;
  sourcePartition: number;
  sourceOffset: number;
  sourceTimestamp?: number;
}

export const DEAD_LETTERS_TABLE = 'pipeline_dead_letters';
const SEQ_HEADER = 'pipeline.dlq.seq';
const RELAY_HEADER = 'pipeline.dlq.relay';
/** How long a stopping relay waits for the instance that holds its topic's lock to publish what it committed. */
const STOP_WAIT_MS = 10_000;

export async function ensureDeadLetterTable(db: Database): Promise<void> {
  await withSetupLock(db, async (t) => {
    await t.none(`CREATE TABLE IF NOT EXISTS ${DEAD_LETTERS_TABLE} (
      id bigserial PRIMARY KEY,
      dlq_topic text NOT NULL,
      source_topic text NOT NULL,
      source_partition integer NOT NULL,
      source_offset bigint NOT NULL,
      source_timestamp bigint,
      key bytea,
      value bytea,
      headers jsonb NOT NULL DEFAULT '[]',
      reason text NOT NULL,
      message text NOT NULL,
      relay_seq bigint,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await t.none(`CREATE INDEX IF NOT EXISTS ${DEAD_LETTERS_TABLE}_topic ON ${DEAD_LETTERS_TABLE} (dlq_topic, relay_seq)`);
    await t.none(`CREATE SEQUENCE IF NOT EXISTS ${DEAD_LETTERS_TABLE}_relay_seq`);
    await t.none(`CREATE TABLE IF NOT EXISTS pipeline_meta (key text PRIMARY KEY, value text NOT NULL)`);
    await t.none(`INSERT INTO pipeline_meta VALUES ('relay_id', md5(random()::text || clock_timestamp()::text)) ON CONFLICT DO NOTHING`);
  });
}

const columns = new pgp.helpers.ColumnSet([
  'dlq_topic', 'source_topic', 'source_partition', 'source_offset', 'source_timestamp', 'key', 'value',
  { name: 'headers', mod: ':json' }, 'reason', 'message',
], { table: DEAD_LETTERS_TABLE });

function headerPairs(headers: Headers | undefined): [string, string][] {
  const out: [string, string][] = [];
  for (const h of headers ?? []) {
    for (const [k, v] of Object.entries(h)) out.push([k, Buffer.from(v as Buffer | string).toString('base64')]);
  }
  return out;
}

/** Inside the flush transaction. */
export async function insertDeadLetters(t: pgPromise.IBaseProtocol<unknown>, letters: DeadLetter[]): Promise<void> {
  if (!letters.length) return;
  const rows = letters.map((d) => ({
    dlq_topic: d.dlqTopic, source_topic: d.sourceTopic, source_partition: d.sourcePartition, source_offset: d.sourceOffset,
    source_timestamp: d.sourceTimestamp ?? null, key: d.key, value: d.value, headers: headerPairs(d.headers),
    reason: d.reason, message: d.message.slice(0, 2000),
  }));
  await t.none(pgp.helpers.insert(rows, columns));
}

interface OutboxRow {
  id: string;
  dlq_topic: string;
  source_topic: string;
  source_partition: number;
  source_offset: string;
  source_timestamp: string | null;
  key: Buffer | null;
  value: Buffer | null;
  headers: [string, string][];
  reason: DeadLetterReason;
  message: string;
  relay_seq: string;
}

export class DeadLetterRelay {
  private producer: KafkaProducer | undefined;
  private lockConn: Connection | undefined;
  private relayId = '';
  private partitions = new Map<string, number>();
  private reconciled = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  /** Publishes the outbox rows of `topic`. */
  constructor(private readonly db: Database, private readonly conn: KafkaConnection, readonly topic: string,
    private readonly metrics: PipelineMetrics, private readonly log: (line: string) => void) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Ask for a publish round now (after a flush committed dead letters). */
  poke(): void {
    this.wake?.();
  }

  /**
   * Publishes what is committed and stops. If another instance holds the topic's lock, waits (STOP_WAIT_MS at most)
   * for it to publish the outbox, taking the lock over if it is let go; what is still unpublished then is said.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.poke();
    await this.loop;
    await this.producer?.disconnect();
    await this.release();
  }

  /** Dead letters of this topic in the outbox (committed, not yet known to be published). */
  async outbox(): Promise<number> {
    return (await this.db.one<{ n: number }>(`SELECT count(*)::int AS n FROM ${DEAD_LETTERS_TABLE} WHERE dlq_topic = $1`, [this.topic])).n;
  }

  private async run(): Promise<void> {
    let failures = 0;
    let stopBy = 0;
    for (;;) {
      const stopping = this.stopped;
      if (stopping && !stopBy) stopBy = Date.now() + STOP_WAIT_MS;
      try {
        if (await this.acquire()) {
          if (!this.reconciled) await this.reconcile();
          while (await this.publishRound() > 0) { /* drain the backlog */ }
          if (stopping) return;
        } else if (stopping) {
          // Another instance relays this topic: stopped once it has published what is committed, or at stopBy.
          const left = await this.outbox();
          if (!left) return;
          if (Date.now() >= stopBy) {
            this.log(`dead-letter relay: ${left} dead letters of ${this.topic} are committed and wait in the outbox for the instance that holds its relay lock`);
            return;
          }
        }
        failures = 0;
      } catch (err) {
        failures++;
        this.reconciled = false;
        await this.release();
        if (failures === 1 || failures % 10 === 0) this.log(`dead-letter relay: ${errorMessage(err)} (will retry)`);
        if (stopping) return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, failures ? Math.min(5000, 200 * 2 ** failures) : stopping ? 200 : 500).unref();
      });
    }
  }

  private async acquire(): Promise<boolean> {
    if (this.lockConn) return true;
    const conn = await this.db.connect();
    // The topic's lock; and the table's, shared, which a relay of before per-topic locks took alone: the two never both run.
    const { locked } = await conn.one<{ locked: boolean }>(`SELECT pg_try_advisory_lock_shared(hashtext('${DEAD_LETTERS_TABLE}'))
      AND pg_try_advisory_lock(hashtext('${DEAD_LETTERS_TABLE}'), hashtext($1)) AS locked`, [this.topic]);
    if (!locked) {
      await conn.any('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      conn.done();
      return false;
    }
    this.lockConn = conn;
    // The lock lives as long as this session; if the connection breaks another relay may take over.
    conn.client.on('error', () => { this.lockConn = undefined; this.reconciled = false; });
    this.relayId = (await conn.one<{ value: string }>(`SELECT value FROM pipeline_meta WHERE key = 'relay_id'`)).value;
    if (!this.producer) {
      this.producer = new KafkaProducer(this.conn, { 'client.id': 'pipeline-dlq-relay', 'linger.ms': 5 });
      await this.producer.connect();
    }
    return true;
  }

  private async release(): Promise<void> {
    const conn = this.lockConn;
    this.lockConn = undefined;
    if (conn) {
      await conn.any('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      conn.done();
    }
  }

  private async partitionCount(topic: string): Promise<number> {
    const known = this.partitions.get(topic);
    if (known) return known;
    const count = await this.producer!.partitionCount(topic);
    if (!count) throw new Error(`dead-letter topic ${topic} has no partitions`);
    this.partitions.set(topic, count);
    return count;
  }

  /** Forgets outbox rows whose sequence number already sits in the dead-letter topic (published before a crash). */
  private async reconcile(): Promise<void> {
    const topic = this.topic;
    const { n: numbered } = await this.lockConn!.one<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${DEAD_LETTERS_TABLE} WHERE dlq_topic = $1 AND relay_seq IS NOT NULL`, [topic]);
    if (numbered) {
      const n = await this.partitionCount(topic);
      const tails = await readTailSeqs(this.conn, topic, n, this.relayId);
      for (const [partition, seq] of tails) {
        await this.lockConn!.none(`DELETE FROM ${DEAD_LETTERS_TABLE} WHERE dlq_topic = $1 AND relay_seq <= $2 AND source_partition % $3 = $4`,
          [topic, seq, n, partition]);
      }
    }
    this.reconciled = true;
  }

  private async publishRound(): Promise<number> {
    const conn = this.lockConn!;
    await conn.none(`UPDATE ${DEAD_LETTERS_TABLE} SET relay_seq = nextval('${DEAD_LETTERS_TABLE}_relay_seq')
      WHERE id IN (SELECT id FROM ${DEAD_LETTERS_TABLE} WHERE dlq_topic = $1 AND relay_seq IS NULL ORDER BY id LIMIT 5000)`, [this.topic]);
    const rows = await conn.any<OutboxRow>(`SELECT * FROM ${DEAD_LETTERS_TABLE} WHERE dlq_topic = $1 AND relay_seq IS NOT NULL ORDER BY relay_seq LIMIT 5000`, [this.topic]);
    if (!rows.length) return 0;
    for (const r of rows) {
      const n = await this.partitionCount(r.dlq_topic);
      const headers: Headers = r.headers.map(([k, v]) => ({ [k]: Buffer.from(v, 'base64') }));
      headers.push(
        { 'error.reason': r.reason }, { 'error.message': r.message }, { 'source.topic': r.source_topic },
        { 'source.partition': String(r.source_partition) }, { 'source.offset': r.source_offset },
        { [SEQ_HEADER]: r.relay_seq }, { [RELAY_HEADER]: this.relayId },
      );
      if (r.source_timestamp) headers.push({ 'source.timestamp': r.source_timestamp });
      await this.producer!.produce({ topic: r.dlq_topic, partition: r.source_partition % n, key: r.key, value: r.value, headers });
    }
    await this.producer!.flush();
    await conn.none(`DELETE FROM ${DEAD_LETTERS_TABLE} WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
    for (const r of rows) this.metrics.deadLettersPublished.inc({ topic: r.dlq_topic });
    return rows.length;
  }
}

/**
 * The highest relay sequence number of this relay in each partition. The relay publishes in sequence order, so it is
 * in the last of its messages: the partition is read back from its end in growing windows (5,000 messages, then 4
 * times as many) until one of this relay's messages turns up or the partition's start is reached, so messages of
 * other producers after them cannot hide them. A read that stops short of the end throws (the relay retries): a
 * tail not read whole is never taken for "nothing published".
 */
async function readTailSeqs(conn: KafkaConnection, topic: string, partitions: number, relayId: string): Promise<Map<number, number>> {
  const consumer = new Kafka.KafkaConsumer(clientConfig(conn, {
    'group.id': 'pipeline-dlq-relay-reconcile', 'enable.auto.commit': false, 'enable.partition.eof': true,
  }) as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (err) => (err ? reject(err) : resolve())));
  const out = new Map<number, number>();
  try {
    for (let p = 0; p < partitions; p++) {
      const wm = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) =>
        consumer.queryWatermarkOffsets(topic, p, 10_000, (err, o) => (err ? reject(err) : resolve(o))));
      if (wm.highOffset <= wm.lowOffset) continue;
      let best = -1;
      for (let window = 5000, end = wm.highOffset; best < 0 && end > wm.lowOffset; window *= 4) {
        const from = Math.max(wm.lowOffset, wm.highOffset - window);
        best = await highestSeq(consumer, topic, p, from, end, relayId);
        end = from;
      }
      if (best >= 0) out.set(p, best);
    }
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
  return out;
}

/** This relay's highest sequence number in offsets [from, end) of a partition (-1: none); throws if it cannot read them all. */
async function highestSeq(consumer: Kafka.KafkaConsumer, topic: string, partition: number, from: number, end: number, relayId: string): Promise<number> {
  let best = -1;
  await readRange(consumer, topic, partition, from, end, (m) => {
    let seq: number | undefined;
    let relay: string | undefined;
    for (const h of m.headers ?? []) {
      if (h[SEQ_HEADER] !== undefined) seq = Number(h[SEQ_HEADER].toString());
      if (h[RELAY_HEADER] !== undefined) relay = h[RELAY_HEADER].toString();
    }
    if (relay === relayId && seq !== undefined && seq > best) best = seq;
  }, 10_000);
  return best;
}

import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import Kafka from 'node-rdkafka';
import { deleteTopics, ensureTopics } from '../../pipeline/kafka/admin.ts';
import { clientConfig, kafkaConnection, type KafkaConnection } from '../../pipeline/kafka/client-config.ts';
import { KafkaProducer, type OutgoingMessage } from '../../pipeline/kafka/producer.ts';
import { projectRoot } from '../../pipeline/local/paths.ts';
import { database, type Database } from '../../pipeline/postgres/db.ts';
import { topologyNodeFlags } from '../../scripts/node-flags.mjs';

export const kafka = (): KafkaConnection => kafkaConnection(process.env.KAFKA_BROKERS!, []);
export const db = (): Database => database(process.env.DATABASE_URL!);

/** A fresh name per test, so tests never see each other's topics, tables or groups. */
export function unique(prefix: string): string {
  return `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
}

export interface Run {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Starts `npm run topology -- <args>` as a child process (node + tsx directly, so signals reach it). */
export function startTopology(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const childEnv = { ...process.env, METRICS_PORT: '0', ...env };
  const child = spawn(process.execPath, [...topologyNodeFlags(childEnv), '--import', 'tsx', path.join(projectRoot, 'pipeline/cli/main.ts'), ...args], {
    cwd: projectRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return { child, stderr: () => err, stdout: () => out, exited };
}

export async function runTopology(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const run = startTopology(args, env);
  const code = await run.exited;
  return { code, stderr: run.stderr(), stdout: run.stdout() };
}

/** The generator's own account of what it sent, from its last line. */
export function generatorReport(stderr: string): { produced: number; valid: number; invalid: number } {
  const m = /produced (\d+) records to \S+ \(valid (\d+), invalid (\d+)/.exec(stderr);
  if (!m) throw new Error(`no generator report in:\n${stderr}`);
  return { produced: Number(m[1]), valid: Number(m[2]), invalid: Number(m[3]) };
}

export async function createTopic(name: string, partitions = 3): Promise<void> {
  await ensureTopics(kafka(), [{ name, partitions }]);
}

export async function produce(messages: OutgoingMessage[]): Promise<void> {
  const p = new KafkaProducer(kafka(), { 'client.id': 'test-producer', 'linger.ms': 5 });
  await p.connect();
  try {
    for (const m of messages) await p.produce(m);
    await p.flush();
  } finally {
    await p.disconnect();
  }
}

/** Everything in a topic, read from the beginning with a throwaway group, until the end of every partition. */
export async function readTopic(topic: string, timeoutMs = 30_000, conn: KafkaConnection = kafka()): Promise<Kafka.Message[]> {
  const consumer = new Kafka.KafkaConsumer(clientConfig(conn, {
    'group.id': unique('test-reader'), 'enable.auto.commit': false, 'enable.partition.eof': true,
  }) as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (err) => (err ? reject(err) : resolve())));
  try {
    const meta = await new Promise<Kafka.Metadata>((resolve, reject) => consumer.getMetadata({ topic, timeout: 10_000 }, (e, m) => (e ? reject(e) : resolve(m))));
    const partitions = meta.topics.find((t) => t.name === topic)?.partitions.map((p) => p.id) ?? [];
    const ends = new Map<number, number>();
    for (const p of partitions) {
      const wm = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) => consumer.queryWatermarkOffsets(topic, p, 10_000, (e, o) => (e ? reject(e) : resolve(o))));
      if (wm.highOffset > wm.lowOffset) ends.set(p, wm.highOffset);
    }
    if (!ends.size) return [];
    consumer.assign([...ends.keys()].map((partition) => ({ topic, partition, offset: -2 })));
    const out: Kafka.Message[] = [];
    const deadline = Date.now() + timeoutMs;
    const done = new Set<number>();
    while (done.size < ends.size && Date.now() < deadline) {
      const msgs = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(5000, (e, m) => (e ? reject(e) : resolve(m))));
      for (const m of msgs) {
        out.push(m);
        if (m.offset >= ends.get(m.partition)! - 1) done.add(m.partition);
      }
      // A partition that ends in transaction markers (offsets that are no messages) is read once the position is past them.
      if (!msgs.length) {
        for (const p of consumer.position()) if (typeof p.offset === 'number' && p.offset >= ends.get(p.partition)!) done.add(p.partition);
      }
    }
    if (done.size < ends.size) throw new Error(`reading ${topic} timed out`);
    return out;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

export function header(m: Kafka.Message, name: string): string | undefined {
  for (const h of m.headers ?? []) if (h[name] !== undefined) return h[name].toString();
  return undefined;
}

export async function dropAll(topics: string[], tables: string[], groups: string[]): Promise<void> {
  await deleteTopics(kafka(), topics).catch(() => undefined);
  const d = db();
  for (const t of tables) await d.none('DROP TABLE IF EXISTS $1:name', [t]);
  if (groups.length) await d.none('DELETE FROM pipeline_offsets WHERE group_id = ANY($1)', [groups]).catch(() => undefined);
  // Dead letters a failed test left unpublished: their topic is gone, so no relay would ever publish them.
  await d.none('DELETE FROM pipeline_dead_letters WHERE dlq_topic = ANY($1)', [topics]).catch(() => undefined);
}

/** The offsets of a consumer group committed in Postgres, summed over its partitions: the records it has taken. */
export async function committedOffsets(group: string): Promise<number> {
  return Number((await db().one<{ n: string }>(
    'SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint AS n FROM pipeline_offsets WHERE group_id = $1', [group])).n);
}

/**
 * The orders-ingest runs of one describe block: fresh names for each (a topic, its dead-letter topic, a table, a
 * group), the arguments to ingest them, and cleanup() for its after hook, which kills what is still running (a
 * stopped one too) and drops what was made.
 */
export function ingestCases() {
  const made: { topics: string[]; tables: string[]; groups: string[] } = { topics: [], tables: [], groups: [] };
  const runs: Run[] = [];
  const fresh = () => {
    const n = { topic: unique('orders'), table: unique('orders_data'), group: unique('ingest') };
    made.topics.push(n.topic, `${n.topic}.dlq`);
    made.tables.push(n.table);
    made.groups.push(n.group);
    return { ...n, dlq: `${n.topic}.dlq` };
  };
  return {
    fresh,
    ingest: (n: ReturnType<typeof fresh>, ...extra: string[]) =>
      ['orders-ingest', '--topic', n.topic, '--table', n.table, '--group-id', n.group, '--partitions', '2', ...extra],
    /** startTopology, killed by cleanup() if it is still running then. */
    start: (args: string[], env?: NodeJS.ProcessEnv): Run => {
      const run = startTopology(args, env);
      runs.push(run);
      return run;
    },
    cleanup: async () => {
      for (const r of runs) {
        if (r.child.exitCode === null && r.child.signalCode === null) {
          r.child.kill('SIGCONT');
          r.child.kill('SIGKILL');
        }
      }
      await dropAll(made.topics, made.tables, made.groups);
    },
  };
}

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A free loopback port (listen on 0, close). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

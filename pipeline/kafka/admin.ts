import Kafka from 'node-rdkafka';
import { AccessError, ConfigError, PipelineError } from '../errors.ts';
import { clientConfig, type KafkaConnection } from './client-config.ts';

const TOPIC_ALREADY_EXISTS = 36;
const TOPIC_AUTHORIZATION_FAILED = 29;
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

/** Kafka's own rule for topic names (Topic.validate in the Java client). */
export function topicName(name: string, flag = '--topic'): string {
  if (!TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new ConfigError(`${flag}: "${name}" is not a valid topic name (up to 249 of letters, digits, ".", "_" and "-")`);
  }
  return name;
}

/** The principal a connection authenticates as, for messages: its SASL user, or ANONYMOUS. */
export const principalOf = (conn: KafkaConnection) => `User:${conn.extra['sasl.username'] ?? 'ANONYMOUS'}`;

/** Creates the topics when missing; an existing topic keeps its partitions. */
export async function ensureTopics(conn: KafkaConnection, topics: { name: string; partitions: number; config?: Record<string, string> }[]): Promise<void> {
  const admin = Kafka.AdminClient.create(clientConfig(conn, { 'client.id': 'pipeline-admin' }) as Kafka.GlobalConfig);
  try {
    for (const t of topics) {
      const denied = await new Promise<boolean>((resolve, reject) => {
        admin.createTopic({ topic: t.name, num_partitions: t.partitions, replication_factor: -1, ...(t.config ? { config: t.config } : {}) }, 30_000, (err) => {
          if (!err || err.code === TOPIC_ALREADY_EXISTS) resolve(false);
          else if (err.code === TOPIC_AUTHORIZATION_FAILED) resolve(true);
          else reject(new PipelineError('TOPIC_CREATE_FAILED', `could not create topic ${t.name}: ${err.message}`, { retriable: true, cause: err }));
        });
      });
      // A principal that may not create topics is told so even when the topic exists: then it is enough that it does.
      if (denied && !(await partitionCounts(conn, [t.name]))[0]) {
        throw new AccessError('KAFKA_AUTHORIZATION', `Kafka denies ${principalOf(conn)} creating topic ${t.name}, and does not let it see the topic `
          + '(TOPIC_AUTHORIZATION_FAILED): if it exists, grant the principal Describe on it (and Read to read it, Write to write it); if not, create it as an admin');
      }
    }
  } finally {
    admin.disconnect();
  }
}

export async function deleteTopics(conn: KafkaConnection, names: string[]): Promise<void> {
  const admin = Kafka.AdminClient.create(clientConfig(conn, { 'client.id': 'pipeline-admin' }) as Kafka.GlobalConfig);
  try {
    for (const name of names) await new Promise<void>((resolve) => admin.deleteTopic(name, 30_000, () => resolve()));
  } finally {
    admin.disconnect();
  }
}

/** Each topic's partition count as the broker has it (0: no such topic). */
export async function partitionCounts(conn: KafkaConnection, topics: readonly string[], timeoutMs = 10_000): Promise<number[]> {
  const consumer = new Kafka.KafkaConsumer(clientConfig(conn, { 'group.id': 'pipeline-metadata', 'client.id': 'pipeline-admin' }) as Kafka.ConsumerGlobalConfig, {});
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: timeoutMs }, (err) =>
    (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve())));
  try {
    const counts: number[] = [];
    for (const topic of topics) {
      const meta = await new Promise<Kafka.Metadata>((resolve, reject) => consumer.getMetadata({ topic, timeout: timeoutMs }, (err, m) => (err ? reject(err) : resolve(m))));
      counts.push(meta.topics.find((t) => t.name === topic)?.partitions.length ?? 0);
    }
    return counts;
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

/**
 * Refuses inputs that are not co-partitioned (Kafka Streams' "topics not co-partitioned"): task p reads partition p
 * of each input, so a join or merge of topics with different partition counts would miss records or pair the wrong
 * ones. A topic that does not exist yet (0 partitions) is left out: it is created with the others' count.
 */
export function refuseNotCoPartitioned(topics: readonly string[], counts: readonly number[]): void {
  const known = counts.filter((n) => n > 0);
  if (known.some((n) => n !== known[0])) {
    throw new ConfigError(`the inputs are not co-partitioned: ${topics.map((t, i) => `${t} has ${counts[i]} partitions`).join(', ')}; `
      + 'a topology that joins or merges topics needs the same partition count in each (and records keyed alike)');
  }
}

/** The startup check (the topics exist by then): see refuseNotCoPartitioned. */
export async function checkCoPartitioned(conn: KafkaConnection, topics: readonly string[]): Promise<void> {
  refuseNotCoPartitioned(topics, await partitionCounts(conn, topics));
}

export interface PartitionInfo {
  partition: number;
  /** The broker (node id) that leads it; -1 when none does. */
  leader: number;
  replicas: number[];
  isr: number[];
  low: number;
  high: number;
}

/** A topic's partitions as the cluster has them now: leader, replicas, in-sync replicas and watermarks. */
export async function describePartitions(conn: KafkaConnection, topic: string, timeoutMs = 10_000): Promise<PartitionInfo[]> {
  const consumer = new Kafka.KafkaConsumer(clientConfig(conn, { 'group.id': 'pipeline-metadata', 'client.id': 'pipeline-admin' }) as Kafka.ConsumerGlobalConfig, {});
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: timeoutMs }, (err) =>
    (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve())));
  try {
    const meta = await new Promise<Kafka.Metadata>((resolve, reject) => consumer.getMetadata({ topic, timeout: timeoutMs }, (err, m) => (err ? reject(err) : resolve(m))));
    const out: PartitionInfo[] = [];
    for (const p of meta.topics.find((t) => t.name === topic)?.partitions ?? []) {
      const w = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) => consumer.queryWatermarkOffsets(topic, p.id, timeoutMs, (err, o) => (err ? reject(err) : resolve(o))));
      out.push({ partition: p.id, leader: p.leader, replicas: p.replicas, isr: p.isrs, low: w.lowOffset, high: w.highOffset });
    }
    return out.sort((a, b) => a.partition - b.partition);
  } finally {
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

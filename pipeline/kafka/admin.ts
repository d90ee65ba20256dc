import Kafka from 'node-rdkafka';
import { ConfigError, PipelineError } from '../errors.ts';
import { clientConfig, type KafkaConnection } from './client-config.ts';

const TOPIC_ALREADY_EXISTS = 36;
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

/** Kafka's own rule for topic names (Topic.validate in the Java client). */
export function topicName(name: string, flag = '--topic'): string {
  if (!TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new ConfigError(`${flag}: "${name}" is not a valid topic name (up to 249 of letters, digits, ".", "_" and "-")`);
  }
  return name;
}

/** Creates the topics when missing; an existing topic keeps its partitions. */
export async function ensureTopics(conn: KafkaConnection, topics: { name: string; partitions: number; config?: Record<string, string> }[]): Promise<void> {
  const admin = Kafka.AdminClient.create(clientConfig(conn, { 'client.id': 'pipeline-admin' }) as Kafka.GlobalConfig);
  try {
    for (const t of topics) {
      await new Promise<void>((resolve, reject) => {
        admin.createTopic({ topic: t.name, num_partitions: t.partitions, replication_factor: -1, ...(t.config ? { config: t.config } : {}) }, 30_000, (err) => {
          if (!err || err.code === TOPIC_ALREADY_EXISTS) resolve();
          else reject(new PipelineError('TOPIC_CREATE_FAILED', `could not create topic ${t.name}: ${err.message}`, { retriable: true, cause: err }));
        });
      });
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

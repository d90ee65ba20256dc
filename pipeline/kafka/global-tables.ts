import Kafka from 'node-rdkafka';
import { PipelineError } from '../errors.ts';
import type { GlobalTable } from '../state/global-table.ts';
import { clientConfig, type KafkaConnection } from './client-config.ts';

/** Keeps a plan's global tables filled: what StreamTask waits for before processing, and updates afterwards. */
export interface GlobalTableFeed {
  /** Reads every partition of every table's topic to its end as of now. */
  bootstrap(): Promise<void>;
  /** From then on, applies updates as they come, until stop. */
  start(): void;
  stop(): Promise<void>;
}

/**
 * Global tables read with one consumer of their own, outside the group: every partition assigned by hand from the
 * beginning, as Kafka Streams' global thread does. Nothing is committed: a restart reads the topics again.
 */
export class KafkaGlobalTables implements GlobalTableFeed {
  private consumer: Kafka.KafkaConsumer | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly conn: KafkaConnection, private readonly tables: ReadonlyMap<string, GlobalTable>, private readonly log: (line: string) => void,
    private readonly groupId: string) {}

  async bootstrap(): Promise<void> {
    const consumer = new Kafka.KafkaConsumer(clientConfig(this.conn, {
      'group.id': `${this.groupId}-global`, 'client.id': `pipeline-${this.groupId}-global`, 'enable.auto.commit': false, 'enable.partition.eof': true,
    }) as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
    consumer.setDefaultConsumeTimeout(100);
    await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 10_000 }, (err) =>
      (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve())));
    try {
      const ends = new Map<string, number>();
      const assignment: Kafka.Assignment[] = [];
      for (const topic of this.tables.keys()) {
        const meta = await new Promise<Kafka.Metadata>((resolve, reject) => consumer.getMetadata({ topic, timeout: 10_000 }, (e, m) => (e ? reject(e) : resolve(m))));
        const partitions = meta.topics.find((t) => t.name === topic)?.partitions.map((p) => p.id) ?? [];
        if (!partitions.length) throw new PipelineError('KAFKA_TOPIC_MISSING', `the global table's topic ${topic} has no partitions`, { retriable: true });
        for (const partition of partitions) {
          const w = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) => consumer.queryWatermarkOffsets(topic, partition, 10_000, (e, o) => (e ? reject(e) : resolve(o))));
          if (w.highOffset > w.lowOffset) ends.set(`${topic}/${partition}`, w.highOffset);
          assignment.push({ topic, partition, offset: -2 });
        }
      }
      consumer.assign(assignment);
      const started = Date.now();
      while (ends.size) {
        const messages = await this.consume(consumer);
        for (const m of messages) {
          const k = `${m.topic}/${m.partition}`;
          if (ends.has(k) && m.offset >= ends.get(k)! - 1) ends.delete(k);
        }
        for (const p of consumer.position()) {
          const k = `${p.topic}/${p.partition}`;
          if (typeof p.offset === 'number' && ends.has(k) && p.offset >= ends.get(k)!) ends.delete(k);
        }
        if (!messages.length && Date.now() - started > 120_000) throw new PipelineError('GLOBAL_TABLE_STALLED', `reading the global tables stalled at ${[...ends.keys()].join(', ')}`, { retriable: true });
      }
      for (const t of this.tables.values()) {
        this.log(`global table ${t.spec.topic}: ${t.size} keys${t.skipped ? `, ${t.skipped} values skipped (last: ${t.lastSkipped})` : ''}`);
      }
      this.consumer = consumer;
    } catch (err) {
      await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
      throw err;
    }
  }

  start(): void {
    const consumer = this.consumer;
    if (!consumer) throw new Error('bootstrap the global tables first');
    this.running = (async () => {
      while (!this.stopped) {
        try {
          await this.consume(consumer);
        } catch (err) {
          this.log(`global tables: ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    const consumer = this.consumer;
    this.consumer = undefined;
    if (consumer) await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }

  private async consume(consumer: Kafka.KafkaConsumer): Promise<Kafka.Message[]> {
    const messages = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(1000, (err, m) => (err ? reject(err) : resolve(m))));
    for (const m of messages) this.tables.get(m.topic)?.apply(m.key === undefined || m.key === null ? null : Buffer.from(m.key), m.value ?? null);
    return messages;
  }
}

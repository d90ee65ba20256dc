import Kafka from 'node-rdkafka';
import { PipelineError } from '../errors.ts';
import { clientConfig, type KafkaConfig, type KafkaConnection } from './client-config.ts';

const QUEUE_FULL = Kafka.CODES.ERRORS.ERR__QUEUE_FULL;

export type Headers = Kafka.MessageHeader[];

export interface OutgoingMessage {
  topic: string;
  partition?: number | null;
  key?: Buffer | string | null;
  value: Buffer | null;
  headers?: Headers;
  timestamp?: number;
}

/**
 * A thin promise layer over node-rdkafka's Producer: idempotent by default (no duplicates or reordering on
 * retry), enqueues without a promise per message, and waits for room when librdkafka's queue is full.
 * Delivery reports are counted; flush() resolves once every message is acknowledged and fails if any was not.
 */
export class KafkaProducer {
  private readonly producer: Kafka.Producer;
  private pending = 0;
  private roomWaiters: (() => void)[] = [];
  delivered = 0;
  failed = 0;
  firstError: Error | undefined;
  onDelivery?: (topic: string, count: number) => void;

  constructor(conn: KafkaConnection, own: KafkaConfig = {}) {
    this.producer = new Kafka.Producer(clientConfig(conn, {
      'client.id': 'pipeline-producer',
      'enable.idempotence': true,
      'linger.ms': 20,
      'batch.num.messages': 10000,
      'batch.size': 1_000_000,
      'queue.buffering.max.messages': 200_000,
      'queue.buffering.max.kbytes': 262_144,
      'compression.codec': 'lz4',
      'message.max.bytes': 1_048_576 + 64 * 1024,
      dr_cb: true,
      ...own,
    }) as Kafka.ProducerGlobalConfig);
    this.producer.setPollInterval(20);
    this.producer.on('delivery-report', (err, report) => {
      this.pending--;
      if (err) {
        this.failed++;
        this.firstError ??= new PipelineError('PRODUCE_FAILED', `delivery to ${report.topic} failed: ${err.message}`, { cause: err });
      } else {
        this.delivered++;
        this.onDelivery?.(report.topic, 1);
      }
      if (this.roomWaiters.length && this.pending < 100_000) for (const w of this.roomWaiters.splice(0)) w();
    });
  }

  async connect(timeoutMs = 30_000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.producer.connect({ timeout: timeoutMs }, (err) => (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve()));
    });
  }

  /** Enqueues one message; returns false when librdkafka's queue is full (wait with waitForRoom()). */
  tryProduce(m: OutgoingMessage): boolean {
    try {
      this.producer.produce(m.topic, m.partition ?? null, m.value, m.key ?? null, m.timestamp ?? Date.now(), undefined, m.headers);
      this.pending++;
      return true;
    } catch (err) {
      if ((err as { code?: number }).code === QUEUE_FULL) return false;
      throw err;
    }
  }

  async produce(m: OutgoingMessage): Promise<void> {
    while (!this.tryProduce(m)) await this.waitForRoom();
  }

  waitForRoom(): Promise<void> {
    return new Promise((resolve) => {
      this.roomWaiters.push(resolve);
      setTimeout(resolve, 50); // a delivery report may have come before we started waiting
    });
  }

  async partitionCount(topic: string): Promise<number> {
    const meta = await new Promise<Kafka.Metadata>((resolve, reject) =>
      this.producer.getMetadata({ topic, timeout: 10_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    return meta.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
  }

  get inFlight(): number {
    return this.pending;
  }

  /** Waits until everything enqueued so far is acknowledged; throws if any message failed. */
  async flush(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending > 0) {
      if (Date.now() > deadline) throw new PipelineError('PRODUCE_TIMEOUT', `${this.pending} messages not acknowledged after ${timeoutMs / 1000}s`, { retriable: true });
      await new Promise<void>((resolve) => this.producer.flush(1000, () => resolve()));
    }
    if (this.firstError) {
      const err = this.firstError;
      this.firstError = undefined;
      throw err;
    }
  }

  async disconnect(): Promise<void> {
    await new Promise<void>((resolve) => this.producer.disconnect(10_000, () => resolve()));
  }
}

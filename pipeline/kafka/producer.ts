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

/** What patches/node-rdkafka-packed.patch adds to the binding's Producer. */
interface NativeProducer {
  producePacked(topic: string, values: Uint8Array, valueEnds: Uint32Array, keys: Uint8Array, keyEnds: Uint32Array, partition: number, start: number): number;
  packedDeliveries(): [delivered: number, failed: number, firstError: string | undefined];
}

/**
 * A thin promise layer over node-rdkafka's Producer: idempotent by default (no duplicates or reordering on
 * retry), enqueues without a promise per message, and waits for room when librdkafka's queue is full.
 * Delivery reports are counted; flush() resolves once every message is acknowledged and fails if any was not.
 */
export class KafkaProducer {
  private readonly producer: Kafka.Producer;
  /** Messages of produce() not yet reported on. */
  private pending = 0;
  private roomWaiters: (() => void)[] = [];
  private reported = { delivered: 0, failed: 0 };
  /** producePacked's messages: enqueued, and delivered or failed as last read from the binding. */
  private packed = { enqueued: 0, delivered: 0, failed: 0 };
  firstError: Error | undefined;
  onDelivery?: (count: number) => void;

  constructor(conn: KafkaConnection, own: KafkaConfig = {}) {
    this.producer = new Kafka.Producer(clientConfig(conn, {
      'client.id': 'pipeline-producer',
      'enable.idempotence': true,
      // The Java client's partitioner: a key goes to the partition Kafka Streams and Java producers put it in, so
      // topics written here are co-partitioned with theirs (a join, a repartition topic).
      partitioner: 'murmur2_random',
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
        this.reported.failed++;
        this.firstError ??= new PipelineError('PRODUCE_FAILED', `delivery to ${report.topic} failed: ${err.message}`, { cause: err });
      } else {
        this.reported.delivered++;
        this.onDelivery?.(1);
      }
      if (this.roomWaiters.length && this.pending < 100_000) for (const w of this.roomWaiters.splice(0)) w();
    });
  }

  /** Messages acknowledged by Kafka, of produce() and producePacked(). */
  get delivered(): number {
    this.readPacked();
    return this.reported.delivered + this.packed.delivered;
  }

  /** Messages Kafka did not take (after librdkafka's retries). */
  get failed(): number {
    this.readPacked();
    return this.reported.failed + this.packed.failed;
  }

  /**
   * Enqueues a packed batch in one call to the binding per stretch that fits librdkafka's queue (producePacked,
   * patches/node-rdkafka-packed.patch): the values and the keys back to back, each with its end offsets; a
   * key of zero bytes is no key, and partition -1 leaves the partition to the partitioner. The timestamp is the
   * enqueue time. Delivery reports of these are counted in the binding, not turned into an event each.
   */
  async producePacked(topic: string, batch: { values: Uint8Array; valueEnds: Uint32Array; keys: Uint8Array; keyEnds: Uint32Array }, partition = -1): Promise<void> {
    const native = this.native;
    const n = batch.valueEnds.length;
    let at = 0;
    while (at < n) {
      const taken = native.producePacked(topic, batch.values, batch.valueEnds, batch.keys, batch.keyEnds, partition, at);
      this.packed.enqueued += taken;
      at += taken;
      if (at < n) await new Promise((resolve) => setTimeout(resolve, 5)); // the queue is full: librdkafka sends meanwhile
    }
  }

  /** node-rdkafka's binding, with producePacked (patches/node-rdkafka-packed.patch, applied on npm install). */
  private get native(): NativeProducer {
    const client = (this.producer as unknown as { _client: NativeProducer })._client;
    if (typeof client.producePacked !== 'function') {
      throw new PipelineError('KAFKA_CLIENT', 'node-rdkafka lacks producePacked: run npm ci (its postinstall applies patches/node-rdkafka-packed.patch)');
    }
    return client;
  }

  /** The binding's count of producePacked's delivery reports (they arrive on poll() and flush()). */
  private readPacked(): void {
    if (!this.packed.enqueued) return;
    const [delivered, failed, error] = this.native.packedDeliveries();
    if (failed && !this.firstError) this.firstError = new PipelineError('PRODUCE_FAILED', `delivery failed: ${error}`);
    const fresh = delivered - this.packed.delivered;
    this.packed.delivered = delivered;
    this.packed.failed = failed;
    if (fresh) this.onDelivery?.(fresh);
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
    this.readPacked();
    return this.pending + this.packed.enqueued - this.packed.delivered - this.packed.failed;
  }

  /** Waits until everything enqueued so far is acknowledged; throws if any message failed. */
  async flush(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0) {
      if (Date.now() > deadline) throw new PipelineError('PRODUCE_TIMEOUT', `${this.inFlight} messages not acknowledged after ${timeoutMs / 1000}s`, { retriable: true });
      await new Promise<void>((resolve) => this.producer.flush(1000, () => resolve()));
    }
    if (this.firstError) {
      const err = this.firstError;
      this.firstError = undefined;
      throw err;
    }
  }

  /** Transactions (with transactional.id set): fences an older producer of the same id, and aborts its open transaction. */
  initTransactions(timeoutMs = 30_000): Promise<void> {
    return this.call('initTransactions', (cb) => this.producer.initTransactions(timeoutMs, cb));
  }

  beginTransaction(): Promise<void> {
    return this.call('beginTransaction', (cb) => this.producer.beginTransaction(cb));
  }

  /** The source offsets (each the next to read) committed with the transaction, for the consumer's group. */
  sendOffsetsToTransaction(offsets: Kafka.TopicPartitionOffset[], consumer: Kafka.KafkaConsumer, timeoutMs = 30_000): Promise<void> {
    return this.call('sendOffsetsToTransaction', (cb) => this.producer.sendOffsetsToTransaction(offsets, consumer, timeoutMs, cb));
  }

  commitTransaction(timeoutMs = 30_000): Promise<void> {
    return this.call('commitTransaction', (cb) => this.producer.commitTransaction(timeoutMs, cb));
  }

  abortTransaction(timeoutMs = 30_000): Promise<void> {
    return this.call('abortTransaction', (cb) => this.producer.abortTransaction(timeoutMs, cb));
  }

  private call(what: string, fn: (cb: (err: Kafka.LibrdKafkaError) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => fn((err) => (err
      ? reject(new PipelineError('KAFKA_TRANSACTION', `${what}: ${err.message}`, { retriable: true, cause: err }))
      : resolve())));
  }

  async disconnect(): Promise<void> {
    await new Promise<void>((resolve) => this.producer.disconnect(10_000, () => resolve()));
  }
}

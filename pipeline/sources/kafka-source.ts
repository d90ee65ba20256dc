import Kafka from 'node-rdkafka';
import { PipelineError } from '../errors.ts';
import { clientConfig, type KafkaConfig, type KafkaConnection } from '../kafka/client-config.ts';
import type { Headers } from '../kafka/producer.ts';
import { unpackNative } from './packed-batch.ts';
import type { PartitionError, PartitionListener, Polled, Source } from './source.ts';

export type { PartitionError, PartitionListener } from './source.ts';

const ASSIGN = Kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS;
const CONSUME_TIMEOUT_MS = 100;
const OFFSET_BEGINNING = -2;

/** What patches/node-rdkafka-packed.patch adds to the binding's KafkaConsumer. */
interface NativeConsumer {
  consumePacked(timeoutMs: number, max: number, cb: (err: Kafka.LibrdKafkaError | null, buffer?: ArrayBuffer, n?: number, valueBytes?: number,
    keyBytes?: number, topic?: string, headers?: (Headers | undefined)[], errors?: PartitionError[]) => void): void;
}

/**
 * node-rdkafka's KafkaConsumer in non-flowing mode: the runtime pulls batches with poll(). Offsets are not
 * committed to Kafka by librdkafka: on assignment the listener says where each partition starts (the offsets
 * stored in Postgres), and after a flush the runtime commits to Kafka only so that lag tools see progress.
 * Rebalance events are handled one after another, each finished before the next starts.
 */
export class KafkaSource implements Source {
  private readonly consumer: Kafka.KafkaConsumer;
  private rebalancing: Promise<void> = Promise.resolve();
  readonly kind = 'kafka';
  /** Bumped whenever the assignment changes; `changing` while a rebalance is being handled. */
  private epoch = 0;
  private changing = false;
  onLag?: (lag: Map<number, number>) => void;
  onError?: (err: Error) => void;

  constructor(conn: KafkaConnection, readonly topic: string, readonly groupId: string, private readonly listener: PartitionListener, own: KafkaConfig = {}) {
    const rebalanceCb = (err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]) => this.rebalance(err, assignment);
    this.consumer = new Kafka.KafkaConsumer({ ...clientConfig(conn, {
      'client.id': `pipeline-${groupId}`,
      'group.id': groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      'partition.assignment.strategy': 'range',
      'session.timeout.ms': 10_000,
      'heartbeat.interval.ms': 2_000,
      'fetch.wait.max.ms': 100,
      // Prefetch bounded by bytes: 1 MB a partition, 4 MB a fetch, 4 MB queued: a few polls ahead. Larger prefetches
      // read no faster with stage workers, and cost RSS (decompressed batches sit in librdkafka's malloc arenas); they
      // only help a consumer that does nothing else (`npm run bench -- ingest`, docs/performance.md).
      'fetch.max.bytes': 4_194_304,
      'max.partition.fetch.bytes': 1_048_576,
      'queued.max.messages.kbytes': 4_096,
      'queued.min.messages': 50_000,
      // With a queue this small, librdkafka's default (1 s) idles the fetcher each time the queue fills, and a packed
      // read drains it far sooner than that (docs/performance.md).
      'fetch.queue.backoff.ms': 10,
      'statistics.interval.ms': 5_000,
      // A poll returns as soon as it reaches the end of a partition (node-rdkafka then stops waiting per message),
      // so at a low rate a record does not wait for a full poll of messages before it is processed.
      'enable.partition.eof': true,
      'socket.keepalive.enable': true,
      ...own,
    }), rebalance_cb: rebalanceCb } as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
    this.consumer.setDefaultConsumeTimeout(CONSUME_TIMEOUT_MS);
    this.consumer.on('event.stats', (m: { message: string }) => {
      if (!this.onLag) return;
      try {
        const parts = (JSON.parse(m.message) as LibrdkafkaStats).topics?.[this.topic]?.partitions ?? {};
        const lag = new Map<number, number>();
        for (const [p, s] of Object.entries(parts)) if (p !== '-1' && s.consumer_lag >= 0) lag.set(Number(p), s.consumer_lag);
        this.onLag(lag);
      } catch { /* a statistics event we cannot read is not worth failing for */ }
    });
    this.consumer.on('event.error', (err) => this.onError?.(err as unknown as Error));
  }

  async connect(timeoutMs = 30_000): Promise<void> {
    await new Promise<void>((resolve, reject) => this.consumer.connect({ timeout: timeoutMs }, (err) =>
      (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve())));
    this.consumer.subscribe([this.topic]);
  }

  /** Resolves once no rebalance is being handled. */
  settled(): Promise<void> {
    return this.rebalancing;
  }

  /**
   * Up to max messages, packed; an empty batch after waitMs without any. It returns early at the end of a partition
   * (enable.partition.eof), with what it has, rather than wait to fill the batch. `straddled` says an assignment
   * changed while the poll ran: node-rdkafka's consume runs in a worker thread, so such a poll can hold messages
   * fetched before the change (for partitions revoked, or fetched ahead of the position a new owner starts from) next
   * to messages fetched after it. The caller must not take them as they are (see StreamTask.refetch).
   * `errors` come after the messages: librdkafka goes on past a batch it could not decode, so the caller must stop
   * taking that partition's messages at the error's offset.
   */
  poll(max: number, waitMs = CONSUME_TIMEOUT_MS): Promise<Polled> {
    const epoch = this.epoch;
    return new Promise((resolve, reject) => this.native.consumePacked(waitMs, max, (err, buffer, n, valueBytes, keyBytes, topic, headers, errors) => {
      if (err) reject(new PipelineError('KAFKA_CONSUME', `consume: ${err.message}`, { retriable: true, cause: err }));
      else resolve({ batch: unpackNative(buffer!, n!, valueBytes!, keyBytes!, topic!, headers), straddled: epoch !== this.epoch || this.changing, errors: errors ?? [] });
    }));
  }

  /** The partition's low and high watermarks, as the broker has them now. */
  watermarks(partition: number, timeoutMs = 10_000): Promise<{ low: number; high: number }> {
    return new Promise((resolve, reject) => this.consumer.queryWatermarkOffsets(this.topic, partition, timeoutMs, (err, w) =>
      (err ? reject(err) : resolve({ low: w.lowOffset, high: w.highOffset }))));
  }

  /**
   * node-rdkafka's own consume: an object and two Buffers per message, made on the main thread. What a hand-written
   * consumer reads with (the INSERT baseline of `npm run bench -- ingest`); the pipeline reads with poll().
   */
  pollMessages(max: number): Promise<Kafka.Message[]> {
    return new Promise((resolve, reject) => this.consumer.consume(max, (err, messages) => (err ? reject(err) : resolve(messages))));
  }

  /** node-rdkafka's binding, with consumePacked (patches/node-rdkafka-packed.patch, applied on npm install). */
  private get native(): NativeConsumer {
    const client = (this.consumer as unknown as { _client: NativeConsumer })._client;
    if (typeof client.consumePacked !== 'function') {
      throw new PipelineError('KAFKA_CLIENT', 'node-rdkafka lacks consumePacked: run npm ci (its postinstall applies patches/node-rdkafka-packed.patch)');
    }
    return client;
  }

  async seek(partition: number, offset: number): Promise<void> {
    await new Promise<void>((resolve, reject) => this.consumer.seek({ topic: this.topic, partition, offset: offset < 0 ? OFFSET_BEGINNING : offset }, 10_000,
      (err) => (err ? reject(err) : resolve())));
  }

  pause(partitions: number[]): void {
    if (partitions.length) this.consumer.pause(partitions.map((partition) => ({ topic: this.topic, partition })));
  }

  resume(partitions: number[]): void {
    if (partitions.length) this.consumer.resume(partitions.map((partition) => ({ topic: this.topic, partition })));
  }

  /** Kafka-side commit, for lag monitoring only (of partitions the runtime owns); Postgres holds the truth. */
  commitForMonitoring(offsets: { partition: number; offset: number }[]): void {
    if (!offsets.length) return;
    try {
      this.consumer.commit(offsets.map((o) => ({ topic: this.topic, partition: o.partition, offset: o.offset })));
    } catch { /* not assigned any more, or not connected: the next commit will carry it */ }
  }

  async disconnect(): Promise<void> {
    await this.rebalancing;
    await new Promise<void>((resolve) => this.consumer.disconnect(() => resolve()));
  }

  private rebalance(err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]): void {
    const partitions = assignment.filter((a) => a.topic === this.topic).map((a) => a.partition);
    this.changing = true;
    this.epoch++;
    this.rebalancing = this.rebalancing.then(async () => {
      this.changing = true;
      try {
        if (err.code === ASSIGN) {
          const start = await this.listener.onAssign(partitions);
          this.consumer.assign(partitions.map((partition) => {
            const offset = start.get(partition) ?? -1;
            return { topic: this.topic, partition, offset: offset < 0 ? OFFSET_BEGINNING : offset };
          }));
          this.epoch++;
        } else {
          await this.listener.onRevoke(partitions);
          this.consumer.unassign();
          this.epoch++;
        }
      } catch (e) {
        // The listener retries until it succeeds or the process stops; this is the stopping case.
        this.onError?.(e as Error);
        if (err.code !== ASSIGN) this.consumer.unassign();
      } finally {
        this.epoch++;
        this.changing = false;
      }
    });
  }
}

export interface LibrdkafkaStats {
  topics?: Record<string, { partitions: Record<string, { consumer_lag: number; hi_offset: number }> }>;
}

import Kafka from 'node-rdkafka';
import { type AccessError, PipelineError } from '../errors.ts';
import { accessErrorOf } from '../kafka/access.ts';
import { clientConfig, type KafkaConfig, type KafkaConnection } from '../kafka/client-config.ts';
import type { Headers } from '../kafka/producer.ts';
import { unpackNative } from './packed-batch.ts';
import type { PartitionError, PartitionListener, Polled, Source } from './source.ts';

export type { PartitionError, PartitionListener } from './source.ts';

const ASSIGN = Kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS;
const REVOKE = Kafka.CODES.ERRORS.ERR__REVOKE_PARTITIONS;
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
 *
 * With several topics (co-partitioned inputs), the first is read by the group's consumer, whose assignment makes the
 * tasks, and each other by a consumer of its own that is assigned the same partitions by hand, at the offsets the
 * listener gives: partition p of every input goes to the instance that owns p of the first, as Kafka Streams'
 * tasks. (A packed poll holds one topic, so each input has its consumer; polls of all of them run at once.)
 */
export class KafkaSource implements Source {
  private readonly consumers: Kafka.KafkaConsumer[];
  private rebalancing: Promise<void> = Promise.resolve();
  readonly kind = 'kafka';
  readonly topic: string;
  readonly inputs: readonly string[];
  /** Bumped whenever the assignment changes; `changing` while a rebalance is being handled. */
  private epoch = 0;
  /** Bumped on every seek of an input: a poll of that input in flight meanwhile may hold what the seek moved from. */
  private readonly seeks: number[];
  private changing = false;
  private readonly cooperative: boolean;
  private refused?: AccessError;
  /** Several inputs: each consumer's poll in flight, returned by the poll that takes it. */
  private readonly inflight: (Promise<{ polled?: Polled; error?: unknown }> | undefined)[] = [];
  onLag?: (lag: Map<number, number>) => void;
  onError?: (err: Error) => void;

  constructor(private readonly conn: KafkaConnection, topics: string | readonly string[], readonly groupId: string, private readonly listener: PartitionListener, own: KafkaConfig = {}) {
    this.inputs = typeof topics === 'string' ? [topics] : topics;
    this.topic = this.inputs[0];
    this.seeks = this.inputs.map(() => 0);
    const rebalanceCb = (err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]) => this.rebalance(err, assignment);
    const configs = this.inputs.map((_, i) => clientConfig(conn, {
      'client.id': i === 0 ? `pipeline-${groupId}` : `pipeline-${groupId}-input-${i}`,
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
    }));
    // From the configuration, not rebalanceProtocol(): that says NONE in the revoke of a closing consumer
    // (node-rdkafka#1144), and an eager unassign() of a cooperative assignment fails there.
    this.cooperative = /cooperative/.test(String(configs[0]['partition.assignment.strategy'] ?? ''));
    this.consumers = configs.map((config, i) => new Kafka.KafkaConsumer({ ...config, ...(i === 0 ? { rebalance_cb: rebalanceCb } : {}) } as Kafka.ConsumerGlobalConfig,
      { 'auto.offset.reset': 'earliest' }));
    for (const c of this.consumers) c.setDefaultConsumeTimeout(CONSUME_TIMEOUT_MS);
    this.consumers[0].on('event.stats', (m: { message: string }) => {
      if (!this.onLag) return;
      try {
        const parts = (JSON.parse(m.message) as LibrdkafkaStats).topics?.[this.topic]?.partitions ?? {};
        const lag = new Map<number, number>();
        for (const [p, s] of Object.entries(parts)) if (p !== '-1' && s.consumer_lag >= 0) lag.set(Number(p), s.consumer_lag);
        this.onLag(lag);
      } catch { /* a statistics event we cannot read is not worth failing for */ }
    });
    // A refusal (the group or a topic denied to this principal) stops the source at its next poll; the rest is logged.
    for (const c of this.consumers) {
      c.on('event.error', (err) => {
        this.refused ??= accessErrorOf(err as unknown as { code: number; message: string }, conn, { topic: this.inputs.join(', '), group: groupId });
        this.onError?.(err as unknown as Error);
      });
    }
  }

  private get consumer(): Kafka.KafkaConsumer {
    return this.consumers[0];
  }

  /** The consumer in the group (of the first input): whose offsets and generation a Kafka commit uses. */
  get groupConsumer(): Kafka.KafkaConsumer {
    return this.consumers[0];
  }

  private consumerOf(topic: string | undefined): Kafka.KafkaConsumer {
    const i = topic === undefined ? 0 : this.inputs.indexOf(topic);
    if (i < 0) throw new Error(`${topic} is not an input of this source`);
    return this.consumers[i];
  }

  async connect(timeoutMs = 30_000): Promise<void> {
    for (const c of this.consumers) {
      if (c.isConnected()) continue;
      await new Promise<void>((resolve, reject) => c.connect({ timeout: timeoutMs }, (err) =>
        (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve())));
    }
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
  async poll(max: number, waitMs = CONSUME_TIMEOUT_MS): Promise<Polled> {
    if (this.refused) throw this.refused;
    if (this.consumers.length > 1) return this.pollAny(max, waitMs);
    const polled = await this.pollOne(0, max, waitMs);
    this.notePositions(0);
    return polled;
  }

  /**
   * Several inputs: a poll of every consumer that has none in flight, and the first to come back. The others stay in
   * flight for the next polls; one that a seek or a rebalance overtook comes back marked as straddled.
   */
  private async pollAny(max: number, waitMs: number): Promise<Polled> {
    for (let i = 0; i < this.consumers.length; i++) {
      this.inflight[i] ??= this.pollOne(i, max, waitMs).then((polled) => ({ polled }), (error: unknown) => ({ error }));
    }
    const [i, got] = await Promise.race(this.inflight.map((p, i) => p!.then((r) => [i, r] as const)));
    this.inflight[i] = undefined;
    if (got.error !== undefined) throw got.error;
    this.notePositions(i); // its next poll starts with a later call: this is where the one handed over now ended
    return got.polled!;
  }

  private pollOne(input: number, max: number, waitMs: number): Promise<Polled> {
    const epoch = this.epoch;
    const seeks = this.seeks[input];
    return new Promise((resolve, reject) => this.native(input).consumePacked(waitMs, max, (err, buffer, n, valueBytes, keyBytes, topic, headers, errors) => {
      if (err) reject(accessErrorOf(err, this.conn, { topic: this.inputs[input], group: this.groupId }) ?? new PipelineError('KAFKA_CONSUME', `consume: ${err.message}`, { retriable: true, cause: err }));
      else {
        // A refusal comes among the partitions' errors (the group's too, with partition -1): it ends the source.
        for (const e of errors ?? []) {
          this.refused ??= accessErrorOf(e, this.conn, { topic: e.topic || this.inputs[input], group: this.groupId });
        }
        if (this.refused) return reject(this.refused);
        resolve({ batch: unpackNative(buffer!, n!, valueBytes!, keyBytes!, topic || this.inputs[input], headers), straddled: epoch !== this.epoch || seeks !== this.seeks[input] || this.changing, errors: errors ?? [] });
      }
    }));
  }

  /**
   * Where the input's consumer stood when its last poll came back: past what that poll handed over (and past any
   * transaction markers before it). Not the consumer's position now, which a poll in flight may have moved past
   * messages not yet taken.
   */
  readPosition(partition: number, topic = this.topic): number | undefined {
    return this.positions[this.inputs.indexOf(topic)]?.get(partition);
  }

  /** Each input's positions as of its last poll (readPosition). */
  private readonly positions: Map<number, number>[] = [];

  /**
   * Each input's assignment as of an epoch. node-rdkafka's position() with no list asks librdkafka for the assignment
   * first, a request answered by librdkafka's main thread while the event loop waits: ~1 ms a poll on a busy machine,
   * the main thread's largest item in a profile of the ingest. The assignment changes only in rebalance(), which bumps
   * the epoch right after each assign or unassign, so one read per epoch is the same list.
   */
  private readonly assigned: { epoch: number; partitions: Kafka.TopicPartition[] }[] = [];

  private notePositions(input: number): void {
    const m = new Map<number, number>();
    try {
      let a = this.assigned[input];
      if (a?.epoch !== this.epoch) a = this.assigned[input] = { epoch: this.epoch, partitions: this.consumers[input].assignments() };
      if (a.partitions.length) {
        for (const p of this.consumers[input].position(a.partitions)) if (typeof p.offset === 'number' && p.offset >= 0) m.set(p.partition, p.offset);
      }
    } catch { /* not assigned: nothing known */ }
    this.positions[input] = m;
  }

  /** The partition's low and high watermarks, as the broker has them now. */
  watermarks(partition: number, topic = this.topic, timeoutMs = 10_000): Promise<{ low: number; high: number }> {
    return new Promise((resolve, reject) => this.consumerOf(topic).queryWatermarkOffsets(topic, partition, timeoutMs, (err, w) =>
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
  private native(input = 0): NativeConsumer {
    const client = (this.consumers[input] as unknown as { _client: NativeConsumer })._client;
    if (typeof client.consumePacked !== 'function') {
      throw new PipelineError('KAFKA_CLIENT', 'node-rdkafka lacks consumePacked: run npm ci (its postinstall applies patches/node-rdkafka-packed.patch)');
    }
    return client;
  }

  async seek(partition: number, offset: number, topic = this.topic): Promise<void> {
    const i = this.inputs.indexOf(topic);
    if (this.inflight[i]) this.seeks[i]++;
    this.positions[i]?.delete(partition);
    await new Promise<void>((resolve, reject) => this.consumerOf(topic).seek({ topic, partition, offset: offset < 0 ? OFFSET_BEGINNING : offset }, 10_000,
      (err) => (err ? reject(err) : resolve())));
  }

  pause(partitions: number[], topic = this.topic): void {
    if (partitions.length) this.consumerOf(topic).pause(partitions.map((partition) => ({ topic, partition })));
  }

  resume(partitions: number[], topic = this.topic): void {
    if (partitions.length) this.consumerOf(topic).resume(partitions.map((partition) => ({ topic, partition })));
  }

  /** Kafka-side commit, for lag monitoring only (of partitions the runtime owns); Postgres holds the truth. */
  commitForMonitoring(offsets: { topic?: string; partition: number; offset: number }[]): void {
    for (const [i, topic] of this.inputs.entries()) {
      const mine = offsets.filter((o) => (o.topic ?? this.topic) === topic);
      if (!mine.length) continue;
      try {
        this.consumers[i].commit(mine.map((o) => ({ topic, partition: o.partition, offset: o.offset })));
      } catch { /* not assigned any more, or not connected: the next commit will carry it */ }
    }
  }

  async disconnect(): Promise<void> {
    await this.rebalancing;
    await Promise.all(this.inflight.map((p) => p?.catch(() => undefined)));
    for (const c of this.consumers) await new Promise<void>((resolve) => c.disconnect(() => resolve()));
  }

  private rebalance(err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]): void {
    if (err.code !== ASSIGN && err.code !== REVOKE) {
      // Not a rebalance but the group failing, such as the coordinator refusing this principal.
      this.refused ??= accessErrorOf(err, this.conn, { topic: this.inputs.join(', '), group: this.groupId });
      this.onError?.(err as unknown as Error);
      return;
    }
    const partitions = assignment.filter((a) => a.topic === this.topic).map((a) => a.partition);
    this.changing = true;
    this.epoch++;
    // Cooperative (partition.assignment.strategy=cooperative-sticky): the partitions are the ones added or taken
    // away, and the others go on being read meanwhile; eager (range, the default): the whole assignment each time.
    const cooperative = this.cooperative;
    const unassign = () => {
      for (const [i, c] of this.consumers.entries()) {
        try {
          if (cooperative) c.incrementalUnassign(partitions.map((partition) => ({ topic: this.inputs[i], partition })));
          else c.unassign();
        } catch (e) {
          this.onError?.(e as Error); // a consumer already closed has nothing left to give back
        }
      }
    };
    this.rebalancing = this.rebalancing.then(async () => {
      this.changing = true;
      try {
        if (err.code === ASSIGN) {
          const start = await this.listener.onAssign(partitions);
          // The other inputs first: once the first input's consumer is assigned, the task is under way.
          for (let i = this.inputs.length - 1; i >= 0; i--) {
            const topic = this.inputs[i];
            const assignment = partitions.map((partition) => {
              const offset = start.get(partition)?.[i] ?? -1;
              return { topic, partition, offset: offset < 0 ? OFFSET_BEGINNING : offset };
            });
            if (cooperative) this.consumers[i].incrementalAssign(assignment);
            else this.consumers[i].assign(assignment);
          }
          this.epoch++;
        } else {
          await this.listener.onRevoke(partitions);
          unassign();
          this.epoch++;
        }
      } catch (e) {
        // The listener retries until it succeeds or the process stops; this is the stopping case.
        this.onError?.(e as Error);
        if (err.code !== ASSIGN) unassign();
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

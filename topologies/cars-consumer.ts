import {
  clientConfig, errorMessage, JsonDeserializer, PipelineError, Progress, registryFromEnv, retry, sleep, topicName, defineTopology, valueSubject,
} from '../pipeline/index.ts';
import Kafka from 'node-rdkafka';
import { validateCar, type Car } from './cars-producer.ts';

/** One line per car, as consumer.py printed its Car objects. */
export function formatCar(car: Car, output: string): string {
  if (output === 'json') return JSON.stringify(car);
  return `Car(id=${car.id}, make=${car.make}, model=${car.model}, year=${car.year})`;
}

/**
 * The original consumer.py, done properly: a plain consumer group member (offsets in Kafka, as there is no
 * sink to keep them with), at-least-once to stdout: a batch is printed, then its offsets are committed
 * synchronously, so a clean stop (Ctrl-C, --max) commits exactly what was printed and a restart prints nothing
 * twice. Only a crash between printing and committing can print a car again.
 */
export const carsConsumer = defineTopology({
  name: 'cars-consumer',
  description: 'Consumes topic cars, validates every message against the car schema (from the registry when SCHEMA_REGISTRY_URL is set) and prints one line per car.',
  uses: { kafka: true, postgres: false },
  options: [
    { name: 'topic', type: 'string', default: 'cars', help: 'topic to produce to, or read from' },
    { name: 'group-id', type: 'string', default: 'cars-consumer', help: 'Kafka consumer group (its offsets are committed in Kafka)' },
    { name: 'max', type: 'int', min: 1, help: 'stop after printing this many cars (default: run until Ctrl-C)' },
    { name: 'output', type: 'string', choices: ['text', 'json'], default: 'text', help: 'line format: text (Car(id=..., ...)) or json' },
  ],
  topics: (v) => ({ reads: [v.topic], writes: [] }),
  validate(v) {
    topicName(v.topic);
  },
  describe(v) {
    return [
      `Topology cars-consumer (group ${v['group-id']})`,
      `  source  topic ${v.topic} (node-rdkafka, offsets committed in Kafka after each printed batch)`,
      `  stage   decode (Confluent wire format or plain JSON) -> validate (schema id from the registry, or schemas/car.schema.json)`,
      `  sink    stdout, one line per car${v.max ? `, stop after ${v.max}` : ''}; invalid messages reported on stderr`,
    ].join('\n');
  },
  async run(ctx, v) {
    const topic = v.topic;
    const max = v.max;
    const output = v.output;
    const deserializer = new JsonDeserializer<Car>(validateCar(), registryFromEnv(), valueSubject(topic));
    const consumer = new Kafka.KafkaConsumer(clientConfig(ctx.kafka, {
      'client.id': 'cars-consumer',
      'group.id': v['group-id'],
      'enable.auto.commit': false,
      'fetch.wait.max.ms': 100,
    }) as Kafka.ConsumerGlobalConfig, { 'auto.offset.reset': 'earliest' });
    consumer.on('event.error', (err) => ctx.log(`kafka: ${errorMessage(err)}`));
    const connect = () => new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (err) =>
      (err ? reject(new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka: ${err.message}`, { retriable: true, cause: err })) : resolve())));
    try {
      await retry('connecting to Kafka', connect, ctx.log, ctx.signal);
    } catch {
      return; // stopped while waiting
    }
    consumer.subscribe([topic]);
    ctx.setReady(true);
    const progress = new Progress('cars-consumer', 'car');
    progress.start();
    let printed = 0;
    try {
      while (!ctx.signal.aborted && (max === undefined || printed < max)) {
        let messages: Kafka.Message[];
        try {
          messages = await new Promise<Kafka.Message[]>((resolve, reject) => consumer.consume(500, (err, m) => (err ? reject(err) : resolve(m))));
        } catch (err) {
          ctx.log(`poll: ${errorMessage(err)}`);
          await sleep(500, ctx.signal);
          continue;
        }
        const next = new Map<number, number>();
        let taken = 0;
        const lines: string[] = [];
        for (const m of messages) {
          if (max !== undefined && printed >= max) break; // the rest stays uncommitted for the next run
          const decoded = await retry('fetching the schema', () => deserializer.decode(m.value ?? null), ctx.log, ctx.signal);
          if (decoded.ok) {
            lines.push(formatCar(decoded.value, output));
            printed++;
          } else {
            progress.invalid++;
            ctx.metrics.invalid.inc({ topology: 'cars-consumer', reason: decoded.reason });
            ctx.log(`invalid message at ${m.topic}[${m.partition}]@${m.offset} (${decoded.reason}): ${decoded.message}`);
          }
          next.set(m.partition, m.offset + 1);
          taken++;
        }
        if (lines.length) process.stdout.write(`${lines.join('\n')}\n`);
        progress.total += lines.length;
        if (next.size) {
          ctx.metrics.consumed.inc({ topology: 'cars-consumer', topic }, taken);
          // Synchronous, so that a stop right after this batch finds its offsets committed.
          consumer.commitSync([...next].map(([partition, offset]) => ({ topic, partition, offset })));
        }
      }
    } finally {
      progress.stop();
      await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
    }
    ctx.log(`printed ${printed} cars`);
  },
});

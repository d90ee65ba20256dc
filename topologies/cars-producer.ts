import {
  compileSchema, ensureTopics, KafkaProducer, loadSchema, Progress, registryFromEnv, retry, topicName, defineTopology, valueSerializer,
} from '../pipeline/index.ts';
import crypto from 'node:crypto';

/** A car as schemas/car.schema.json describes it, and as the original producer.py sent it. */
export interface Car {
  id: string;
  make: string;
  model: string;
  year: number;
}

const MODELS: Record<string, string[]> = {
  Toyota: ['Corolla', 'Camry', 'RAV4', 'Yaris', 'Prius'],
  Ford: ['Fiesta', 'Focus', 'Mustang', 'F-150', 'Explorer'],
  Volkswagen: ['Golf', 'Polo', 'Passat', 'Tiguan', 'ID.3'],
  Honda: ['Civic', 'Accord', 'CR-V', 'Jazz'],
  BMW: ['3 Series', '5 Series', 'X3', 'i4'],
  Tesla: ['Model 3', 'Model S', 'Model Y'],
  Renault: ['Clio', 'Mégane', 'Zoe'],
  Škoda: ['Octavia', 'Fabia', 'Superb'],
};
const MAKES = Object.keys(MODELS);

export const carSchema = () => loadSchema('car');
export const validateCar = () => compileSchema<Car>(carSchema());

export function randomCar(): Car {
  const make = MAKES[crypto.randomInt(MAKES.length)];
  const models = MODELS[make];
  return { id: crypto.randomUUID(), make, model: models[crypto.randomInt(models.length)], year: 1990 + crypto.randomInt(new Date().getUTCFullYear() - 1990 + 2) };
}

export const carsProducer = defineTopology({
  name: 'cars-producer',
  description: 'Produces --count random cars (id, make, model, year) as JSON to topic cars, then flushes; fails unless every one was acknowledged.',
  uses: { kafka: true, postgres: false },
  options: [
    { name: 'count', type: 'int', min: 1, default: 10, help: 'how many cars to produce (cars-producer) or records (orders-generator)' },
    { name: 'topic', type: 'string', default: 'cars', help: 'topic to produce to, or read from' },
    { name: 'partitions', type: 'int', min: 1, max: 1000, default: 3, help: 'partitions of the topic when it is created' },
  ],
  topics: (v) => ({ reads: [], writes: [v.topic] }),
  validate(v) {
    topicName(v.topic);
  },
  describe(v) {
    return [
      'Topology cars-producer',
      `  source  ${v.count} random cars (schemas/car.schema.json)`,
      `  sink    topic ${v.topic} (idempotent producer, key = car id; with SCHEMA_REGISTRY_URL: schema registered as ${v.topic}-value, Confluent wire format)`,
    ].join('\n');
  },
  async run(ctx, v) {
    const topic = v.topic;
    const count = v.count;
    const registry = registryFromEnv();
    await retry('creating topics', () => ensureTopics(ctx.kafka, [{ name: topic, partitions: v.partitions }]), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    const serializer = await retry('registering the car schema', () => valueSerializer(topic, carSchema(), registry), ctx.log, ctx.signal);
    if (serializer.schemaId !== undefined) ctx.log(`schema registered as ${topic}-value, id ${serializer.schemaId}`);
    const producer = new KafkaProducer(ctx.kafka, { 'client.id': 'cars-producer' });
    await retry('connecting to Kafka', () => producer.connect(), ctx.log, ctx.signal).catch(() => undefined);
    if (ctx.signal.aborted) return;
    ctx.setReady(true);
    const progress = new Progress('cars-producer', 'car');
    producer.onDelivery = () => { progress.total++; };
    progress.start();
    let sent = 0;
    try {
      for (; sent < count && !ctx.signal.aborted; sent++) {
        const car = randomCar();
        await producer.produce({ topic, key: car.id, value: serializer.encode(JSON.stringify(car)) });
      }
      await producer.flush(120_000);
    } finally {
      ctx.metrics.produced.labels({ topology: 'cars-producer', topic }).inc(producer.delivered);
      progress.stop();
      await producer.disconnect();
    }
    ctx.log(`produced ${producer.delivered} cars to ${topic}`);
    if (producer.delivered !== sent) throw new Error(`${sent - producer.delivered} of ${sent} cars were not acknowledged by Kafka`);
  },
});

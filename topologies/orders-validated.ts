import { defineTopology, type Order, StreamsBuilder, topicName, type TopologyPlan, validateOrder } from '../pipeline/index.ts';
import { consumerOptions, describePlan, dlqTopicOf, runWithFlags } from './run-plan.ts';

/**
 * Kafka to Kafka: the orders that match the schema, re-keyed by nothing (keys and values as they came), to a topic of
 * valid orders; the others to the dead-letter topic. With --processing-guarantee exactly-once (the default) every
 * flush is a Kafka transaction per task, so a read_committed consumer of the output sees each valid order once.
 */
export function ordersValidatedPlan(o: { topic: string; toTopic: string; applicationId?: string }): TopologyPlan {
  const b = new StreamsBuilder(o.applicationId ?? 'orders-validated');
  b.stream<Order>(o.topic, { schema: validateOrder(), schemaName: 'schemas/order.schema.json' })
    .toTopic(o.toTopic, (order, key) => ({ key: key as string | null, value: Buffer.from(JSON.stringify(order)) }));
  return b.build();
}

const plan = (v: { topic: string; 'to-topic': string | undefined; 'group-id': string }) =>
  ordersValidatedPlan({ topic: v.topic, toTopic: v['to-topic'] ?? `${v.topic}.valid`, applicationId: v['group-id'] });

export const ordersValidated = defineTopology({
  name: 'orders-validated',
  description: 'The orders that match the schema to a topic of valid orders, the others to the dead-letter topic: Kafka to Kafka, exactly once with Kafka transactions.',
  uses: { kafka: true, postgres: false },
  options: [
    ...consumerOptions({ group: 'orders-validated', batch: 5_000 }),
    { name: 'to-topic', type: 'string', help: 'topic of the valid orders (default: <topic>.valid)' },
  ],
  topics: (v) => ({ reads: [v.topic], writes: [v['to-topic'] ?? `${v.topic}.valid`, dlqTopicOf(v)] }),
  validate(v) {
    topicName(v.topic);
    topicName(v['to-topic'] ?? `${v.topic}.valid`, '--to-topic');
    topicName(dlqTopicOf(v), '--dlq-topic');
  },
  describe: (v) => describePlan(plan(v), { ...v, table: '' }),
  run: (ctx, v) => runWithFlags('orders-validated', plan(v), ctx, { ...v, table: '' }),
});

import {
  type Topology,
} from '../pipeline/index.ts';
import { carsConsumer } from './cars-consumer.ts';
import { carsProducer } from './cars-producer.ts';
import { kafkaToPostgres } from './kafka-to-postgres.ts';
import { ordersFile } from './orders-file.ts';
import { ordersGenerator } from './orders-generator.ts';
import { ordersIngest } from './orders-ingest.ts';
import { ordersEnriched } from './orders-enriched.ts';
import { ordersPaid } from './orders-paid.ts';
import { ordersValidated } from './orders-validated.ts';
import { productsGenerator } from './products-generator.ts';
import { ordersRevenue } from './orders-revenue.ts';

/** Every runnable topology, by name. */
export const topologies: Topology[] = [ordersGenerator, ordersIngest, ordersRevenue, carsProducer, carsConsumer, ordersFile, kafkaToPostgres, productsGenerator, ordersEnriched, ordersPaid, ordersValidated];

import type { Topology } from '../pipeline/topology.ts';
import { ordersGenerator } from './orders-generator.ts';
import { ordersIngest } from './orders-ingest.ts';

/** Every runnable topology, by name. */
export const topologies: Topology[] = [ordersGenerator, ordersIngest];

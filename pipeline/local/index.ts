import { clusterStatus, kafkaStatus, killClusterNode, localClusterBrokers, startCluster, startClusterNode, startKafka, stopCluster, stopKafka } from './kafka.ts';
import { localDatabaseUrl, localKafkaBrokers } from './paths.ts';
import { postgresStatus, startPostgres, stopPostgres } from './postgres.ts';

export { clusterStatus, kafkaStatus, killClusterNode, localClusterBrokers, startCluster, startClusterNode, startKafka, stopCluster, stopKafka, postgresStatus, startPostgres, stopPostgres, localDatabaseUrl, localKafkaBrokers };

export interface Endpoints {
  kafkaBrokers: string;
  databaseUrl: string;
}

/**
 * Resolves where Kafka and Postgres are: KAFKA_BROKERS / DATABASE_URL when set,
 * otherwise the embedded default, started here when it is not running yet.
 */
export async function ensureInfrastructure(needs: { postgres: boolean }, log: (line: string) => void): Promise<Endpoints> {
  const kafkaBrokers = process.env.KAFKA_BROKERS;
  const databaseUrl = process.env.DATABASE_URL;
  await Promise.all([
    kafkaBrokers ? undefined : startKafka(log),
    databaseUrl || !needs.postgres ? undefined : startPostgres(log),
  ]);
  return { kafkaBrokers: kafkaBrokers || localKafkaBrokers(), databaseUrl: databaseUrl || localDatabaseUrl() };
}

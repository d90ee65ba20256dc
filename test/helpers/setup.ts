import { ensureInfrastructure } from '../../pipeline/local/index.ts';

/**
 * Root hook: every test runs against real Kafka and real Postgres. KAFKA_BROKERS / DATABASE_URL are used when
 * set; otherwise the embedded default is started (and reused when it already runs). Child processes inherit
 * the endpoints through the environment.
 */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(300_000);
    const endpoints = await ensureInfrastructure({ postgres: true }, (line) => process.stderr.write(`setup: ${line}\n`));
    process.env.KAFKA_BROKERS = endpoints.kafkaBrokers;
    process.env.DATABASE_URL = endpoints.databaseUrl;
    process.env.METRICS_PORT ??= '0';
  },
};

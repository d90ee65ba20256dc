import { ensureInfrastructure } from '../../pipeline/local/index.ts';
import { startRegistry } from '../../pipeline/local/registry.ts';

const log = (line: string) => process.stderr.write(`setup: ${line}\n`);

async function infrastructure(): Promise<void> {
  const endpoints = await ensureInfrastructure({ postgres: true }, log);
  process.env.KAFKA_BROKERS = endpoints.kafkaBrokers;
  process.env.DATABASE_URL = endpoints.databaseUrl;
  process.env.METRICS_PORT ??= '0';
}

/**
 * Once, before any test file runs (in the main process): the embedded Kafka and PostgreSQL are started here, and
 * with --parallel the schema registry too, so that two workers never race to start one (run serially, a file that
 * needs the registry starts it on first use). KAFKA_BROKERS / DATABASE_URL / TEST_SCHEMA_REGISTRY_URL are used
 * instead when set.
 */
export async function mochaGlobalSetup(): Promise<void> {
  const registry = process.argv.includes('--parallel') && !process.env.TEST_SCHEMA_REGISTRY_URL;
  await Promise.all([infrastructure(), registry ? startRegistry(log) : undefined]);
}

/**
 * Root hook: every test runs against real Kafka and real Postgres, already running (mochaGlobalSetup), or the
 * embedded default started here. Child processes inherit the endpoints through the environment.
 */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(300_000);
    await infrastructure();
  },
};

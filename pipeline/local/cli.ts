/**
 * npm run local -- start [--registry]|stop|status|env
 * Manages the embedded default: a single-node Apache Kafka (KRaft) and an embedded PostgreSQL, both on loopback,
 * and with --registry a schema registry (Apicurio, Confluent API).
 */
import { errorMessage, EnvironmentError } from '../errors.ts';
import { kafkaLogFile } from './kafka.ts';
import { kafkaStatus, localDatabaseUrl, localKafkaBrokers, postgresStatus, startKafka, startPostgres, stopKafka, stopPostgres } from './index.ts';
import { postgresLogFile } from './postgres.ts';
import { registryLogFile, registryStatus, startRegistry, stopRegistry } from './registry.ts';

const usage = 'usage: npm run local -- start [--registry]|stop|status|env';
const log = (line: string) => process.stderr.write(`local: ${line}\n`);

async function main(command: string | undefined, flags: string[]): Promise<number> {
  const unknown = flags.filter((f) => !(command === 'start' && f === '--registry'));
  if (unknown.length) {
    process.stderr.write(`local: unknown flag ${unknown[0]}\n${usage}\n`);
    return 2;
  }
  switch (command) {
    case 'start': {
      const registry = flags.includes('--registry');
      await Promise.all([startKafka(log), startPostgres(log), registry ? startRegistry(log) : undefined]);
      log(`Kafka at ${localKafkaBrokers()}, PostgreSQL at ${localDatabaseUrl().replace(/:[^:@/]*@/, ':***@')}`
        + `${registry ? `, schema registry at ${(await registryStatus()).url}` : ''}`);
      return 0;
    }
    case 'stop':
      await Promise.all([stopKafka(), stopPostgres(), stopRegistry()]);
      log('stopped (data kept in .local/; the registry keeps its schemas in memory only)');
      return 0;
    case 'status': {
      const [k, p, r] = await Promise.all([kafkaStatus(), postgresStatus(), registryStatus()]);
      process.stdout.write(`kafka      ${k.running ? 'running' : 'stopped'}  127.0.0.1:${k.port}${k.pid ? `  pid ${k.pid}` : ''}  log ${kafkaLogFile}\n`);
      process.stdout.write(`postgres   ${p.running ? 'running' : 'stopped'}  127.0.0.1:${p.port}  log ${postgresLogFile}\n`);
      process.stdout.write(`registry   ${r.running ? 'running' : 'stopped'}  ${r.url}${r.pid ? `  pid ${r.pid}` : ''}  log ${registryLogFile}\n`);
      return 0;
    }
    case 'env': {
      process.stdout.write(`export KAFKA_BROKERS=${localKafkaBrokers()}\nexport DATABASE_URL=${localDatabaseUrl()}\n`);
      const r = await registryStatus();
      if (r.running) process.stdout.write(`export SCHEMA_REGISTRY_URL=${r.url}\n`);
      return 0;
    }
    default:
      process.stderr.write(`${usage}\n`);
      return 2;
  }
}

main(process.argv[2], process.argv.slice(3)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`local: ${errorMessage(err)}\n`);
    process.exit(err instanceof EnvironmentError ? 2 : 1);
  },
);

/**
 * npm run local -- start|stop|status|env
 * Manages the embedded default: a single-node Apache Kafka (KRaft) and an embedded PostgreSQL, both on loopback.
 */
import { errorMessage, EnvironmentError } from '../errors.ts';
import { kafkaLogFile } from './kafka.ts';
import { kafkaStatus, localDatabaseUrl, localKafkaBrokers, postgresStatus, startKafka, startPostgres, stopKafka, stopPostgres } from './index.ts';
import { postgresLogFile } from './postgres.ts';

const usage = 'usage: npm run local -- start|stop|status|env';
const log = (line: string) => process.stderr.write(`local: ${line}\n`);

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case 'start':
      await Promise.all([startKafka(log), startPostgres(log)]);
      log(`Kafka at ${localKafkaBrokers()}, PostgreSQL at ${localDatabaseUrl().replace(/:[^:@/]*@/, ':***@')}`);
      return 0;
    case 'stop':
      await Promise.all([stopKafka(), stopPostgres()]);
      log('stopped (data kept in .local/)');
      return 0;
    case 'status': {
      const [k, p] = await Promise.all([kafkaStatus(), postgresStatus()]);
      process.stdout.write(`kafka      ${k.running ? 'running' : 'stopped'}  127.0.0.1:${k.port}${k.pid ? `  pid ${k.pid}` : ''}  log ${kafkaLogFile}\n`);
      process.stdout.write(`postgres   ${p.running ? 'running' : 'stopped'}  127.0.0.1:${p.port}  log ${postgresLogFile}\n`);
      return 0;
    }
    case 'env':
      process.stdout.write(`export KAFKA_BROKERS=${localKafkaBrokers()}\nexport DATABASE_URL=${localDatabaseUrl()}\n`);
      return 0;
    default:
      process.stderr.write(`${usage}\n`);
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`local: ${errorMessage(err)}\n`);
    process.exit(err instanceof EnvironmentError ? 2 : 1);
  },
);

/**
 * npm run local -- start [--brokers 1|3] [--secure] [--registry]|stop|status|env [--brokers 1|3] [--secure [--user U]]
 * Manages the embedded default: Apache Kafka (KRaft; one node, or with --brokers 3 a cluster of three) and an
 * embedded PostgreSQL, both on loopback, and with --registry a schema registry (Apicurio, Confluent API). With
 * --secure, a broker and a PostgreSQL of their own that take only TLS and passwords, with ACLs (secure.ts).
 */
import { errorMessage, EnvironmentError } from '../errors.ts';
import { CLUSTER_SIZE, kafkaLogFile, secureKafkaStatus, stopSecureKafka } from './kafka.ts';
import {
  clusterStatus, kafkaStatus, localClusterBrokers, localDatabaseUrl, localKafkaBrokers, postgresStatus, startCluster, startKafka, startPostgres, stopCluster, stopKafka, stopPostgres,
} from './index.ts';
import { postgresLogFile, postgresLogOf } from './postgres.ts';
import { registryLogFile, registryStatus, startRegistry, stopRegistry } from './registry.ts';
import { SECURE_USERS, secureEnv, securePostgres, startSecure, type SecureUser } from './secure.ts';

const usage = `usage: npm run local -- start [--brokers 1|${CLUSTER_SIZE}] [--secure] [--registry]|stop|status|env [--brokers 1|${CLUSTER_SIZE}] [--secure [--user ingest|generator|admin]]`;
const log = (line: string) => process.stderr.write(`local: ${line}\n`);

/** The flags a command takes, and --brokers' value (1: the single node; 3: the cluster). */
function parseFlags(command: string | undefined, flags: string[]): { registry: boolean; secure: boolean; user: SecureUser; brokers?: number } | string {
  let registry = false;
  let secure = false;
  let user: SecureUser = 'ingest';
  let brokers: number | undefined;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    if (f === '--registry' && command === 'start') registry = true;
    else if (f === '--secure' && (command === 'start' || command === 'env')) secure = true;
    else if ((f === '--user' || f.startsWith('--user=')) && command === 'env') {
      const value = f.includes('=') ? f.slice(f.indexOf('=') + 1) : flags[++i];
      if (!SECURE_USERS.includes(value as SecureUser)) return `--user: ${value ?? '(missing)'} is not one of ${SECURE_USERS.join(', ')}`;
      user = value as SecureUser;
    }
    else if ((f === '--brokers' || f.startsWith('--brokers=')) && (command === 'start' || command === 'env')) {
      const value = f.includes('=') ? f.slice(f.indexOf('=') + 1) : flags[++i];
      if (value !== '1' && value !== String(CLUSTER_SIZE)) return `--brokers: ${value ?? '(missing)'} is not 1 or ${CLUSTER_SIZE}`;
      brokers = Number(value);
    } else return `unknown flag ${f}`;
  }
  return { registry, secure, user, brokers };
}

async function main(command: string | undefined, flags: string[]): Promise<number> {
  const parsed = parseFlags(command, flags);
  if (typeof parsed === 'string') {
    process.stderr.write(`local: ${parsed}\n${usage}\n`);
    return 2;
  }
  switch (command) {
    case 'start': {
      const cluster = parsed.brokers === CLUSTER_SIZE;
      if (parsed.secure) {
        await Promise.all([startSecure(parsed.brokers ?? 1, log), parsed.registry ? startRegistry(log) : undefined]);
        const env = secureEnv(parsed.brokers ?? 1);
        log(`secured Kafka at ${env.KAFKA_BROKERS} (SASL_SSL, SCRAM-SHA-512, ACLs), PostgreSQL at ${env.DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}; `
          + `\`eval "$(npm run -s local -- env --secure${cluster ? ` --brokers ${CLUSTER_SIZE}` : ''})"\` sets them for the ingest's principal`);
        return 0;
      }
      await Promise.all([cluster ? startCluster(log) : startKafka(log), startPostgres(log), parsed.registry ? startRegistry(log) : undefined]);
      log(`Kafka at ${cluster ? `${localClusterBrokers()} (${CLUSTER_SIZE} brokers, replication factor ${CLUSTER_SIZE}, min.insync.replicas 2)` : localKafkaBrokers()}, `
        + `PostgreSQL at ${localDatabaseUrl().replace(/:[^:@/]*@/, ':***@')}${parsed.registry ? `, schema registry at ${(await registryStatus()).url}` : ''}`);
      return 0;
    }
    case 'stop':
      await Promise.all([stopKafka(), stopCluster(), stopSecureKafka(), stopPostgres(), stopPostgres('fast', securePostgres), stopRegistry()]);
      log('stopped (data kept in .local/; the registry keeps its schemas in memory only)');
      return 0;
    case 'status': {
      const [k, nodes, p, r] = await Promise.all([kafkaStatus(), clusterStatus(), postgresStatus(), registryStatus()]);
      process.stdout.write(`kafka      ${k.running ? 'running' : 'stopped'}  127.0.0.1:${k.port}${k.pid ? `  pid ${k.pid}` : ''}  log ${kafkaLogFile}\n`);
      for (const n of nodes) {
        if (!n.running && !nodes.some((x) => x.running) && n.id > 1) continue; // a cluster never started: one line says so
        process.stdout.write(`broker ${n.id}/${CLUSTER_SIZE} ${n.running ? 'running' : 'stopped'}  127.0.0.1:${n.port}${n.pid ? `  pid ${n.pid}` : ''}  log ${n.logFile}\n`);
      }
      process.stdout.write(`postgres   ${p.running ? 'running' : 'stopped'}  127.0.0.1:${p.port}  log ${postgresLogFile}\n`);
      for (const [brokers, label] of [[1, 'secure kafka'], [CLUSTER_SIZE, 'secure broker']] as const) {
        for (const n of await secureKafkaStatus(brokers)) {
          if (!n.running) continue; // the secured ones are shown when they run
          process.stdout.write(`${brokers === 1 ? 'secure kafka' : `${label} ${n.id}/${CLUSTER_SIZE}`} running  127.0.0.1:${n.port} (SASL_SSL)${n.pid ? `  pid ${n.pid}` : ''}  log ${n.logFile}\n`);
        }
      }
      const sp = await postgresStatus(securePostgres);
      if (sp.running) process.stdout.write(`secure postgres running  127.0.0.1:${sp.port} (TLS)  log ${postgresLogOf(securePostgres)}\n`);
      process.stdout.write(`registry   ${r.running ? 'running' : 'stopped'}  ${r.url}${r.pid ? `  pid ${r.pid}` : ''}  log ${registryLogFile}\n`);
      return 0;
    }
    case 'env': {
      if (parsed.secure) {
        for (const [k, v] of Object.entries(secureEnv(parsed.brokers ?? 1, parsed.user))) process.stdout.write(`export ${k}='${v}'\n`);
        return 0;
      }
      // The cluster's brokers when asked for, or when it runs and the single node does not.
      const [k, nodes] = await Promise.all([kafkaStatus(), clusterStatus()]);
      const cluster = parsed.brokers === CLUSTER_SIZE || (parsed.brokers === undefined && !k.running && nodes.some((n) => n.running));
      process.stdout.write(`export KAFKA_BROKERS=${cluster ? localClusterBrokers() : localKafkaBrokers()}\nexport DATABASE_URL=${localDatabaseUrl()}\n`);
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

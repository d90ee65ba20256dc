import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EnvironmentError } from '../errors.ts';
import { KAFKA_VERSION, LOCAL_KAFKA_CONTROLLER_PORT, LOCAL_KAFKA_PORT, localRoot } from './paths.ts';
import { commandExists, portOpen, readPid, spawnDetached, stopPid, waitFor } from './process.ts';

/**
 * The embedded Kafka: the official broker artifacts (org.apache.kafka:kafka_2.13) resolved from Maven Central,
 * run as a single KRaft node (broker and controller in one JVM) on loopback, as the distribution's
 * kafka-storage.sh and kafka-server-start.sh would run them.
 */
const dir = path.join(localRoot, 'kafka');
export const kafkaLibs = path.join(dir, 'libs', KAFKA_VERSION);
export const kafkaDataDir = path.join(dir, 'data');
const pidFile = path.join(dir, 'broker.pid');
export const kafkaLogFile = path.join(dir, 'broker.log');

const pom = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pipeline</groupId><artifactId>embedded-kafka</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
`;

function serverProperties(): string {
  return `# written by npm run local; single-node KRaft for development and tests
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${LOCAL_KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${LOCAL_KAFKA_PORT},CONTROLLER://127.0.0.1:${LOCAL_KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${LOCAL_KAFKA_PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=${kafkaDataDir}
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=24
log.segment.bytes=268435456
`;
}

const log4j = `rootLogger.level=WARN
rootLogger.appenderRef.out.ref=OUT
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka.server.KafkaServer
logger.kafka.level=INFO
`;

function checkTools(): void {
  if (!commandExists('java')) {
    throw new EnvironmentError('Java 17+ is needed for the embedded Kafka broker: install it (apt-get install openjdk-17-jre-headless) or set KAFKA_BROKERS to a running cluster');
  }
  if (!fs.existsSync(path.join(kafkaLibs, '.complete')) && !commandExists('mvn')) {
    throw new EnvironmentError('Maven is needed once to fetch the Kafka broker from Maven Central: install it (apt-get install maven) or set KAFKA_BROKERS to a running cluster');
  }
}

/** Resolves the broker's jars with Maven into the cache folder, once. */
function fetchBroker(log: (line: string) => void): void {
  if (fs.existsSync(path.join(kafkaLibs, '.complete'))) return;
  log(`fetching Apache Kafka ${KAFKA_VERSION} from Maven Central into ${kafkaLibs} (once)`);
  fs.mkdirSync(kafkaLibs, { recursive: true });
  fs.writeFileSync(path.join(dir, 'pom.xml'), pom);
  const res = spawnSync('mvn', ['-q', '-B', '-f', path.join(dir, 'pom.xml'), 'dependency:copy-dependencies',
    `-DoutputDirectory=${kafkaLibs}`, '-DincludeScope=runtime'], { encoding: 'utf8' });
  if (res.status !== 0) {
    throw new EnvironmentError(`Maven could not fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION}: ${(res.stdout + res.stderr).trim().split('\n').slice(-3).join(' ')}`);
  }
  fs.writeFileSync(path.join(kafkaLibs, '.complete'), new Date().toISOString());
}

function java(args: string[]): string[] {
  return [`-Dlog4j2.configurationFile=${path.join(dir, 'log4j2.properties')}`, '-cp', `${kafkaLibs}/*`, ...args];
}

export async function kafkaStatus(): Promise<{ running: boolean; pid?: number; port: number }> {
  const pid = readPid(pidFile);
  return { running: pid !== undefined && (await portOpen(LOCAL_KAFKA_PORT)), pid, port: LOCAL_KAFKA_PORT };
}

export async function startKafka(log: (line: string) => void): Promise<void> {
  if ((await kafkaStatus()).running) return;
  if (readPid(pidFile) !== undefined) {
    await waitFor('Kafka', () => portOpen(LOCAL_KAFKA_PORT), 90_000, kafkaLogFile);
    return;
  }
  if (await portOpen(LOCAL_KAFKA_PORT)) {
    throw new EnvironmentError(`port ${LOCAL_KAFKA_PORT} is taken by a process that is not the embedded Kafka: stop it, or set LOCAL_KAFKA_PORT, or set KAFKA_BROKERS to use it`);
  }
  checkTools();
  fetchBroker(log);
  fs.mkdirSync(dir, { recursive: true });
  const props = path.join(dir, 'server.properties');
  fs.writeFileSync(props, serverProperties());
  fs.writeFileSync(path.join(dir, 'log4j2.properties'), log4j);
  if (!fs.existsSync(path.join(kafkaDataDir, 'meta.properties'))) {
    // KRaft storage is formatted once with a fresh cluster id, like `kafka-storage.sh format --standalone`.
    // base64url may begin with '-': given as `--cluster-id=<id>`, such an id is not taken for a flag (a CI run failed so).
    const clusterId = crypto.randomBytes(16).toString('base64url').slice(0, 22);
    const res = spawnSync('java', java(['kafka.tools.StorageTool', 'format', '--standalone', `--cluster-id=${clusterId}`, '-c', props]), { encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`formatting Kafka storage failed: ${res.stdout}${res.stderr}`);
  }
  log(`starting Kafka ${KAFKA_VERSION} (KRaft, single node) on 127.0.0.1:${LOCAL_KAFKA_PORT}`);
  const pid = spawnDetached('java', ['-Xms256m', '-Xmx768m', '-XX:+UseG1GC', ...java(['kafka.Kafka', props])], kafkaLogFile);
  fs.writeFileSync(pidFile, `${pid}\n`);
  await waitFor('Kafka', () => portOpen(LOCAL_KAFKA_PORT), 90_000, kafkaLogFile);
}

export async function stopKafka(): Promise<void> {
  const pid = readPid(pidFile);
  if (pid !== undefined) await stopPid(pid, 60_000);
  fs.rmSync(pidFile, { force: true });
}

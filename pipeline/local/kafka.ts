import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EnvironmentError } from '../errors.ts';
import { KAFKA_VERSION, LOCAL_KAFKA_CLUSTER_PORT, LOCAL_KAFKA_CONTROLLER_PORT, LOCAL_KAFKA_PORT, LOCAL_KAFKA_SECURE_CLUSTER_PORT, LOCAL_KAFKA_SECURE_PORT, localRoot } from './paths.ts';
import { commandExists, isAlive, portOpen, readPid, spawnDetached, stopPid, waitFor } from './process.ts';

/**
 * The embedded Kafka: the official broker artifacts (org.apache.kafka:kafka_2.13) resolved from Maven Central,
 * run on loopback as the distribution's kafka-storage.sh and kafka-server-start.sh would run them: by default a
 * single KRaft node (broker and controller in one JVM), and with `start --brokers 3` a cluster of three (below).
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
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
`;

/** One KRaft node of the embedded Kafka: where it lives and listens. */
export interface KafkaNode {
  id: number;
  dir: string;
  port: number;
  controllerPort: number;
  dataDir: string;
  pidFile: string;
  logFile: string;
}

/**
 * What a secured node (npm run local -- start --secure) needs: its listener for clients and brokers is SASL_SSL
 * with SCRAM-SHA-512; the controller listener is TLS with client certificates, so only a holder of the broker's key
 * reaches the quorum; StandardAuthorizer decides the rest, and denies what no ACL allows.
 */
export interface BrokerSecurity {
  /** PEM: the broker's private key (PKCS#8) and its certificate; and the CA that signed it. */
  keystore: string;
  truststore: string;
  /** The certificate's subject, which the controller listener sees as the broker's principal. */
  brokerPrincipal: string;
  admin: { name: string; password: string };
  /** SCRAM-SHA-512 users written into the metadata when the storage is formatted (admin included). */
  users: { name: string; password: string }[];
}

const single: KafkaNode = { id: 1, dir, port: LOCAL_KAFKA_PORT, controllerPort: LOCAL_KAFKA_CONTROLLER_PORT, dataDir: kafkaDataDir, pidFile, logFile: kafkaLogFile };
const secureSingle: KafkaNode = {
  id: 1, dir: path.join(localRoot, 'kafka-secure'), port: LOCAL_KAFKA_SECURE_PORT, controllerPort: LOCAL_KAFKA_SECURE_PORT + 1,
  dataDir: path.join(localRoot, 'kafka-secure', 'data'), pidFile: path.join(localRoot, 'kafka-secure', 'broker.pid'), logFile: path.join(localRoot, 'kafka-secure', 'broker.log'),
};

/**
 * The three-node cluster (npm run local -- start --brokers 3): three combined nodes, each broker and controller in
 * one JVM, a controller quorum of three. Combined rather than one controller and three brokers: three JVMs instead
 * of four on a two-core machine, and a leader kill then also kills a quorum voter, so the chaos run proves that the
 * quorum, not only the partition leadership, survives losing a node. Its ports (LOCAL_KAFKA_CLUSTER_PORT, 19192 by
 * default, every other one a broker's) and its data are its own, so it runs beside the single node.
 */
export const CLUSTER_SIZE = 3;
const clusterDirOf = (secure: boolean) => path.join(localRoot, secure ? 'kafka-cluster-secure' : 'kafka-cluster');
/** The cluster's nodes; the secured cluster (start --secure --brokers 3) on LOCAL_KAFKA_SECURE_CLUSTER_PORT and its own data. */
export function clusterNodes(secure = false): KafkaNode[] {
  const base = secure ? LOCAL_KAFKA_SECURE_CLUSTER_PORT : LOCAL_KAFKA_CLUSTER_PORT;
  return Array.from({ length: CLUSTER_SIZE }, (_, i) => {
    const nodeDir = path.join(clusterDirOf(secure), `node-${i + 1}`);
    return {
      id: i + 1, dir: nodeDir, port: base + 2 * i, controllerPort: base + 2 * i + 1,
      dataDir: path.join(nodeDir, 'data'), pidFile: path.join(nodeDir, 'broker.pid'), logFile: path.join(nodeDir, 'broker.log'),
    };
  });
}

/** The nodes of one of the four embedded Kafkas: one node or three, plain or secured. */
export const kafkaNodes = (brokers: number, secure: boolean): KafkaNode[] => (brokers === CLUSTER_SIZE ? clusterNodes(secure) : [secure ? secureSingle : single]);
export const brokersOf = (nodes: KafkaNode[]) => nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
export const localClusterBrokers = () => brokersOf(clusterNodes());

function listenerProperties(node: KafkaNode, security: BrokerSecurity | undefined): string {
  if (!security) {
    return `listeners=PLAINTEXT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}
advertised.listeners=PLAINTEXT://127.0.0.1:${node.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
`;
  }
  const { admin } = security;
  return `# clients and brokers: TLS and SCRAM-SHA-512; the quorum: TLS with client certificates (only the broker's key gets in)
listeners=SASL_SSL://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}
advertised.listeners=SASL_SSL://127.0.0.1:${node.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${admin.name}" password="${admin.password}";
ssl.keystore.type=PEM
ssl.keystore.location=${security.keystore}
ssl.truststore.type=PEM
ssl.truststore.location=${security.truststore}
listener.name.controller.ssl.client.auth=required
# only what an ACL allows (StandardAuthorizer, KRaft's own); the brokers and the admin may do everything
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${admin.name};User:${security.brokerPrincipal}
`;
}

function serverProperties(node: KafkaNode, cluster: boolean, security?: BrokerSecurity): string {
  const replicas = cluster ? CLUSTER_SIZE : 1;
  const minIsr = cluster ? 2 : 1;
  const quorum = cluster
    ? `controller.quorum.voters=${clusterNodes(!!security).map((n) => `${n.id}@127.0.0.1:${n.controllerPort}`).join(',')}`
    : `controller.quorum.bootstrap.servers=127.0.0.1:${node.controllerPort}`;
  return `# written by npm run local; ${cluster ? `node ${node.id} of a ${CLUSTER_SIZE}-node KRaft cluster (combined broker and controller)` : 'single-node KRaft for development and tests'}${security ? ', secured' : ''}
process.roles=broker,controller
node.id=${node.id}
${quorum}
${listenerProperties(node, security)}log.dirs=${node.dataDir}
num.partitions=6
default.replication.factor=${replicas}
min.insync.replicas=${minIsr}
unclean.leader.election.enable=false
offsets.topic.replication.factor=${replicas}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=${replicas}
transaction.state.log.min.isr=${minIsr}
share.coordinator.state.topic.replication.factor=${replicas}
share.coordinator.state.topic.min.isr=${minIsr}
group.initial.rebalance.delay.ms=0
${cluster ? `# a killed node is fenced, and its partitions led elsewhere, after 4 s rather than 9 (loopback: no slow links to allow for)
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
` : ''}auto.create.topics.enable=false
log.retention.hours=24
log.segment.bytes=${cluster ? 67108864 : 268435456}
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

/** The cache is complete for this pom (a cache from before kafka-tools was added is fetched again). */
const pomHash = crypto.createHash('sha256').update(pom).digest('hex').slice(0, 16);
const fetched = () => fs.existsSync(path.join(kafkaLibs, '.complete')) && fs.readFileSync(path.join(kafkaLibs, '.complete'), 'utf8').trim() === pomHash;

function checkTools(): void {
  if (!commandExists('java')) {
    throw new EnvironmentError('Java 17+ is needed for the embedded Kafka broker: install it (apt-get install openjdk-17-jre-headless) or set KAFKA_BROKERS to a running cluster');
  }
  if (!fetched() && !commandExists('mvn')) {
    throw new EnvironmentError('Maven is needed once to fetch the Kafka broker from Maven Central: install it (apt-get install maven) or set KAFKA_BROKERS to a running cluster');
  }
}

/** Resolves the broker's jars with Maven into the cache folder, once. */
function fetchBroker(log: (line: string) => void): void {
  if (fetched()) return;
  log(`fetching Apache Kafka ${KAFKA_VERSION} from Maven Central into ${kafkaLibs} (once)`);
  fs.mkdirSync(kafkaLibs, { recursive: true });
  fs.writeFileSync(path.join(dir, 'pom.xml'), pom);
  const res = spawnSync('mvn', ['-q', '-B', '-f', path.join(dir, 'pom.xml'), 'dependency:copy-dependencies',
    `-DoutputDirectory=${kafkaLibs}`, '-DincludeScope=runtime'], { encoding: 'utf8' });
  if (res.status !== 0) {
    throw new EnvironmentError(`Maven could not fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION}: ${(res.stdout + res.stderr).trim().split('\n').slice(-3).join(' ')}`);
  }
  fs.writeFileSync(path.join(kafkaLibs, '.complete'), `${pomHash}\n`);
}

function java(args: string[]): string[] {
  return [`-Dlog4j2.configurationFile=${path.join(dir, 'log4j2.properties')}`, '-cp', `${kafkaLibs}/*`, ...args];
}

async function nodeStatus(node: KafkaNode): Promise<{ id: number; running: boolean; pid?: number; port: number; logFile: string }> {
  const pid = readPid(node.pidFile);
  return { id: node.id, running: pid !== undefined && (await portOpen(node.port)), pid, port: node.port, logFile: node.logFile };
}

export function kafkaStatus(): Promise<{ running: boolean; pid?: number; port: number }> {
  return nodeStatus(single);
}

export function clusterStatus(): Promise<{ id: number; running: boolean; pid?: number; port: number; logFile: string }[]> {
  return Promise.all(clusterNodes().map(nodeStatus));
}

/** Formats a node's storage once: one cluster id for every node of a cluster. */
function formatNode(node: KafkaNode, props: string, cluster: boolean, security?: BrokerSecurity): void {
  if (fs.existsSync(path.join(node.dataDir, 'meta.properties'))) return;
  // base64url may begin with '-': given as `--cluster-id=<id>`, such an id is not taken for a flag (a CI run failed so).
  let clusterId = crypto.randomBytes(16).toString('base64url').slice(0, 22);
  if (cluster) {
    const idFile = path.join(clusterDirOf(!!security), 'cluster-id');
    if (fs.existsSync(idFile)) clusterId = fs.readFileSync(idFile, 'utf8').trim();
    else fs.writeFileSync(idFile, `${clusterId}\n`);
  }
  // Like `kafka-storage.sh format`: standalone for the single node, the static voters of server.properties for a cluster.
  // A secured cluster's SCRAM users go into its first metadata, so the brokers can authenticate one another from the start.
  const scram = (security?.users ?? []).flatMap((u) => ['--add-scram', `SCRAM-SHA-512=[name=${u.name},password=${u.password}]`]);
  const res = spawnSync('java', java(['kafka.tools.StorageTool', 'format', ...(cluster ? [] : ['--standalone']), `--cluster-id=${clusterId}`, ...scram, '-c', props]), { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`formatting Kafka storage of node ${node.id} failed: ${(res.stdout + res.stderr).replace(/password=[^\]\s]*/g, 'password=***')}`);
}

/** Starts one node (when not running) and waits for its broker port. */
async function startNode(node: KafkaNode, cluster: boolean, log: (line: string) => void, security?: BrokerSecurity): Promise<void> {
  if ((await nodeStatus(node)).running) return;
  if (readPid(node.pidFile) !== undefined) {
    await waitFor(`Kafka node ${node.id}`, () => portOpen(node.port), 90_000, node.logFile);
    return;
  }
  if (await portOpen(node.port)) {
    const variable = `LOCAL_KAFKA${security ? '_SECURE' : ''}${cluster ? '_CLUSTER' : ''}_PORT`;
    throw new EnvironmentError(`port ${node.port} is taken by a process that is not the embedded Kafka: stop it, or set ${variable}, or set KAFKA_BROKERS to use it`);
  }
  checkTools();
  fetchBroker(log);
  fs.mkdirSync(node.dir, { recursive: true });
  fs.mkdirSync(dir, { recursive: true });
  const props = path.join(node.dir, 'server.properties');
  fs.writeFileSync(props, serverProperties(node, cluster, security), { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'log4j2.properties'), log4j);
  formatNode(node, props, cluster, security);
  const how = security ? ', TLS and SCRAM-SHA-512' : '';
  log(cluster
    ? `starting Kafka ${KAFKA_VERSION} node ${node.id} of ${CLUSTER_SIZE} (KRaft, broker and controller${how}) on 127.0.0.1:${node.port}`
    : `starting Kafka ${KAFKA_VERSION} (KRaft, single node${how}) on 127.0.0.1:${node.port}`);
  const heap = cluster ? ['-Xms192m', '-Xmx512m'] : ['-Xms256m', '-Xmx768m'];
  const pid = spawnDetached('java', [...heap, '-XX:+UseG1GC', ...java(['kafka.Kafka', props])], node.logFile);
  fs.writeFileSync(node.pidFile, `${pid}\n`);
  await waitFor(`Kafka node ${node.id}`, () => portOpen(node.port), 90_000, node.logFile);
}

export function startKafka(log: (line: string) => void): Promise<void> {
  return startNode(single, false, log);
}

export async function stopKafka(): Promise<void> {
  const pid = readPid(pidFile);
  if (pid !== undefined) await stopPid(pid, 60_000);
  fs.rmSync(pidFile, { force: true });
}

/** Starts every node of the three-node cluster that is not running, at once (a quorum needs two of them up). */
export async function startCluster(log: (line: string) => void): Promise<void> {
  checkTools();
  fetchBroker(log);
  await Promise.all(clusterNodes().map((n) => startNode(n, true, log)));
}

export async function startClusterNode(id: number, log: (line: string) => void): Promise<void> {
  await startNode(clusterNodes()[id - 1], true, log);
}

/** Starts a secured Kafka (one node or the cluster), with its users, when it is not running. */
export async function startSecureKafka(brokers: number, security: BrokerSecurity, log: (line: string) => void): Promise<void> {
  checkTools();
  fetchBroker(log);
  await Promise.all(kafkaNodes(brokers, true).map((n) => startNode(n, brokers === CLUSTER_SIZE, log, security)));
}

export function secureKafkaStatus(brokers: number): Promise<{ id: number; running: boolean; pid?: number; port: number; logFile: string }[]> {
  return Promise.all(kafkaNodes(brokers, true).map(nodeStatus));
}

/** Stops every node of the secured Kafkas that runs. */
export async function stopSecureKafka(): Promise<void> {
  await stopNodes([secureSingle, ...clusterNodes(true)]);
}

/** Runs one of the broker's Java tools (AclCommand, ConfigCommand, …) and returns its output, or throws with it. */
export function kafkaTool(mainClass: string, args: string[], mask: string[] = []): string {
  const res = spawnSync('java', ['-Xmx256m', ...java([mainClass, ...args])], { encoding: 'utf8' });
  let out = `${res.stdout}${res.stderr}`;
  for (const secret of mask) out = out.split(secret).join('***');
  if (res.status !== 0) throw new Error(`${mainClass.split('.').pop()} failed: ${out.trim().split('\n').slice(-3).join(' ')}`);
  return out;
}

async function stopNodes(nodes: KafkaNode[]): Promise<void> {
  await Promise.all(nodes.map(async (n) => {
    const pid = readPid(n.pidFile);
    if (pid !== undefined) await stopPid(pid, 60_000);
    fs.rmSync(n.pidFile, { force: true });
  }));
}

export async function stopCluster(): Promise<void> {
  await stopNodes(clusterNodes());
}

/** SIGKILLs a node of the cluster, as a crash would (the chaos run's leader kill). */
export async function killClusterNode(id: number): Promise<void> {
  const node = clusterNodes()[id - 1];
  const pid = readPid(node.pidFile);
  if (pid === undefined) return;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  fs.rmSync(node.pidFile, { force: true });
}

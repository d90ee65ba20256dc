import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureTopics } from '../kafka/admin.ts';
import { kafkaConnection } from '../kafka/client-config.ts';
import { database } from '../postgres/db.ts';
import { EnvironmentError } from '../errors.ts';
import { brokersOf, kafkaNodes, kafkaTool, startSecureKafka, type BrokerSecurity } from './kafka.ts';
import { LOCAL_POSTGRES_PASSWORD, LOCAL_POSTGRES_SECURE_PORT, localRoot } from './paths.ts';
import { commandExists } from './process.ts';
import { startPostgres, type PostgresInstance } from './postgres.ts';

/**
 * The secured embedded default (npm run local -- start --secure): a broker that takes only TLS and SCRAM-SHA-512
 * and lets each principal do only what an ACL allows, and a PostgreSQL that takes only TLS and gives the pipeline
 * a password role that owns its own schema and nothing else. Certificates, keys and passwords are made here on the
 * first start, into .local/secure/ (mode 0600), and reused after.
 */
export const secureDir = path.join(localRoot, 'secure');
const file = (name: string) => path.join(secureDir, name);
export const caFile = file('ca.pem');

/** The principals: the admin (a super user), the ingest and the generator; each only what its topology needs. */
export interface Credentials {
  admin: string;
  ingest: string;
  generator: string;
  /** The Postgres role `pipeline`. */
  pipeline: string;
}

/** What the ingest and the generator of `start --secure` may do, by name (the defaults of orders-ingest). */
export const SECURE_TOPIC = 'orders';
export const SECURE_GROUP = 'orders-ingest';
export const SECURE_DATABASE = 'pipeline';
export const SECURE_ROLE = 'pipeline';
const BROKER_SUBJECT = 'CN=kafka-broker';

function openssl(args: string[]): void {
  const res = spawnSync('openssl', args, { encoding: 'utf8', cwd: secureDir });
  if (res.status !== 0) throw new Error(`openssl ${args[0]} failed: ${(res.stdout + res.stderr).trim()}`);
}

/** A CA, and a server certificate it signs for 127.0.0.1 and localhost (the broker's and Postgres'), once. */
function ensureCertificates(log: (line: string) => void): void {
  if (fs.existsSync(file('broker-keystore.pem'))) return;
  if (!commandExists('openssl')) throw new EnvironmentError('openssl is needed to make the certificates of start --secure: install it (apt-get install openssl)');
  log(`making a CA and a server certificate for 127.0.0.1 in ${secureDir}`);
  fs.mkdirSync(secureDir, { recursive: true, mode: 0o700 });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3650', '-subj', '/CN=orders-pipeline local CA']);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/${BROKER_SUBJECT}`]);
  fs.writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '3650', '-extfile', 'server.ext']);
  // Kafka's PEM keystore: the PKCS#8 key, then the certificate chain.
  fs.writeFileSync(file('broker-keystore.pem'), fs.readFileSync(file('server.key'), 'utf8') + fs.readFileSync(file('server.pem'), 'utf8'), { mode: 0o600 });
  for (const f of ['ca.key', 'server.key', 'server.csr', 'server.ext']) fs.chmodSync(file(f), 0o600);
}

/** The passwords, made once (letters and digits: they go into JAAS and URLs unquoted). */
export function credentials(): Credentials {
  const f = file('credentials.json');
  if (fs.existsSync(f)) return JSON.parse(fs.readFileSync(f, 'utf8')) as Credentials;
  fs.mkdirSync(secureDir, { recursive: true, mode: 0o700 });
  const make = () => crypto.randomBytes(18).toString('base64url').replace(/[-_]/g, 'x');
  const c: Credentials = { admin: make(), ingest: make(), generator: make(), pipeline: make() };
  fs.writeFileSync(f, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  return c;
}

function brokerSecurity(c: Credentials): BrokerSecurity {
  return {
    keystore: file('broker-keystore.pem'), truststore: caFile, brokerPrincipal: BROKER_SUBJECT,
    admin: { name: 'admin', password: c.admin },
    users: [{ name: 'admin', password: c.admin }, { name: 'ingest', password: c.ingest }, { name: 'generator', password: c.generator }],
  };
}

/** librdkafka properties for a principal of the secured broker, as KAFKA_CONFIG takes them. */
export function secureKafkaConfig(user: string, password: string): string {
  return `security.protocol=SASL_SSL;sasl.mechanisms=SCRAM-SHA-512;sasl.username=${user};sasl.password=${password};ssl.ca.location=${caFile}`;
}

/** The Java client properties of the admin, for the broker's own tools. */
function adminProperties(c: Credentials): string {
  const f = file('admin.properties');
  fs.writeFileSync(f, `security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${c.admin}";
ssl.truststore.type=PEM
ssl.truststore.location=${caFile}
`, { mode: 0o600 });
  return f;
}

/** Adds SCRAM-SHA-512 credentials for a principal on the secured broker (as the admin), as kafka-configs.sh would. */
export function addKafkaUser(brokers: string, name: string, password: string): void {
  const c = credentials();
  kafkaTool('kafka.admin.ConfigCommand', ['--bootstrap-server', brokers, '--command-config', adminProperties(c), '--alter',
    '--add-config', `SCRAM-SHA-512=[iterations=4096,password=${password}]`, '--entity-type', 'users', '--entity-name', name], [password, c.admin]);
}

/** The ACLs, as kafka-acls.sh would add them: the ingest reads its topic and group and writes its dead-letter topic. */
function grantAcls(brokers: number, c: Credentials, log: (line: string) => void): void {
  const nodes = kafkaNodes(brokers, true);
  const marker = path.join(nodes[0].dataDir, 'pipeline-acls'); // the ACLs live in the metadata: made again when it is
  if (fs.existsSync(marker)) return;
  const bootstrap = brokersOf(nodes);
  const props = adminProperties(c);
  const acl = (args: string[]) => kafkaTool('org.apache.kafka.tools.AclCommand', ['--bootstrap-server', bootstrap, '--command-config', props, '--add', ...args], [c.admin]);
  log(`granting ACLs: ingest reads ${SECURE_TOPIC} and group ${SECURE_GROUP} and writes ${SECURE_TOPIC}.dlq; generator writes ${SECURE_TOPIC}`);
  acl(['--allow-principal', 'User:ingest', '--operation', 'Read', '--operation', 'Describe', '--topic', SECURE_TOPIC, '--group', SECURE_GROUP]);
  acl(['--allow-principal', 'User:ingest', '--operation', 'Write', '--operation', 'Describe', '--topic', `${SECURE_TOPIC}.dlq`]);
  acl(['--allow-principal', 'User:generator', '--operation', 'Write', '--operation', 'Describe', '--topic', SECURE_TOPIC]);
  fs.writeFileSync(marker, new Date().toISOString());
}

export const securePostgres: PostgresInstance = {
  name: 'PostgreSQL (TLS)',
  dir: path.join(localRoot, 'postgres-secure'),
  port: LOCAL_POSTGRES_SECURE_PORT,
  settings: ['ssl=on', 'ssl_cert_file=server.crt', 'ssl_key_file=server.key', 'ssl_min_protocol_version=TLSv1.2', 'shared_buffers=64MB', 'max_connections=100'],
  // TLS or nothing: the superuser for setting up, the pipeline role for its own database; anything else matches no line.
  hba: `# written by npm run local -- start --secure
local all postgres scram-sha-256
hostssl all postgres 127.0.0.1/32 scram-sha-256
hostssl ${SECURE_DATABASE} ${SECURE_ROLE} 127.0.0.1/32 scram-sha-256
`,
  files: { 'server.crt': file('server.pem'), 'server.key': file('server.key') },
};

const secureUrl = (user: string, password: string, db: string) =>
  `postgres://${user}:${password}@127.0.0.1:${LOCAL_POSTGRES_SECURE_PORT}/${db}?sslmode=verify-full&sslrootcert=${caFile}`;

/** The pipeline's DATABASE_URL on the secured PostgreSQL: TLS with the certificate checked against the CA and the host. */
export const secureDatabaseUrl = () => secureUrl(SECURE_ROLE, credentials().pipeline, SECURE_DATABASE);
/** The superuser's, for setting up and for tests that look at what was written. */
export const secureAdminDatabaseUrl = (db = SECURE_DATABASE) => secureUrl('postgres', LOCAL_POSTGRES_PASSWORD, db);

/** The role `pipeline`: it logs in with a password, owns the schema `pipeline` of the database `pipeline`, and nothing else. */
async function ensureRole(c: Credentials): Promise<void> {
  const admin = database(secureAdminDatabaseUrl('postgres'), 1);
  const role = await admin.oneOrNone('SELECT 1 FROM pg_roles WHERE rolname = $1', [SECURE_ROLE]);
  if (!role) await admin.none('CREATE ROLE $1:name LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD $2', [SECURE_ROLE, c.pipeline]);
  else await admin.none('ALTER ROLE $1:name PASSWORD $2', [SECURE_ROLE, c.pipeline]);
  if (!(await admin.oneOrNone('SELECT 1 FROM pg_database WHERE datname = $1', [SECURE_DATABASE]))) await admin.none('CREATE DATABASE $1:name', [SECURE_DATABASE]);
  await admin.none('REVOKE ALL ON DATABASE $1:name FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE $1:name TO $2:name', [SECURE_DATABASE, SECURE_ROLE]);
  const pipeline = database(secureAdminDatabaseUrl(SECURE_DATABASE), 1);
  await pipeline.none('REVOKE ALL ON SCHEMA public FROM PUBLIC; CREATE SCHEMA IF NOT EXISTS $1:name AUTHORIZATION $1:name; ALTER ROLE $1:name IN DATABASE $2:name SET search_path = $1:name', [SECURE_ROLE, SECURE_DATABASE]);
}

/** Starts the secured broker (one node or three) and the secured PostgreSQL, with users, ACLs and the role. */
export async function startSecure(brokers: number, log: (line: string) => void): Promise<void> {
  ensureCertificates(log);
  const c = credentials();
  await Promise.all([startSecureKafka(brokers, brokerSecurity(c), log), startPostgres(log, securePostgres)]);
  await ensureRole(c);
  // The ingest may not create topics: the admin makes them (6 partitions, as orders-ingest would).
  const admin = kafkaConnection(brokersOf(kafkaNodes(brokers, true)), [], { KAFKA_CONFIG: secureKafkaConfig('admin', c.admin) });
  await ensureTopics(admin, [SECURE_TOPIC, `${SECURE_TOPIC}.dlq`].map((name) => ({ name, partitions: 6 })));
  grantAcls(brokers, c, log);
}

export const SECURE_USERS = ['ingest', 'generator', 'admin'] as const;
export type SecureUser = (typeof SECURE_USERS)[number];

/** What `env --secure` prints: a principal's KAFKA_CONFIG (the ingest's by default), and the pipeline role over verified TLS. */
export function secureEnv(brokers: number, user: SecureUser = 'ingest'): Record<string, string> {
  const c = credentials();
  return {
    KAFKA_BROKERS: brokersOf(kafkaNodes(brokers, true)),
    KAFKA_CONFIG: secureKafkaConfig(user, c[user]),
    DATABASE_URL: secureDatabaseUrl(),
  };
}

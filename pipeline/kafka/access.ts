import Kafka from 'node-rdkafka';
import { AccessError, PipelineError } from '../errors.ts';
import { principalOf } from './admin.ts';
import { clientConfig, type KafkaConnection } from './client-config.ts';

const ERR_AUTHENTICATION = -169; // RD_KAFKA_RESP_ERR__AUTHENTICATION
const ERR_SSL = -181; // RD_KAFKA_RESP_ERR__SSL
const ERR_TRANSPORT = -195; // RD_KAFKA_RESP_ERR__TRANSPORT
const TOPIC_AUTHORIZATION_FAILED = 29;
const GROUP_AUTHORIZATION_FAILED = 30;
const CLUSTER_AUTHORIZATION_FAILED = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53;

/**
 * Whether an error a Kafka client reported means the broker refused this client, which no retry fixes: the
 * credentials (a wrong password, SASL against a listener without it, a client without TLS or SASL against one
 * that wants them, a certificate the CA does not vouch for), or what the principal may do. The message names the
 * cause and what to set, never a secret (librdkafka's own text holds none; the settings' values are not echoed).
 */
export function accessErrorOf(err: { code?: unknown; message?: string }, conn: KafkaConnection, on: { topic?: string; group?: string } = {}): AccessError | undefined {
  const message = err?.message ?? '';
  const principal = principalOf(conn);
  const protocol = String(conn.extra['security.protocol'] ?? 'PLAINTEXT').toUpperCase();
  // The group coordinator's refusal comes as a local error code with the broker's words.
  const code = /Group authorization failed/i.test(message) ? GROUP_AUTHORIZATION_FAILED : /Topic authorization failed/i.test(message) ? TOPIC_AUTHORIZATION_FAILED : err?.code;
  switch (code) {
    case ERR_AUTHENTICATION: {
      const offered = /mechanism handshake failed:.*supported mechanisms:\s*([A-Z0-9_,-]*)/.exec(message);
      if (offered) {
        return new AccessError('KAFKA_AUTHENTICATION', `Kafka does not take SASL ${conn.extra['sasl.mechanisms'] ?? conn.extra['sasl.mechanism'] ?? 'GSSAPI'} on this listener `
          + `(it offers ${offered[1] || 'no SASL at all'}): check security.protocol and sasl.mechanisms`);
      }
      return new AccessError('KAFKA_AUTHENTICATION', /invalid credentials|Authentication failed/i.test(message)
        ? `Kafka refused the credentials of ${principal} (SASL ${conn.extra['sasl.mechanisms'] ?? conn.extra['sasl.mechanism'] ?? 'GSSAPI'} authentication failed): check sasl.username and sasl.password`
        : `Kafka refused to authenticate ${principal}: ${message.replace(/^\S+\/\S+: /, '').replace(/ \(after \d+ms.*$/, '')}: check security.protocol and the sasl.* settings`);
    }
    case ERR_SSL:
      // Only a certificate this client does not trust; a handshake cut short (a broker restarting) is retried.
      return /certificate verify failed|unable to get local issuer/i.test(message)
        ? new AccessError('KAFKA_AUTHENTICATION', 'Kafka\'s TLS certificate is not signed by a CA this client trusts (certificate verify failed): set ssl.ca.location to the CA that signed it')
        : undefined;
    case ERR_TRANSPORT:
      if (/incorrect security\.protocol/.test(message)) {
        return new AccessError('KAFKA_AUTHENTICATION', `Kafka closed the connection of this ${protocol} client during the handshake: `
          + 'the listener wants TLS and/or SASL; set security.protocol, and the sasl.* and ssl.* settings, in KAFKA_CONFIG or --kafka');
      }
      return undefined;
    case TOPIC_AUTHORIZATION_FAILED:
      return new AccessError('KAFKA_AUTHORIZATION', `Kafka denies ${principal} ${on.topic ? `topic ${on.topic}` : 'a topic'} (TOPIC_AUTHORIZATION_FAILED): grant it the ACLs it needs (Describe and Read on the topics it reads, Write on those it writes)`);
    case GROUP_AUTHORIZATION_FAILED:
      return new AccessError('KAFKA_AUTHORIZATION', `Kafka denies ${principal} ${on.group ? `group ${on.group}` : 'its consumer group'} (GROUP_AUTHORIZATION_FAILED): grant it Read on the group`);
    case CLUSTER_AUTHORIZATION_FAILED:
      return new AccessError('KAFKA_AUTHORIZATION', `Kafka denies ${principal} a cluster operation (CLUSTER_AUTHORIZATION_FAILED)`);
    case TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return new AccessError('KAFKA_AUTHORIZATION', `Kafka denies ${principal} its transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED): grant it Write on the transactional id`);
    default:
      return undefined;
  }
}

/**
 * What librdkafka logs while it cannot get in, before any call fails (the calls only time out): a refusal of the
 * credentials, of the TLS certificate, or a listener that closes on a client speaking the wrong protocol. A
 * protocol mismatch reads like any dropped connection, so it counts only once it repeated, with no broker reached
 * (the number of drops so far in, the drops this line reports out).
 */
export function refusalInLog(message: string, conn: KafkaConnection, dropsSoFar: number): AccessError | number | undefined {
  if (/SASL authentication error|SASL SCRAM|Authentication failed|mechanism handshake failed/i.test(message)) return accessErrorOf({ code: ERR_AUTHENTICATION, message }, conn);
  if (/certificate verify failed/i.test(message)) return accessErrorOf({ code: ERR_SSL, message }, conn);
  if (/incorrect security\.protocol/.test(message)) return accessErrorOf({ code: ERR_TRANSPORT, message }, conn);
  if (/Disconnected.*in state (APIVERSION_QUERY|SSL_HANDSHAKE|AUTH_HANDSHAKE|AUTH_REQ)/.test(message)) {
    // librdkafka holds back repeats of a line, and says how many with the next one.
    const drops = 1 + Number(/(\d+) identical error\(s\) suppressed/.exec(message)?.[1] ?? 0);
    return dropsSoFar + drops >= DROPS_FOR_PROTOCOL ? accessErrorOf({ code: ERR_TRANSPORT, message: 'incorrect security.protocol' }, conn) : drops;
  }
  return undefined;
}
const DROPS_FOR_PROTOCOL = 3;

/**
 * Connects once before anything else, to tell a broker that refuses this client (AccessError, not retried) from
 * one that is not there yet (KAFKA_UNREACHABLE, retried). The wait is short: a process cannot exit while a
 * connect() is under way, so a refusal found early would otherwise keep it for as long.
 */
export async function checkKafkaAccess(conn: KafkaConnection, timeoutMs = 4_000): Promise<void> {
  const producer = new Kafka.Producer(clientConfig(conn, { 'client.id': 'pipeline-access-check', event_cb: true }) as Kafka.ProducerGlobalConfig);
  let refused: AccessError | undefined;
  let drops = 0;
  const look = (message: string) => {
    const r = refusalInLog(message, conn, drops);
    if (typeof r === 'number') drops += r;
    else refused ??= r;
  };
  // Connection failures come as FAIL lines of level 6, not as error events.
  producer.on('event.log', (e: { severity: number; fac: string; message: string }) => { if (e.severity <= 4 || e.fac === 'FAIL') look(e.message); });
  producer.on('event.error', (err) => {
    refused ??= accessErrorOf(err as unknown as { code: number; message: string }, conn);
    look((err as unknown as Error).message ?? '');
  });
  const disconnect = () => new Promise<void>((resolve) => {
    try {
      producer.disconnect(5_000, () => resolve());
    } catch {
      resolve(); // never connected: nothing to close
    }
  });
  // A refusal is known before connect() gives up: the client is closed once it does, and nobody waits for that.
  let returned = false;
  let abandoned = false;
  try {
    await new Promise<void>((resolve, reject) => {
      const watch = setInterval(() => { if (refused) finish(refused); }, 50);
      let done = false;
      function finish(err?: Error) {
        if (done) return;
        done = true;
        clearInterval(watch);
        if (err) reject(err);
        else resolve();
      }
      producer.connect({ timeout: timeoutMs }, (err) => {
        returned = true;
        if (abandoned) void disconnect();
        finish(refused ?? (err
          ? new PipelineError('KAFKA_UNREACHABLE', `cannot reach Kafka at ${conn.brokers}: ${err.message}`, { retriable: true, cause: err })
          : undefined));
      });
    });
  } finally {
    if (returned) await disconnect();
    else abandoned = true;
  }
}

import { ConfigError } from '../errors.ts';

/** librdkafka properties: the brokers plus whatever the user passed through (security settings, tuning). */
export type KafkaConfig = Record<string, string | number | boolean>;

export interface KafkaConnection {
  brokers: string;
  /** From `--kafka key=value` flags and the KAFKA_CONFIG environment variable ("k=v;k=v"); flags win. */
  extra: KafkaConfig;
}

const SECRET = /pass|secret|token|key\.pem|private|credential|sasl\.oauthbearer\.config|sasl\.jaas/i;

export function isSecretKey(key: string): boolean {
  return SECRET.test(key);
}

/** A copy of a config with secret values masked, for logs, --describe and error messages. */
export function redactConfig(config: KafkaConfig): KafkaConfig {
  const out: KafkaConfig = {};
  for (const [k, v] of Object.entries(config)) out[k] = isSecretKey(k) ? '***' : v;
  return out;
}

export function parseKafkaPairs(pairs: string[], origin: string): KafkaConfig {
  const out: KafkaConfig = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${origin}: expected key=value, got "${isSecretKey(pair) ? '***' : pair}"`);
    const key = pair.slice(0, eq).trim();
    if (!/^[a-z][a-z0-9._-]*$/.test(key)) throw new ConfigError(`${origin}: "${key}" is not a librdkafka property name`);
    out[key] = pair.slice(eq + 1);
  }
  return out;
}

export function kafkaConnection(brokers: string, flagPairs: string[], env: NodeJS.ProcessEnv = process.env): KafkaConnection {
  const fromEnv = env.KAFKA_CONFIG ? parseKafkaPairs(env.KAFKA_CONFIG.split(/[;\n]/).filter((s) => s.trim()), 'KAFKA_CONFIG') : {};
  return { brokers, extra: { ...fromEnv, ...parseKafkaPairs(flagPairs, '--kafka') } };
}

/**
 * Checks the passed-through properties with librdkafka itself, at start: an unknown property, a bad value or one
 * this build lacks (OAuth without libcurl) is a configuration error (exit code 2), with any secret value masked.
 */
export function checkKafkaConfig(conn: KafkaConnection, create: (config: KafkaConfig) => unknown): void {
  if (!Object.keys(conn.extra).length) return;
  try {
    create(clientConfig(conn, {}));
  } catch (err) {
    let message = err instanceof Error ? err.message : String(err);
    for (const [k, v] of Object.entries(conn.extra)) if (isSecretKey(k) && String(v)) message = message.split(String(v)).join('***');
    throw new ConfigError(`--kafka / KAFKA_CONFIG: ${message}`);
  }
}

export function clientConfig(conn: KafkaConnection, own: KafkaConfig): KafkaConfig {
  return { 'bootstrap.servers': conn.brokers, ...own, ...conn.extra };
}

import Kafka from 'node-rdkafka';
import { EnvironmentError } from '../errors.ts';
import type { KafkaConnection } from './client-config.ts';

/** Every codec a producer may have used: a consumer must read them all (scripts/node-rdkafka.mjs builds them in). */
export const CODECS = ['gzip', 'snappy', 'lz4', 'zstd'] as const;

/** The librdkafka features a client with this configuration needs: every codec, and what its security settings use. */
export function featuresNeeded(conn: KafkaConnection): string[] {
  const needed: string[] = [...CODECS];
  const protocol = String(conn.extra['security.protocol'] ?? 'plaintext').toLowerCase();
  if (protocol.includes('ssl')) needed.push('ssl');
  if (protocol.startsWith('sasl')) {
    const mechanism = String(conn.extra['sasl.mechanisms'] ?? conn.extra['sasl.mechanism'] ?? 'GSSAPI').toUpperCase();
    if (mechanism.startsWith('SCRAM')) needed.push('sasl_scram');
    else if (mechanism === 'OAUTHBEARER') needed.push('sasl_oauthbearer');
    else if (mechanism === 'GSSAPI') needed.push('sasl_gssapi');
    else needed.push('sasl_plain');
  }
  return needed;
}

/**
 * Checked at start, before anything connects: a build that lacks a codec would read the batches compressed with
 * it as errors, so a topology says what is missing instead of starting.
 */
export function checkFeatures(topologies: string[], conn: KafkaConnection, built: readonly string[] = Kafka.features): void {
  const missing = featuresNeeded(conn).filter((f) => !built.includes(f));
  if (!missing.length) return;
  throw new EnvironmentError(`${topologies.join(', ')} need${topologies.length === 1 ? 's' : ''} librdkafka with ${missing.join(', ')}, `
    + `and node-rdkafka here was built without ${missing.length === 1 ? 'it' : 'them'} (built in: ${built.join(',')}): `
    + 'reinstall with rm -rf node_modules && npm ci, which builds every codec');
}

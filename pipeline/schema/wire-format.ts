import { PipelineError } from '../errors.ts';

/**
 * The Confluent wire format: magic byte 0, the schema id as a 4-byte big-endian integer, then the payload (here
 * JSON text). Documented in Confluent's "Wire format" section of the Schema Registry serializer docs; every
 * Confluent-compatible serializer (Java, Python, Go, librdkafka's serdes) writes exactly this header.
 */
export const MAGIC_BYTE = 0;
export const HEADER_BYTES = 5;

export function encodeWireFormat(schemaId: number, payload: Buffer): Buffer {
  if (!Number.isInteger(schemaId) || schemaId < 0 || schemaId > 0x7fffffff) {
    throw new PipelineError('SCHEMA_ID_INVALID', `schema id ${schemaId} does not fit the wire format (0..2147483647)`);
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out[0] = MAGIC_BYTE;
  out.writeInt32BE(schemaId, 1);
  payload.copy(out, HEADER_BYTES);
  return out;
}

/**
 * Whether a value carries the wire-format header. A JSON text never starts with byte 0 (RFC 8259 allows only
 * whitespace before the value), so plain JSON and the wire format cannot be confused.
 */
export function hasWireFormat(value: Buffer): boolean {
  return value.length >= HEADER_BYTES && value[0] === MAGIC_BYTE;
}

/** The schema id and the payload (a view, not a copy); undefined when the value is not in the wire format. */
export function decodeWireFormat(value: Buffer): { schemaId: number; payload: Buffer } | undefined {
  if (!hasWireFormat(value)) return undefined;
  return { schemaId: value.readInt32BE(1), payload: value.subarray(HEADER_BYTES) };
}

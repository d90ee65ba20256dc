/** Every code a PipelineError can carry: stable, for logs, metric labels and tests. */
export type ErrorCode =
  | 'CONFIG_INVALID' | 'ENVIRONMENT_MISSING'
  | 'KAFKA_UNREACHABLE' | 'KAFKA_CLIENT' | 'KAFKA_CONSUME' | 'PRODUCE_FAILED' | 'PRODUCE_TIMEOUT' | 'TOPIC_CREATE_FAILED'
  | 'OFFSETS_FENCED' | 'SOURCE_BEHIND' | 'RETRIES_EXHAUSTED' | 'KAFKA_TOPIC_MISSING' | 'GLOBAL_TABLE_STALLED' | 'KAFKA_TRANSACTION'
  | 'SCHEMA_REGISTRY' | 'SCHEMA_UNKNOWN' | 'SCHEMA_INCOMPATIBLE' | 'SCHEMA_REFERENCES' | 'SCHEMA_ID_INVALID' | 'SCHEMA_CHANGED'
  | 'CSV_HEADER' | 'CSV_COLUMNS' | 'CSV_QUOTE'
  | 'COPY_UNENCODABLE' | 'COPY_BINARY'
  | 'KAFKA_AUTHENTICATION' | 'KAFKA_AUTHORIZATION';

/**
 * Errors carry a stable code (for logs, metrics labels and tests) and whether retrying can help.
 * Configuration errors end the program with exit code 2 and their message as the one line shown.
 */
export class PipelineError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** A bad flag, environment variable or setting: the program stops with exit code 2. */
export class ConfigError extends PipelineError {
  constructor(message: string, code: ErrorCode = 'CONFIG_INVALID') {
    super(code, message);
  }
}

/**
 * The broker refused this client: its credentials (KAFKA_AUTHENTICATION), or what its principal may do
 * (KAFKA_AUTHORIZATION). Waiting cannot fix either, so the program stops at once, as for a bad setting.
 */
export class AccessError extends ConfigError {
  constructor(code: 'KAFKA_AUTHENTICATION' | 'KAFKA_AUTHORIZATION', message: string) {
    super(message, code);
  }
}

/** Something the machine lacks (Java, Maven): said in one line with what to do instead. */
export class EnvironmentError extends PipelineError {
  constructor(message: string) {
    super('ENVIRONMENT_MISSING', message);
  }
}

/** Another instance wrote the offsets of a partition this instance thought it owned. */
export class FencedError extends PipelineError {
  readonly partitions: number[];
  constructor(topic: string, partitions: number[]) {
    super('OFFSETS_FENCED', `offsets of ${topic} partitions ${partitions.join(',')} were moved by another instance`, { retriable: true });
    this.partitions = partitions;
  }
}

/** A value COPY text cannot carry (a NUL character, a number that is not finite): that row's dead letter. */
export class CopyEncodeError extends PipelineError {
  constructor(message: string) {
    super('COPY_UNENCODABLE', message);
  }
}

/** The stages whose user function's throw rejects the record with reason `<stage>-failed`. */
export type FunctionStage = 'filter' | 'mapValues' | 'map' | 'selectKey' | 'flatMap' | 'peek' | 'timestamp' | 'join';

/**
 * Why a record became a dead letter: the `reason` of its row in pipeline_dead_letters, its dlq header, and the label
 * of pipeline_records_invalid_total. A closed set, so a dashboard or an alert can name every one.
 */
export type DeadLetterReason =
  | 'malformed-json' | 'malformed-csv' | 'invalid-utf8' | 'tombstone'
  | 'schema' | 'unknown-schema'
  | 'duplicate' | 'rejected-by-database' | 'unencodable' | 'map-failed'
  | `${FunctionStage}-failed`;

export function errorMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  // PostgreSQL refusing the login (SQLSTATE class 28), or its certificate: said as what it is and what to check.
  if (typeof code === 'string' && /^28/.test(code)) return `PostgreSQL refused the connection: ${err.message} (check DATABASE_URL's user, password and sslmode)`;
  if (typeof code === 'string' && TLS_CERT_CODES.has(code)) {
    return `PostgreSQL's TLS certificate was not accepted: ${err.message} (set sslrootcert in DATABASE_URL to the CA that signed it, and connect to a name the certificate holds)`;
  }
  return err.message;
}

const TLS_CERT_CODES = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED']);

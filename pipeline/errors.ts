/** Every code a PipelineError can carry: stable, for logs, metric labels and tests. */
export type ErrorCode =
  | 'CONFIG_INVALID' | 'ENVIRONMENT_MISSING'
  | 'KAFKA_UNREACHABLE' | 'KAFKA_CLIENT' | 'KAFKA_CONSUME' | 'PRODUCE_FAILED' | 'PRODUCE_TIMEOUT' | 'TOPIC_CREATE_FAILED'
  | 'OFFSETS_FENCED' | 'SOURCE_BEHIND' | 'RETRIES_EXHAUSTED'
  | 'SCHEMA_REGISTRY' | 'SCHEMA_UNKNOWN' | 'SCHEMA_INCOMPATIBLE' | 'SCHEMA_REFERENCES' | 'SCHEMA_ID_INVALID' | 'SCHEMA_CHANGED'
  | 'CSV_HEADER' | 'CSV_COLUMNS' | 'CSV_QUOTE'
  | 'COPY_UNENCODABLE';

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
  constructor(message: string) {
    super('CONFIG_INVALID', message);
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
export type FunctionStage = 'filter' | 'mapValues' | 'map' | 'selectKey' | 'flatMap' | 'peek' | 'timestamp';

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
  return err instanceof Error ? err.message : String(err);
}

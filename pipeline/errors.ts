/**
 * Errors carry a stable code (for logs, metrics labels and tests) and whether retrying can help.
 * Configuration errors end the program with exit code 2 and their message as the one line shown.
 */
export class PipelineError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  constructor(code: string, message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
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

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

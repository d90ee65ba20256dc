import type { OptionSpec, OptionValues } from './config/options.ts';
import type { KafkaConnection } from './kafka/client-config.ts';
import type { PipelineMetrics } from './metrics/registry.ts';
import type { Database } from './postgres/db.ts';

/** What the CLI hands a running topology. Postgres is opened lazily: a topology that only produces never needs it. */
export interface TopologyContext {
  kafka: KafkaConnection;
  database(): Database;
  metrics: PipelineMetrics;
  log(line: string): void;
  signal: AbortSignal;
  /** The topology reports readiness here (/readyz): connected to what it needs. */
  setReady(ready: boolean): void;
}

export interface Topology {
  name: string;
  description: string;
  options: OptionSpec[];
  uses: { kafka: boolean; postgres: boolean };
  /** Checks the values beyond what the option specs say (names that reach SQL or Kafka); throws ConfigError. */
  validate?(values: OptionValues): void;
  /** Sources, stages, sinks, topics and tables, as text. */
  describe(values: OptionValues): string;
  /** Runs until done (a count reached, idle) or until ctx.signal aborts; then drains and resolves. */
  run(ctx: TopologyContext, values: OptionValues): Promise<void>;
}

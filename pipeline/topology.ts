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
  /**
   * Aborted before `signal` when this process also runs the producers of a topic this topology reads, once they have
   * stopped: read on to the end of what they wrote (the high watermarks now), commit, then stop, within a few
   * seconds. A topology that cannot drain stops at `signal`.
   */
  drain: AbortSignal;
  /** The topology reports readiness here (/readyz): connected to what it needs. */
  setReady(ready: boolean): void;
}

export interface Topology {
  name: string;
  description: string;
  options: OptionSpec[];
  uses: { kafka: boolean; postgres: boolean };
  /** The Kafka topics it reads and writes with these values: on shutdown, writers of a topic stop before its readers. */
  topics(values: OptionValues): { reads: string[]; writes: string[] };
  /** Checks the values beyond what the option specs say (names that reach SQL or Kafka); throws ConfigError. */
  validate?(values: OptionValues): void;
  /** Sources, stages, sinks, topics and tables, as text. */
  describe(values: OptionValues): string;
  /** Runs until done (a count reached, idle) or until ctx.signal aborts; then drains and resolves. */
  run(ctx: TopologyContext, values: OptionValues): Promise<void>;
}

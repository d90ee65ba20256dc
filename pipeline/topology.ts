import { GLOBAL_OPTIONS, options as typedOptions, type OptionsOf, type OptionSpec, type OptionValues } from './config/options.ts';
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

/** A runnable topology; V is what its options give (OptionsOf its specs, see defineTopology). */
export interface Topology<V = OptionValues> {
  name: string;
  description: string;
  options: readonly OptionSpec[];
  uses: { kafka: boolean; postgres: boolean };
  /** The Kafka topics it reads and writes with these values: on shutdown, writers of a topic stop before its readers. */
  topics(values: V): { reads: string[]; writes: string[] };
  /** Checks the values beyond what the option specs say (names that reach SQL or Kafka); throws ConfigError. */
  validate?(values: V): void;
  /** Sources, stages, sinks, topics and tables, as text. */
  describe(values: V): string;
  /** Groups of topics it reads that must be co-partitioned (the inputs of a join): --describe checks them when Kafka is up. */
  copartitioned?(values: V): string[][];
  /** Runs until done (a count reached, idle) or until ctx.signal aborts; then drains and resolves. */
  run(ctx: TopologyContext, values: V): Promise<void>;
}

/** What a topology with option specs S is handed: its own options and the CLI's, typed. */
export type ValuesOf<S extends readonly OptionSpec[]> = OptionsOf<readonly [...typeof GLOBAL_OPTIONS, ...S]>;

/**
 * A topology whose code reads typed options: the values the CLI parsed are checked once against the specs' schema
 * (config/options.ts), and each method gets them as OptionsOf<S>.
 */
export function defineTopology<const S extends readonly OptionSpec[]>(t: Omit<Topology<ValuesOf<S>>, 'options'> & { options: S }): Topology {
  const check = typedOptions([...GLOBAL_OPTIONS, ...t.options] as const);
  const typed = new WeakMap<OptionValues, ValuesOf<S>>();
  const of = (v: OptionValues) => {
    let out = typed.get(v);
    if (!out) typed.set(v, (out = check(v)));
    return out;
  };
  return {
    name: t.name, description: t.description, options: t.options, uses: t.uses,
    topics: (v) => t.topics(of(v)),
    validate: (v) => t.validate?.(of(v)),
    describe: (v) => t.describe(of(v)),
    copartitioned: t.copartitioned && ((v) => t.copartitioned!(of(v))),
    run: (ctx, v) => t.run(ctx, of(v)),
  };
}

/**
 * The part of the public API that builds plans: the DSL, windows, records, stages, schemas and errors. It loads no
 * Kafka client, so a worker thread (a stage worker building its copy of a plan, the generator's encoder) imports
 * this rather than pipeline/index.ts, which re-exports it.
 */

// Building a topology: the DSL, windows, records and stages.
export { StreamsBuilder, KStream, KGroupedStream, KWindowedStream, KWindowedTable, KTable, GlobalKTable } from './dsl/builder.ts';
export { GlobalTable, type GlobalTableSpec } from './state/global-table.ts';
export { byName, describeMermaid, describeText, sinksOf, storesOf, changelogTopic, type TopologyPlan, type PlanNode, type SinkSpec } from './dsl/plan.ts';
export { optimize, type OptimizedPlan, type OptimizeOptions } from './dsl/optimize.ts';
export { JoinWindows, TimeWindows, SessionWindows, type Windows } from './windows/windows.ts';
export { StreamJoin, type JoinKind } from './stages/stream-join.ts';
export type { Stage, StageContext, StatefulStage, StreamRecord, Windowed } from './records.ts';
export { parseJson } from './stages/parse-json.ts';
export { validate } from './stages/validate.ts';
export { encodeCopyRow, type CopyValue } from './codec/copy-text.ts';
export { prng } from './random.ts';

export { ConfigError, CopyEncodeError, EnvironmentError, errorMessage, FencedError, PipelineError, type DeadLetterReason, type ErrorCode } from './errors.ts';
export { compileSchema, formatCheck, loadSchema, orderSchema, validateOrder, type Order, type Validator } from './schema/validator.ts';
export { JsonDeserializer, registryFromEnv, valueSerializer, valueSubject, type ValueSerializer, type SchemaRegistryClient } from './schema/registry.ts';
export { encodeWireFormat } from './schema/wire-format.ts';

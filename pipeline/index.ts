/**
 * The engine's public API: what topologies, scripts and benchmarks import (a test forbids them anything deeper;
 * the local infrastructure has its own entry, pipeline/local/index.ts). Everything else under pipeline/ is internal.
 */

// Building a topology (also safe in a worker thread: pipeline/builder.ts loads no Kafka client).
export * from './builder.ts';

// Running it: the topology contract, the runtime and what it is built from.
export { defineTopology, type Topology, type TopologyContext, type ValuesOf } from './topology.ts';
export { helpText, options, optionsSchema, parseArgs, type OptionsOf, type OptionSpec, type OptionValues } from './config/options.ts';
export { StreamTask, MAX_POLL_RECORDS, type StreamTaskOptions, type BatchPolicy, type DeadLetterOutlet } from './runtime/stream-task.ts';
export { runPlan, type RunPlanSettings } from './runtime/run-plan.ts';
export type { Source, SourceFactory, PartitionListener, PartitionError, Polled } from './sources/source.ts';
export { KafkaSource } from './sources/kafka-source.ts';
export type { Sink, SinkSetup, FlushInfo } from './sinks/sink.ts';
export { sinkOf } from './sinks/index.ts';
export type { Committer, CommitResult } from './runtime/committer.ts';
export { PostgresCommitter } from './runtime/committer.ts';
export type { FlushPlan } from './runtime/flush-plan.ts';
export { TaskObserver } from './runtime/observer.ts';
export { Progress } from './runtime/progress.ts';
export { Aborted, isRetriable, retry, sleep } from './runtime/retry.ts';
export { sibling, startWorker, TS_WORKER, type PlanRef } from './runtime/stage-workers.ts';
export { batchSize, type PackedBatch } from './sources/packed-batch.ts';

// The kafka-to-postgres connector: configs, the table they make, the plan of each pipeline.
export { loadConnectorConfig, loadConnectorConfigs, type ConnectorPipeline, type PipelineConfig } from './connector/config.ts';
export { columnType, createTableSql, tableColumns, type Column, type ColumnSource } from './connector/columns.ts';
export { connectorPlan, type ConnectorPlanArgs } from './connector/plan.ts';
export { SchemaChanged, schemaGate } from './connector/schema-gate.ts';

// Testing without a broker.
export { TopologyTestDriver, type TestInput } from './testing/test-driver.ts';
export { MemoryCommitter, MemorySource, type MemoryMessage } from './testing/memory.ts';
export { TcpProxy } from './testing/tcp-proxy.ts';

// Kafka, Postgres and schemas, as the topologies use them.
export { clientConfig, kafkaConnection, type KafkaConnection } from './kafka/client-config.ts';
export { deleteTopics, describePartitions, ensureTopics, topicName, type PartitionInfo } from './kafka/admin.ts';
export { KafkaProducer } from './kafka/producer.ts';
export { closeDatabases, database, pgp, tableName, withSetupLock, type Database } from './postgres/db.ts';
export { DeadLetterRelay, ensureDeadLetterTable, type DeadLetter } from './postgres/dead-letters.ts';
export { ensureOffsetsTable, loadOffsets } from './postgres/offsets.ts';
export { inFlushTransaction } from './postgres/flush-transaction.ts';
export { PostgresCopySink } from './sinks/postgres-copy.ts';
export { CopyRowsBuilder, encodeRows, segmentOf } from './sinks/copy-segment.ts';
export { compileJsonRows } from './codec/json-rows.ts';
export { binaryEncoders } from './codec/copy-binary.ts';
export { countLines, formatOf, lineReader, numericProperties, readCsvHeader, readFileRecords, type FileFormat } from './sources/file-records.ts';
export { decodePosition, encodePosition, FileSource, type FileSourceOptions } from './sources/file-source.ts';
export { localRoot, projectRoot } from './local/paths.ts';

import type { SinkSpec } from '../dsl/plan.ts';
import { PostgresCopySink } from './postgres-copy.ts';
import { PostgresUpsertSink } from './postgres-upsert.ts';
import { PostgresWindowSink } from './postgres-windows.ts';
import type { Sink } from './sink.ts';
import { TopicSink } from './topic-sink.ts';

/** The sink a plan's spec declares: the one place that knows every kind (the runtime only sees Sink). */
export function sinkOf(spec: SinkSpec, o: { applicationId: string; sourceTopic: string; dlqTopic: string }): Sink {
  switch (spec.kind) {
    case 'postgres': {
      const copy = { name: spec.name, table: spec.table, columns: spec.columns, dlqTopic: o.dlqTopic, createSql: spec.createSql, shape: spec.shape };
      return spec.mode === 'upsert'
        ? new PostgresUpsertSink({ ...copy, keyColumns: spec.keyColumns ?? [], deleteOnTombstone: spec.deleteOnTombstone ?? false })
        : new PostgresCopySink(copy);
    }
    case 'postgres-windows':
      return new PostgresWindowSink(spec, o.applicationId, o.sourceTopic);
    case 'topic':
      return new TopicSink(spec);
  }
}

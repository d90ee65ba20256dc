import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { createRequire } from 'node:module';
import { ConfigError, errorMessage } from '../errors.ts';
import { userPath } from '../config/options.ts';
import { projectRoot } from '../local/paths.ts';

/** One pipeline of a connector config, as written (schemas/connector.schema.json). */
export interface PipelineConfig {
  name: string;
  topic?: string;
  topics?: string[];
  schema: string | { subject: string };
  table: string;
  key?: string | string[];
  mode?: 'append' | 'upsert';
  deleteOnTombstone?: boolean;
  autoCreate?: boolean;
  autoEvolve?: boolean;
  columns?: Record<string, string | null>;
  deadLetterTopic?: string;
  groupId?: string;
  batchSize?: number;
  sinkConnections?: number;
}

/** A pipeline with its defaults filled in and its schema file resolved: what the connector runs. */
export interface ConnectorPipeline {
  name: string;
  topics: string[];
  /** A file's absolute path, or a registry subject. */
  schema: { file: string } | { subject: string };
  table: string;
  key: string[];
  mode: 'append' | 'upsert';
  deleteOnTombstone: boolean;
  autoCreate: boolean;
  autoEvolve: boolean;
  columns: Record<string, string | null>;
  deadLetterTopic?: string;
  groupId?: string;
  batchSize?: number;
  sinkConnections?: number;
  /** Where it was declared, for errors: `file: /pipelines/0`. */
  origin: string;
}

let check: ReturnType<Ajv2020['compile']> | undefined;

function validator(): ReturnType<Ajv2020['compile']> {
  if (!check) {
    const schema = JSON.parse(readFileSync(path.join(projectRoot, 'schemas', 'connector.schema.json'), 'utf8')) as object;
    check = new Ajv2020({ strict: false, allErrors: true }).compile(schema);
  }
  return check;
}

/** The one error worth reading: the deepest, and for a oneOf the branch that got furthest. */
function describe(errors: ErrorObject[]): string {
  const useful = errors.filter((e) => e.keyword !== 'oneOf' && e.keyword !== 'if');
  // Deepest first; at the same depth, an error that says more than "must be <type>" (a oneOf's other branch).
  const score = (x: ErrorObject) => x.instancePath.split('/').length * 2 + (x.keyword === 'type' ? 0 : 1);
  const e = [...(useful.length ? useful : errors)].sort((a, b) => score(b) - score(a))[0];
  const at = e.instancePath || '/';
  switch (e.keyword) {
    case 'additionalProperties': return `${at}: unknown key "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    case 'required': return `${at}: missing "${(e.params as { missingProperty: string }).missingProperty}"`;
    case 'enum': return `${at}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    default: return `${at}: ${e.message ?? 'is invalid'}`;
  }
}

/** Reads a config file (JSON, or YAML by its extension): its pipelines, checked against schemas/connector.schema.json. */
export function loadConnectorConfig(file: string): ConnectorPipeline[] {
  let text: string;
  try {
    text = readFileSync(userPath(file), 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot be read (${errorMessage(err)})`);
  }
  let doc: unknown;
  try {
    // yaml (~70 modules) is loaded for a YAML file only, not at every start.
    doc = /\.ya?ml$/i.test(file) ? (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${errorMessage(err)}`);
  }
  const valid = validator();
  if (!valid(doc)) throw new ConfigError(`${file}: ${describe(valid.errors ?? [])}`);
  const dir = path.dirname(userPath(file));
  return (doc as { pipelines: PipelineConfig[] }).pipelines.map((p, i) => resolve(p, `${file}: /pipelines/${i}`, dir));
}

function resolve(p: PipelineConfig, origin: string, dir: string): ConnectorPipeline {
  const key = p.key === undefined ? [] : Array.isArray(p.key) ? p.key : [p.key];
  const mode = p.mode ?? 'append';
  if (mode === 'upsert' && !key.length) throw new ConfigError(`${origin}/mode: upsert needs "key", the column(s) a record's row is found by`);
  if (p.deleteOnTombstone && mode !== 'upsert') throw new ConfigError(`${origin}/deleteOnTombstone: needs "mode": "upsert"`);
  const schema = typeof p.schema === 'string' ? { file: path.resolve(dir, p.schema) } : p.schema;
  return {
    name: p.name, topics: p.topics ?? [p.topic!], schema, table: p.table, key, mode,
    deleteOnTombstone: p.deleteOnTombstone ?? false, autoCreate: p.autoCreate ?? false, autoEvolve: p.autoEvolve ?? false,
    columns: p.columns ?? {}, deadLetterTopic: p.deadLetterTopic, groupId: p.groupId, batchSize: p.batchSize,
    sinkConnections: p.sinkConnections, origin,
  };
}

/** The pipelines of every config file, their names unique across them. */
export function loadConnectorConfigs(files: readonly string[]): ConnectorPipeline[] {
  if (!files.length) throw new ConfigError('--config: give at least one connector config file (JSON or YAML, schemas/connector.schema.json)');
  const all = files.flatMap(loadConnectorConfig);
  const seen = new Map<string, string>();
  for (const p of all) {
    const before = seen.get(p.name);
    if (before) throw new ConfigError(`${p.origin}/name: "${p.name}" is also the name of ${before}`);
    seen.set(p.name, p.origin);
  }
  return all;
}

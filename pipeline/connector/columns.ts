import type { CopyValue } from '../codec/copy-text.ts';
import { ConfigError } from '../errors.ts';
import type { StreamRecord } from '../records.ts';

/** Where a column's value comes from. */
export type ColumnSource =
  | { from: 'value'; pointer: string[] }
  | { from: 'key'; pointer?: string[] }
  | { from: 'header'; name: string }
  | { from: 'timestamp' | 'topic' | 'partition' | 'offset' };

export interface Column {
  name: string;
  source: ColumnSource;
  /** As Postgres' format_type() spells it, so a table's columns compare as text: 'bigint', 'numeric(12,2)'. */
  type: string;
  nullable: boolean;
}

type JsonSchema = Record<string, unknown>;

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** A JSON pointer's tokens ("/address/city" -> ["address", "city"]), unescaped as RFC 6901 says. */
export function pointerTokens(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new ConfigError(`"${pointer}" is not a JSON pointer (it starts with /)`);
  return pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function parseSource(text: string): ColumnSource {
  if (text.startsWith('/')) return { from: 'value', pointer: pointerTokens(text) };
  if (text.startsWith('$.') || text.startsWith('$[')) return { from: 'value', pointer: pathTokens(text) };
  if (text === '@key') return { from: 'key' };
  if (text.startsWith('@key/')) return { from: 'key', pointer: pointerTokens(text.slice(4)) };
  if (text.startsWith('@header/')) return { from: 'header', name: text.slice(8) };
  if (text === '@timestamp' || text === '@topic' || text === '@partition' || text === '@offset') return { from: text.slice(1) as 'timestamp' };
  throw new ConfigError(`"${text}" is not a column source (a JSON pointer, a JSONPath ($.a.b), @key, @key/<pointer>, @header/<name>, @timestamp, @topic, @partition or @offset)`);
}

/** A JSONPath of plain names ("$.address.city", or "$['odd name']") as pointer tokens. */
export function pathTokens(path: string): string[] {
  const tokens: string[] = [];
  const re = /\.([A-Za-z_$][\w$]*)|\['((?:[^'\\]|\\.)*)'\]/y;
  re.lastIndex = 1;
  while (re.lastIndex < path.length) {
    const m = re.exec(path);
    if (!m) throw new ConfigError(`"${path}" is not a JSONPath of names ($.address.city or $['a name'])`);
    tokens.push(m[1] ?? m[2].replace(/\\(.)/g, '$1'));
  }
  return tokens;
}

/** The JSON Schema of what a pointer reaches, and whether it is always there (required at every level, not nullable). */
function schemaAt(schema: JsonSchema, pointer: string[]): { node: JsonSchema; required: boolean } | undefined {
  let node = schema;
  let required = true;
  for (const token of pointer) {
    const props = node.properties;
    if (!isObject(props) || !isObject(props[token])) return undefined;
    required &&= Array.isArray(node.required) && node.required.includes(token);
    node = props[token] as JsonSchema;
  }
  return { node, required };
}

const INT4 = 2 ** 31;

/**
 * A JSON Schema type as a Postgres column type: string -> text (uuid, timestamptz or date by format), integer ->
 * integer when bounded to int4, else bigint; number -> numeric, numeric(p,s) when multipleOf gives the scale;
 * boolean -> boolean; object and array -> jsonb. Nullable when the type allows null.
 */
export function columnType(node: JsonSchema): { type: string; nullable: boolean } {
  const types = Array.isArray(node.type) ? (node.type as string[]) : typeof node.type === 'string' ? [node.type] : [];
  const nullable = types.includes('null');
  const t = types.filter((x) => x !== 'null');
  if (t.length !== 1) return { type: 'jsonb', nullable };
  switch (t[0]) {
    case 'string':
      return { type: node.format === 'uuid' ? 'uuid' : node.format === 'date-time' ? 'timestamp with time zone' : node.format === 'date' ? 'date' : 'text', nullable };
    case 'integer': {
      const min = typeof node.minimum === 'number' ? node.minimum : -Infinity;
      const max = typeof node.maximum === 'number' ? node.maximum : Infinity;
      return { type: min >= -INT4 && max < INT4 ? 'integer' : 'bigint', nullable };
    }
    case 'number': {
      const step = node.multipleOf;
      if (typeof step !== 'number' || step >= 1) return { type: 'numeric', nullable };
      const scale = decimals(step);
      const bound = Math.max(Math.abs(typeof node.minimum === 'number' ? node.minimum : 0), Math.abs(typeof node.maximum === 'number' ? node.maximum : 0));
      const digits = typeof node.maximum === 'number' && typeof node.minimum === 'number' ? String(Math.trunc(bound)).length : 38 - scale;
      return { type: `numeric(${digits + scale},${scale})`, nullable };
    }
    case 'boolean':
      return { type: 'boolean', nullable };
    default:
      return { type: 'jsonb', nullable };
  }
}

/** Digits after the decimal point of a step such as 0.01 (as written in decimal). */
function decimals(step: number): number {
  const text = String(step);
  const e = /e-(\d+)$/.exec(text);
  if (e) return Number(e[1]) + (text.split('e')[0].split('.')[1]?.length ?? 0);
  return text.split('.')[1]?.length ?? 0;
}

const META_TYPES = { key: 'text', header: 'text', timestamp: 'timestamp with time zone', topic: 'text', partition: 'integer', offset: 'bigint' } as const;

/**
 * The table's columns for a pipeline: every top-level property of the schema by its name (unless mapped to null),
 * then the columns mapped explicitly; the key columns first, in the key's order (the sink needs them adjacent).
 */
export function tableColumns(schema: JsonSchema, mappings: Record<string, string | null>, key: readonly string[], origin: string): Column[] {
  const columns = new Map<string, Column>();
  const props = isObject(schema.properties) ? schema.properties : {};
  for (const name of Object.keys(props)) {
    if (mappings[name] === null || name in mappings) continue;
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new ConfigError(`${origin}/columns: the property "${name}" cannot be a column name as it is; map it ("columns": { "some_name": "/${name}" }) or leave it out ("${name}": null)`);
    columns.set(name, valueColumn(schema, name, [name], origin));
  }
  for (const [name, text] of Object.entries(mappings)) {
    if (text === null) continue;
    const source = parseSource(text);
    if (source.from === 'value') columns.set(name, valueColumn(schema, name, source.pointer, origin));
    else columns.set(name, { name, source, type: META_TYPES[source.from], nullable: source.from === 'key' || source.from === 'header' });
  }
  for (const k of key) if (!columns.has(k)) throw new ConfigError(`${origin}/key: "${k}" is not a column (the schema's properties and "columns" give: ${[...columns.keys()].join(', ')})`);
  return [...key.map((k) => columns.get(k)!), ...[...columns.values()].filter((c) => !key.includes(c.name))];
}

function valueColumn(schema: JsonSchema, name: string, pointer: string[], origin: string): Column {
  const at = schemaAt(schema, pointer);
  if (!at) throw new ConfigError(`${origin}/columns/${name}: /${pointer.join('/')} is not a property of the schema`);
  const { type, nullable } = columnType(at.node);
  return { name, source: { from: 'value', pointer }, type, nullable: nullable || !at.required };
}

/** Whether every column is the value's top-level property of its own name and a scalar: then rows are by name. */
export function byNameColumns(columns: readonly Column[]): boolean {
  return columns.every((c) => c.source.from === 'value' && c.source.pointer.length === 1 && c.source.pointer[0] === c.name && c.type !== 'jsonb');
}

/** A record's row, column by column from its sources; objects and arrays as JSON text (jsonb). */
export function rowOf(columns: readonly Column[]): (value: unknown, key: unknown, r: StreamRecord) => CopyValue[] {
  const getters = columns.map((c) => getter(c));
  return (value, _key, r) => getters.map((g) => g(value, r));
}

function getter(c: Column): (value: unknown, r: StreamRecord) => CopyValue {
  const s = c.source;
  const scalar = (x: unknown): CopyValue => (x === undefined || x === null ? null : typeof x === 'object' ? JSON.stringify(x) : (x as CopyValue));
  switch (s.from) {
    case 'value':
      return (value) => scalar(walk(value, s.pointer));
    case 'key':
      if (!s.pointer) return (_v, r) => r.rawKey?.toString('utf8') ?? null;
      return (_v, r) => {
        if (r.rawKey === null) return null;
        return scalar(walk(JSON.parse(r.rawKey.toString('utf8')), s.pointer!));
      };
    case 'header':
      return (_v, r) => {
        const h = r.headers?.find((x) => Object.hasOwn(x, s.name));
        const v = h?.[s.name];
        return v === undefined ? null : Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
      };
    case 'timestamp':
      return (_v, r) => (r.timestamp === undefined ? null : new Date(r.timestamp).toISOString());
    case 'topic':
      return (_v, r) => r.topic;
    case 'partition':
      return (_v, r) => r.partition;
    case 'offset':
      return (_v, r) => r.offset;
  }
}

function walk(value: unknown, pointer: readonly string[]): unknown {
  let x = value;
  for (const t of pointer) {
    if (!isObject(x) && !Array.isArray(x)) return undefined;
    x = (x as Record<string, unknown>)[t];
  }
  return x;
}

/** CREATE TABLE IF NOT EXISTS for the columns ($TABLE is the table's quoted name), with the key as primary key. */
export function createTableSql(columns: readonly Column[], key: readonly string[], quote: (name: string) => string): string {
  const defs = columns.map((c) => `  ${quote(c.name)} ${c.type}${c.nullable && !key.includes(c.name) ? '' : ' NOT NULL'}`);
  if (key.length) defs.push(`  PRIMARY KEY (${key.map(quote).join(', ')})`);
  return `CREATE TABLE IF NOT EXISTS $TABLE (\n${defs.join(',\n')})`;
}

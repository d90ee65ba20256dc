import path from 'node:path';
import { projectRoot } from '../local/paths.ts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import { ConfigError } from '../errors.ts';

/**
 * A path the user gave, from where they ran the command: `npm run` starts its scripts in the package's folder and
 * says in INIT_CWD where it was run (a process started elsewhere may inherit an INIT_CWD that is not its own).
 */
export function userPath(file: string): string {
  const npmStarted = process.env.INIT_CWD !== undefined && path.resolve(process.cwd()) === projectRoot;
  return path.resolve(npmStarted ? process.env.INIT_CWD! : process.cwd(), file);
}

export type OptionType = 'int' | 'number' | 'string' | 'bool' | 'list';

export interface OptionSpec {
  name: string;
  type: OptionType;
  help: string;
  default?: string | number | boolean;
  min?: number;
  max?: number;
  /** For 'string': the accepted values. */
  choices?: readonly string[];
  /** The value when the flag is given without one (`--describe` means `--describe=text`). */
  implicit?: string;
}

export type OptionValues = Record<string, string | number | boolean | string[] | undefined>;

/** The flags of the CLI itself, which every topology's values also hold. */
export const GLOBAL_OPTIONS = [
  { name: 'help', type: 'bool', help: 'show this help' },
  { name: 'list', type: 'bool', help: 'list the topologies' },
  { name: 'describe', type: 'string', implicit: 'text', choices: ['text', 'mermaid'], help: 'print the topology (sources, stages, stores, sinks, topics, tables) and exit; --describe=mermaid for a Mermaid flowchart' },
  { name: 'kafka', type: 'list', help: 'a librdkafka property passed through, key=value (repeatable; also KAFKA_CONFIG="k=v;k=v")' },
  { name: 'metrics-port', type: 'int', min: 0, max: 65535, help: 'port of /metrics, /healthz and /readyz; 0 = off (env METRICS_PORT, default 9464)' },
  { name: 'metrics-host', type: 'string', help: 'address the metrics server binds to (env METRICS_HOST, default 127.0.0.1)' },
] as const satisfies readonly OptionSpec[];

type ValueOf<S extends OptionSpec> = S['type'] extends 'int' | 'number' ? number
  : S['type'] extends 'bool' ? boolean
  : S['type'] extends 'list' ? string[]
  : S extends { choices: readonly (infer C)[] } ? C : string;

/**
 * The values a list of option specs gives, typed: `{ 'batch-size': number; 'dlq-topic': string | undefined; ... }`.
 * An option with a default always has a value; one without may be undefined.
 */
export type OptionsOf<S extends readonly OptionSpec[]> = {
  [K in S[number] as K['name']]: K extends { default: string | number | boolean } ? ValueOf<K> : ValueOf<K> | undefined;
};

/** The JSON Schema the values of these specs satisfy: what options() checks them against. */
export function optionsSchema(specs: readonly OptionSpec[]): object {
  const properties: Record<string, object> = {};
  for (const s of specs) {
    const range = { ...(s.min === undefined ? {} : { minimum: s.min }), ...(s.max === undefined ? {} : { maximum: s.max }) };
    properties[s.name] = s.type === 'int' ? { type: 'integer', ...range }
      : s.type === 'number' ? { type: 'number', ...range }
        : s.type === 'bool' ? { type: 'boolean' }
          : s.type === 'list' ? { type: 'array', items: { type: 'string' } }
            : { type: 'string', minLength: 1, ...(s.choices ? { enum: [...s.choices] } : {}) };
  }
  return { type: 'object', properties, required: specs.filter((s) => s.default !== undefined).map((s) => s.name) };
}

/**
 * Compiles the specs' schema once (ajv) into a check that gives the values typed, or a ConfigError naming the flag:
 * what a topology's own code reads its options through, with no cast. It compiles on its first call: every
 * topology module defines its options when it is loaded, and the CLI loads them all (compiling them there was a
 * third of a second of every start).
 */
export function options<const S extends readonly OptionSpec[]>(specs: S): (values: OptionValues) => OptionsOf<S> {
  let compiled: ValidateFunction<OptionsOf<S>> | undefined;
  return (values) => {
    const check = compiled ??= new Ajv2020({ strict: true, allErrors: false }).compile<OptionsOf<S>>(optionsSchema(specs));
    if (check(values)) return values;
    const e = check.errors?.[0];
    const flag = e?.instancePath ? `--${e.instancePath.slice(1).replace(/~1/g, '/').replace(/~0/g, '~')}` : e?.params && 'missingProperty' in e.params ? `--${String(e.params.missingProperty)}` : 'options';
    throw new ConfigError(`${flag}: ${e?.message ?? 'invalid'}`);
  };
}

export interface ParsedArgs {
  names: string[];
  values: OptionValues;
  /** Flags as given, for telling which topologies a flag was meant for. */
  given: Set<string>;
}

/**
 * Parses `<name>... --flag value --flag=value --bool` against the union of the specs. Every problem is a
 * ConfigError whose message is the one line the user sees before exit code 2.
 */
export function parseArgs(argv: string[], specs: OptionSpec[]): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const names: string[] = [];
  const values: OptionValues = {};
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      if (given.size) throw new ConfigError(`unexpected argument "${arg}": topology names come before flags`);
      names.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new ConfigError(`unknown flag --${name}${suggest(name, [...byName.keys()])}`);
    let raw: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (spec.type === 'bool') {
      if (raw !== undefined && !['true', 'false'].includes(raw)) throw new ConfigError(`--${name}: expected true or false, got "${raw}"`);
      values[name] = raw !== 'false';
    } else {
      if (raw === undefined && spec.implicit !== undefined) {
        raw = spec.implicit;
      } else if (raw === undefined) {
        raw = argv[++i];
        if (raw === undefined || (raw.startsWith('--') && spec.type !== 'number' && spec.type !== 'int')) {
          throw new ConfigError(`--${name} needs a value`);
        }
      }
      const value = convert(spec, raw);
      if (spec.type === 'list') values[name] = [...((values[name] as string[] | undefined) ?? []), value as string];
      else values[name] = value;
    }
    given.add(name);
  }
  for (const s of specs) if (values[s.name] === undefined && s.default !== undefined) values[s.name] = s.default;
  return { names, values, given };
}

export function convert(spec: OptionSpec, raw: string): string | number | boolean {
  const flag = `--${spec.name}`;
  if (spec.type === 'int' || spec.type === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || (spec.type === 'int' && !Number.isInteger(n))) {
      throw new ConfigError(`${flag}: expected ${spec.type === 'int' ? 'an integer' : 'a number'}, got "${raw}"`);
    }
    if (spec.min !== undefined && n < spec.min) throw new ConfigError(`${flag}: must be at least ${spec.min}, got ${raw}`);
    if (spec.max !== undefined && n > spec.max) throw new ConfigError(`${flag}: must be at most ${spec.max}, got ${raw}`);
    return n;
  }
  if (spec.choices && !spec.choices.includes(raw)) throw new ConfigError(`${flag}: expected one of ${spec.choices.join(', ')}, got "${raw}"`);
  if (spec.type === 'string' && raw === '') throw new ConfigError(`${flag}: must not be empty`);
  return raw;
}

/** An environment variable as an option value, with the same checks as a flag. */
export function fromEnv(spec: OptionSpec, env: NodeJS.ProcessEnv, variable: string): string | number | boolean | undefined {
  const raw = env[variable];
  if (raw === undefined || raw === '') return undefined;
  try {
    return convert(spec, raw);
  } catch (err) {
    throw new ConfigError((err as Error).message.replace(`--${spec.name}`, variable));
  }
}

function suggest(name: string, known: string[]): string {
  const close = known.find((k) => k.startsWith(name.slice(0, 3)) || name.startsWith(k.slice(0, 3)));
  return close ? ` (did you mean --${close}?)` : '';
}

export function helpText(specs: OptionSpec[]): string {
  return specs.map((s) => {
    const arg = s.type === 'bool' ? '' : ` <${s.type === 'list' ? 'value' : s.type}>`;
    const def = s.default !== undefined ? ` (default ${s.default})` : '';
    return `  --${s.name}${arg}`.padEnd(30) + ` ${s.help}${def}`;
  }).join('\n');
}

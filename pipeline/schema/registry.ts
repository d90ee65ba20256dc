import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { ConfigError, errorMessage, PipelineError, type DeadLetterReason } from '../errors.ts';
import { compileSchema, type Validator } from './validator.ts';
import { decodeWireFormat, encodeWireFormat } from './wire-format.ts';

/** Set to a Confluent-compatible Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, Karapace, Redpanda). */
export const REGISTRY_ENV = 'SCHEMA_REGISTRY_URL';

/**
 * How long a batch waits for a registry that does not answer before the pipeline stops with an error, rather than
 * wait forever or dead-letter records that are not at fault (SCHEMA_REGISTRY_RETRY_MS, default 60 s).
 */
export function registryGiveUpMs(env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env.SCHEMA_REGISTRY_RETRY_MS ?? 60_000);
  return Number.isFinite(ms) && ms >= 0 ? ms : 60_000;
}

export function registryUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = env[REGISTRY_ENV]?.trim();
  return url ? url.replace(/\/+$/, '') : undefined;
}

/** Confluent's subject naming strategy TopicNameStrategy: the value schema of topic T lives under "T-value". */
export const valueSubject = (topic: string) => `${topic}-value`;

type JsonSchemaInstance = { isValid(payload: object, opts: { errorHook: (path: string[], message: unknown) => void }): boolean };
type RegistryOptions = Extract<NonNullable<ConstructorParameters<typeof SchemaRegistry>[1]>, { JSON?: unknown }>;
type AjvLike = NonNullable<RegistryOptions['JSON']>;

/**
 * The registry's client library, loaded when a registry is first used: with avsc and protobufjs it is ~90 modules,
 * a tenth of a second of every start of a topology that has no registry.
 */
let lib: typeof import('@kafkajs/confluent-schema-registry') | undefined;
const registryLib = () => (lib ??= createRequire(import.meta.url)('@kafkajs/confluent-schema-registry') as typeof import('@kafkajs/confluent-schema-registry'));

/**
 * The registry through @kafkajs/confluent-schema-registry (its REST client, retries and per-id cache), with the
 * schemas compiled by this project's ajv (draft 2020-12, exact decimal multipleOf) instead of the library's own.
 * A fetched schema is compiled without its $id (the registry id is its identity, and two versions of one schema
 * usually share a $id) and without its $schema: it is read as draft 2020-12, the dialect of this project's schemas.
 */
export class SchemaRegistryClient {
  private readonly registry: SchemaRegistry;
  private readonly latest = new Map<string, Promise<number | undefined>>();

  constructor(readonly url: string) {
    const ajvInstance = {
      addSchema: () => { throw new PipelineError('SCHEMA_REFERENCES', 'JSON schemas with references are not supported'); },
      compile: (schema: Record<string, unknown>) => {
        const { $id: _, $schema: __, ...rest } = schema;
        const validate = compileSchema<unknown>(rest);
        // The library reads ajv's `errors`; ours are already a readable sentence.
        const fn = (value: unknown) => validate(value);
        Object.defineProperty(fn, 'errors', { get: () => [{ instancePath: '', message: validate.errorText() }] });
        return fn;
      },
    };
    const { SchemaRegistry, SchemaType } = registryLib();
    this.registry = new SchemaRegistry({ host: url, clientId: 'orders-pipeline', retry: { retries: 3 } },
      { [SchemaType.JSON]: { ajvInstance: ajvInstance as unknown as AjvLike['ajvInstance'] } });
  }

  /**
   * Registers (or finds, when the same schema is already there) the JSON Schema under the subject; its id. The
   * schema goes without its `$schema`: registries check compatibility with JSON Schema engines of their own, and
   * Apicurio 2.6's knows drafts 4 to 7 only (a 2020-12 schema under a compatibility rule fails with "could not
   * determine version"). The consumer validates a fetched schema as draft 2020-12 whatever it says (validator()).
   */
  async register(subject: string, schema: object): Promise<number> {
    const { $schema: _, ...registered } = schema as Record<string, unknown>;
    try {
      const { id } = await this.registry.register({ type: registryLib().SchemaType.JSON, schema: JSON.stringify(registered) }, { subject });
      return id;
    } catch (err) {
      throw registryError(`registering the schema under ${subject} at ${this.url}`, err);
    }
  }

  /** The id of the subject's latest version, fetched once; undefined when the subject has none. */
  latestId(subject: string): Promise<number | undefined> {
    let p = this.latest.get(subject);
    if (!p) {
      p = this.registry.getLatestSchemaId(subject).catch(async (err: unknown) => {
        const what = `fetching the latest schema of ${subject} from ${this.url}`;
        if (status(err) === 404 && await this.confirm404(`/subjects/${encodeURIComponent(subject)}/versions/latest`, [40401, 40402], what)) return undefined;
        this.latest.delete(subject);
        throw registryError(what, err);
      });
      this.latest.set(subject, p);
    }
    return p;
  }

  /**
   * The validator of a schema id, fetched once (the library caches it, and joins concurrent requests). An id the
   * registry does not know is a record error (UnknownSchemaError), anything else a retriable one.
   */
  async validator(id: number): Promise<Validator<unknown>> {
    let schema: JsonSchemaInstance;
    try {
      schema = (await this.registry.getSchema(id)) as unknown as JsonSchemaInstance;
    } catch (err) {
      const what = `fetching schema ${id} from ${this.url}`;
      if (status(err) === 404 && await this.confirm404(`/schemas/ids/${id}`, [40403], what)) throw new UnknownSchemaError(id);
      throw registryError(what, err);
    }
    let message = '';
    const validate = ((value: unknown) => {
      message = '';
      return schema.isValid(value as object, { errorHook: (_path, m) => { message ||= String(m); } });
    }) as Validator<unknown>;
    validate.errorText = () => message || 'invalid';
    return validate;
  }

  /** The latest version of a subject's schema, as a JSON Schema object (the connector's schema by subject). */
  async latestSchema(subject: string): Promise<{ id: number; version: number; schema: object }> {
    const what = `fetching the latest schema of subject ${subject} from ${this.url}`;
    let res: Response;
    try {
      res = await fetch(`${this.url}/subjects/${encodeURIComponent(subject)}/versions/latest`, { headers: { accept: 'application/vnd.schemaregistry.v1+json' }, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      throw registryError(what, err);
    }
    if (res.status === 404 && await this.confirm404(`/subjects/${encodeURIComponent(subject)}/versions/latest`, [40401, 40402], what)) {
      throw new ConfigError(`subject ${subject} has no schema in the registry at ${this.url}: register one first`);
    }
    if (!res.ok) throw registryError(what, Object.assign(new Error(`HTTP ${res.status}`), { status: res.status }));
    const body = (await res.json()) as { id: number; version: number; schema: string };
    return { id: body.id, version: body.version, schema: JSON.parse(body.schema) as object };
  }

  /**
   * A 404 means "no such schema" only with the registry's own error_code in the body (Confluent's API, which Apicurio
   * and Karapace serve too): the client library keeps only the status, so the path is asked again for the body. Any
   * other 404 is a URL that is not a registry's API, which no record is to blame for: that throws.
   */
  private async confirm404(path: string, codes: number[], what: string): Promise<boolean> {
    let code: unknown;
    try {
      const res = await fetch(`${this.url}${path}`, { headers: { accept: 'application/vnd.schemaregistry.v1+json' }, signal: AbortSignal.timeout(10_000) });
      if (res.status !== 404) return false;
      code = ((await res.json()) as { error_code?: unknown }).error_code;
    } catch {
      return false;
    }
    if (typeof code === 'number' && codes.includes(code)) return true;
    throw new PipelineError('SCHEMA_REGISTRY', `${what} failed: HTTP 404 without a registry error code (${codes.join(' or ')}): `
      + `is ${REGISTRY_ENV} the registry's Confluent-compatible API? (for Apicurio it ends in /apis/ccompat/v7)`);
  }
}

export class UnknownSchemaError extends PipelineError {
  constructor(readonly schemaId: number) {
    super('SCHEMA_UNKNOWN', `the registry has no schema with id ${schemaId}`);
  }
}

function status(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | undefined)?.status;
  return typeof s === 'number' ? s : undefined;
}

function registryError(what: string, err: unknown): PipelineError {
  const s = status(err);
  if (s === 409) {
    return new PipelineError('SCHEMA_INCOMPATIBLE', `${what}: the registry refused it as incompatible with the subject's earlier versions `
      + `under its compatibility level (HTTP 409: ${errorMessage(err).replace(/^[^-]*- /, '')})`, { cause: err });
  }
  // 4xx other than 408/429 is the registry refusing (bad schema, incompatible): waiting does not help. The HTTP
  // client reports a refused or broken connection as status 400 too, so those are told apart by their message.
  const network = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|socket hang up|timeout/i.test(errorMessage(err));
  const retriable = network || s === undefined || s >= 500 || s === 408 || s === 429;
  return new PipelineError('SCHEMA_REGISTRY', `${what} failed: ${errorMessage(err)}`, { retriable, cause: err });
}

/**
 * Turns values into message bytes: plain JSON without a registry; with one, the schema is registered under
 * "<topic>-value" at start and every value is written in the Confluent wire format with its id.
 */
export interface ValueSerializer {
  readonly schemaId: number | undefined;
  /** JSON text (already serialized, possibly deliberately broken by a generator) to message bytes. */
  encode(json: string): Buffer;
}

export async function valueSerializer(topic: string, schema: object, registry: SchemaRegistryClient | undefined): Promise<ValueSerializer> {
  if (!registry) return { schemaId: undefined, encode: (json) => Buffer.from(json) };
  const id = await registry.register(valueSubject(topic), schema);
  return { schemaId: id, encode: (json) => encodeWireFormat(id, Buffer.from(json)) };
}

export type Decoded<T> = { ok: true; value: T; schemaId: number | undefined } | { ok: false; reason: DeadLetterReason; message: string };

/**
 * Message bytes to a validated value. A wire-format message is validated against the schema its id names (from
 * the registry; without one, against the local schema). A plain JSON message is validated against the subject's
 * latest version when a registry is set and has one (as the original consumer.py did), else the local schema.
 * Failures of the record are returned; a registry that cannot be reached throws (retriable).
 */
export class JsonDeserializer<T> {
  constructor(private readonly local: Validator<T>, private readonly registry: SchemaRegistryClient | undefined, private readonly subject: string) {}

  async decode(raw: Buffer | null): Promise<Decoded<T>> {
    if (raw === null) return { ok: false, reason: 'tombstone', message: 'the message has no value (tombstone)' };
    const wire = decodeWireFormat(raw);
    const payload = wire ? wire.payload : raw;
    let validate: Validator<unknown> = this.local;
    let schemaId = wire?.schemaId;
    if (this.registry) {
      schemaId ??= await this.registry.latestId(this.subject);
      if (schemaId !== undefined) {
        try {
          validate = await this.registry.validator(schemaId);
        } catch (err) {
          if (err instanceof UnknownSchemaError) return { ok: false, reason: 'unknown-schema', message: err.message };
          throw err;
        }
      }
    }
    if (!isUtf8(payload)) return { ok: false, reason: 'invalid-utf8', message: 'the message value is not valid UTF-8' };
    let value: unknown;
    try {
      value = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      return { ok: false, reason: 'malformed-json', message: errorMessage(err) };
    }
    if (!validate(value)) return { ok: false, reason: 'schema', message: validate.errorText() };
    return { ok: true, value: value as T, schemaId };
  }
}

export function registryFromEnv(env: NodeJS.ProcessEnv = process.env): SchemaRegistryClient | undefined {
  const url = registryUrl(env);
  return url ? new SchemaRegistryClient(url) : undefined;
}

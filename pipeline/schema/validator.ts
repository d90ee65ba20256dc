import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { projectRoot } from '../local/paths.ts';
import { isMultipleOf } from './decimal.ts';
import { dateTimeBytes, FAST_DATE_TIME, uuidBytes, type BytesCheck } from './format-bytes.ts';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

/** A compiled schema: the check, the first error's text after a failed check, and the JSON Schema it came from when known. */
export type Validator<T> = ((value: unknown) => value is T) & { errorText(): string; readonly schema?: object };

/**
 * One Ajv instance for the process: schemas are compiled once, at start. `multipleOf` is replaced by an exact
 * decimal implementation so that a price of 0.07 or 1.1 is valid with multipleOf 0.01 (see decimal.ts).
 */
let ajv: Ajv2020 | undefined;
function instance(): Ajv2020 {
  if (ajv) return ajv;
  ajv = new Ajv2020({ allErrors: false, strict: true, allowUnionTypes: true });
  addFormats(ajv, { mode: 'fast', formats: ['uuid', 'date-time', 'date', 'time', 'email', 'uri'] });
  // The same grammar as ajv-formats' uuid regex, checked a character at a time: a third of validation's time went there.
  ajv.addFormat('uuid', { type: 'string', validate: isUuid });
  ajv.removeKeyword('multipleOf');
  ajv.addKeyword({
    keyword: 'multipleOf',
    type: 'number',
    schemaType: 'number',
    errors: false,
    validate: (step: number, data: number) => isMultipleOf(data, step),
  });
  return ajv;
}

/** ajv-formats' uuid: /^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i */
export function isUuid(s: string): boolean {
  let at = 0;
  if (s.length === 45) {
    if (s.slice(0, 9).toLowerCase() !== 'urn:uuid:') return false;
    at = 9;
  } else if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(at + i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45) return false; // '-'
    } else if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) return false; // 0-9 a-f A-F
  }
  return true;
}

/**
 * A format's check as this process's ajv runs it, on ASCII bytes in place (for the direct reader, codec/json-rows.ts),
 * or undefined when ajv has none. uuid and date-time run on the bytes when ajv's check is the one format-bytes.ts
 * mirrors; any other format is checked on the string, by ajv's own function.
 */
export function formatCheck(name: string): BytesCheck | undefined {
  const f = instance().formats[name];
  const check = typeof f === 'object' && !(f instanceof RegExp) ? f.validate : f;
  if (check === isUuid) return uuidBytes;
  if (check instanceof RegExp && check.source === FAST_DATE_TIME.source && check.flags === FAST_DATE_TIME.flags) return dateTimeBytes;
  const latin1 = (b: Uint8Array, start: number, end: number) => Buffer.prototype.latin1Slice.call(b, start, end) as string;
  if (check instanceof RegExp) return (b, start, end) => check.test(latin1(b, start, end));
  if (typeof check === 'function') return (b, start, end) => (check as (s: string) => boolean)(latin1(b, start, end));
  return undefined;
}

function describe(errors: ErrorObject[] | null | undefined): string {
  if (!errors?.length) return 'invalid';
  const e = errors[0];
  const at = e.instancePath || '/';
  if (e.keyword === 'additionalProperties') return `${at} has unexpected property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  if (e.keyword === 'required') return `${at} is missing required property "${(e.params as { missingProperty: string }).missingProperty}"`;
  if (e.keyword === 'multipleOf') return `${at} is not a multiple of the schema's step, decided in decimal (a price has at most two decimals)`;
  return `${at} ${e.message ?? 'is invalid'}`;
}

export function compileSchema<T>(schema: object): Validator<T> {
  const key = (schema as { $id?: string }).$id;
  const existing = key ? instance().getSchema(key) : undefined;
  const fn = (existing ?? instance().compile(schema)) as ValidateFunction<T>;
  return Object.assign((value: unknown) => fn(value), { errorText: () => describe(fn.errors), schema }) as Validator<T>;
}

export function loadSchema(name: string): object {
  return JSON.parse(readFileSync(path.join(projectRoot, 'schemas', `${name}.schema.json`), 'utf8')) as object;
}

export interface Order {
  order_id: string;
  order_number: number;
  product: string;
  quantity: number;
  price: number;
  ordered_at: string;
}

export const orderSchema = () => loadSchema('order');
export const validateOrder = (): Validator<Order> => compileSchema<Order>(orderSchema());

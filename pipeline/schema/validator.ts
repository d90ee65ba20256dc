import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { projectRoot } from '../local/paths.ts';
import { isMultipleOf } from './decimal.ts';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

export type Validator<T> = ((value: unknown) => value is T) & { errorText(): string };

/**
 * One Ajv instance for the process: schemas are compiled once, at start. `multipleOf` is replaced by an exact
 * decimal implementation so that a price of 0.07 or 1.1 is valid with multipleOf 0.01 (see decimal.ts).
 */
let ajv: Ajv2020 | undefined;
function instance(): Ajv2020 {
  if (ajv) return ajv;
  ajv = new Ajv2020({ allErrors: false, strict: true, allowUnionTypes: true });
  addFormats(ajv, { mode: 'fast', formats: ['uuid', 'date-time', 'date', 'time', 'email', 'uri'] });
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
  const validate = ((value: unknown) => fn(value)) as Validator<T>;
  validate.errorText = () => describe(fn.errors);
  return validate;
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

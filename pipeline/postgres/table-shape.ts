import { ConfigError } from '../errors.ts';
import type pgPromise from 'pg-promise';
import { pgp } from './db.ts';

/** The columns a sink writes, with their types as Postgres' format_type() spells them. */
export interface TableShape {
  columns: { name: string; type: string }[];
  /** Add a missing column (NULL-able); refuse a column whose type differs. Otherwise a missing column is an error. */
  autoEvolve: boolean;
}

/**
 * Checks a table against the columns a sink will write, at setup, before any row: with auto-evolve, a column the
 * table lacks is added as NULL-able, and a column whose type changed is refused (changing it is not safe to do
 * unasked); without it, a missing column is refused. Either way the error names the table and the column.
 */
export async function checkTableShape(db: pgPromise.IBaseProtocol<unknown>, table: string, label: string, shape: TableShape): Promise<string[]> {
  const rows = await db.any<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, [table]);
  if (!rows.length) throw new ConfigError(`table ${label} does not exist: create it, or set "autoCreate": true`);
  const have = new Map(rows.map((r) => [r.name, r.type]));
  const missing = shape.columns.filter((c) => !have.has(c.name));
  if (!shape.autoEvolve) {
    if (missing.length) throw new ConfigError(`table ${label} has no column ${missing.map((c) => `${c.name} (${c.type})`).join(', ')}, which the schema gives: add it, or set "autoEvolve": true`);
    return [];
  }
  for (const c of shape.columns) {
    const type = have.get(c.name);
    if (type !== undefined && type !== c.type) {
      throw new ConfigError(`column ${c.name} of table ${label} is ${type}, and the schema now makes it ${c.type}: auto-evolve only adds columns; change the column yourself if the change is safe`);
    }
  }
  for (const c of missing) await db.none(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${pgp.as.name(c.name)} ${c.type}`);
  return missing.map((c) => c.name);
}

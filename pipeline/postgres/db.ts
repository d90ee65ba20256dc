import pgPromise from 'pg-promise';
import { ConfigError } from '../errors.ts';

export const pgp = pgPromise({ capSQL: true });
export type Database = ReturnType<typeof pgp>;
export type Connection = Awaited<ReturnType<Database['connect']>>;

/** Connection pools by URL, shared by the topologies of one process. */
const pools = new Map<string, Database>();

export function database(url: string, max = 8): Database {
  let db = pools.get(url);
  if (!db) {
    db = pgp({ connectionString: url, max, application_name: 'orders-pipeline', keepAlive: true, connectionTimeoutMillis: 10_000 });
    pools.set(url, db);
  }
  return db;
}

export async function closeDatabases(): Promise<void> {
  for (const db of pools.values()) await db.$pool.end();
  pools.clear();
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * A table name from configuration, checked and quoted, so it can never carry SQL: `orders_data` or `schema.table`,
 * each part a plain identifier.
 */
export function tableName(name: string, flag = '--table'): string {
  const parts = name.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p))) {
    throw new ConfigError(`${flag}: "${name}" is not a valid table name (letters, digits and _, optionally schema.table)`);
  }
  return parts.map((p) => pgp.as.name(p)).join('.');
}

/** Connection-level failures: retry after the database is back. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string') {
    if (/^(08|57P|53)/.test(e.code)) return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH'].includes(e.code)) return true;
  }
  return /Connection terminated|connection is closed|Client has encountered a connection error|timeout exceeded when trying to connect|Querying against a released or lost connection/i.test(e?.message ?? '');
}

/** A value Postgres rejected (data exception or integrity violation): bisect the batch to isolate the row. */
export function isRowError(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return typeof code === 'string' && /^(22|23)/.test(code);
}

/** Masks the password of a connection URL for logs. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@').replace(/(password=)[^&\s]*/gi, '$1***');
}

/** Runs DDL once across concurrently starting processes. */
export async function withSetupLock(db: Database, fn: (t: pgPromise.ITask<unknown>) => Promise<void>): Promise<void> {
  await db.tx(async (t) => {
    await t.any("SELECT pg_advisory_xact_lock(hashtext('orders-pipeline-setup'))");
    await fn(t);
  });
}

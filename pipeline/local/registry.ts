import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { EnvironmentError } from '../errors.ts';
import { localRoot } from './paths.ts';
import { commandExists, portOpen, readPid, spawnDetached, stopPid, waitFor } from './process.ts';

/**
 * The embedded schema registry: Apicurio Registry, the ready-built distribution Maven Central has
 * (io.apicurio:apicurio-registry-app:<version>:zip:all), run with `java -jar` on loopback with in-memory storage.
 * It serves the Confluent Schema Registry API at /apis/ccompat/v7, which is what the pipeline speaks.
 */
export const REGISTRY_VERSION = '2.6.13.Final';
export const LOCAL_REGISTRY_PORT = Number(process.env.LOCAL_REGISTRY_PORT ?? 18081);
export const localRegistryUrl = () => `http://127.0.0.1:${LOCAL_REGISTRY_PORT}/apis/ccompat/v7`;

const dir = path.join(localRoot, 'registry');
const dist = path.join(dir, REGISTRY_VERSION);
const runner = path.join(dist, `apicurio-registry-app-${REGISTRY_VERSION}-runner.jar`);
const pidFile = path.join(dir, 'registry.pid');
export const registryLogFile = path.join(dir, 'registry.log');

/** Fetches the distribution with Maven and unpacks it into .local/registry, once. */
function fetchRegistry(log: (line: string) => void): void {
  if (fs.existsSync(path.join(dist, '.complete'))) return;
  if (!commandExists('mvn')) throw new EnvironmentError('Maven is needed once to fetch the schema registry (Apicurio) from Maven Central: install it (apt-get install maven), or set SCHEMA_REGISTRY_URL');
  log(`fetching Apicurio Registry ${REGISTRY_VERSION} from Maven Central into ${dist} (once)`);
  fs.mkdirSync(dist, { recursive: true });
  const res = spawnSync('mvn', ['-q', '-B', 'dependency:copy', `-Dartifact=io.apicurio:apicurio-registry-app:${REGISTRY_VERSION}:zip:all`,
    `-DoutputDirectory=${dir}`], { encoding: 'utf8', cwd: dir });
  const zip = path.join(dir, `apicurio-registry-app-${REGISTRY_VERSION}-all.zip`);
  if (res.status !== 0 || !fs.existsSync(zip)) {
    throw new EnvironmentError(`Maven could not fetch io.apicurio:apicurio-registry-app:${REGISTRY_VERSION}: ${(res.stdout + res.stderr).trim().split('\n').slice(-3).join(' ')}`);
  }
  // The JDK's jar tool unpacks a zip; unzip does too where the JDK is not whole.
  const unpack = commandExists('jar') ? spawnSync('jar', ['xf', zip], { cwd: dist, encoding: 'utf8' }) : spawnSync('unzip', ['-q', '-o', zip, '-d', dist], { encoding: 'utf8' });
  if (unpack.status !== 0 || !fs.existsSync(runner)) throw new EnvironmentError(`could not unpack ${zip} (needs the JDK's jar, or unzip): ${unpack.stderr ?? ''}`);
  fs.rmSync(zip, { force: true });
  fs.writeFileSync(path.join(dist, '.complete'), new Date().toISOString());
}

async function answers(): Promise<boolean> {
  try {
    const res = await fetch(`${localRegistryUrl()}/subjects`, { signal: AbortSignal.timeout(2_000) });
    return res.ok;
  } catch {
    return false;
  }
}

export async function registryStatus(): Promise<{ running: boolean; pid?: number; port: number; url: string }> {
  const pid = readPid(pidFile);
  return { running: pid !== undefined && (await answers()), pid, port: LOCAL_REGISTRY_PORT, url: localRegistryUrl() };
}

export async function startRegistry(log: (line: string) => void): Promise<void> {
  if ((await registryStatus()).running) return;
  if (readPid(pidFile) !== undefined) {
    await waitFor('the schema registry', answers, 120_000, registryLogFile);
    return;
  }
  if (await portOpen(LOCAL_REGISTRY_PORT)) {
    throw new EnvironmentError(`port ${LOCAL_REGISTRY_PORT} is taken by a process that is not the embedded registry: stop it, or set LOCAL_REGISTRY_PORT, or set SCHEMA_REGISTRY_URL to use it`);
  }
  if (!commandExists('java')) throw new EnvironmentError('Java 17+ is needed for the embedded schema registry: install it, or set SCHEMA_REGISTRY_URL');
  fetchRegistry(log);
  log(`starting Apicurio Registry ${REGISTRY_VERSION} (in-memory) on 127.0.0.1:${LOCAL_REGISTRY_PORT}`);
  const pid = spawnDetached('java', ['-Xms64m', '-Xmx384m', '-jar', runner], registryLogFile, {
    cwd: dist, env: { ...process.env, QUARKUS_HTTP_HOST: '127.0.0.1', QUARKUS_HTTP_PORT: String(LOCAL_REGISTRY_PORT) },
  });
  fs.writeFileSync(pidFile, `${pid}\n`);
  await waitFor('the schema registry', answers, 120_000, registryLogFile);
}

export async function stopRegistry(): Promise<void> {
  const pid = readPid(pidFile);
  if (pid !== undefined) await stopPid(pid, 30_000);
  fs.rmSync(pidFile, { force: true });
}

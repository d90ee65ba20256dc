import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { localRoot } from '../../pipeline/index.ts';

/** What the anchors are fetched into: an ignored cache, filled with Maven on first use. */
export const anchorsDir = path.join(localRoot, 'anchors');

export interface Artifact {
  group: string;
  artifact: string;
  version: string;
}

function mvn(args: string[], what: string): void {
  const res = spawnSync('mvn', ['-q', '-B', ...args], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`Maven could not fetch ${what}: ${(res.stdout + res.stderr).trim().split('\n').slice(-4).join(' ')}`);
}

/**
 * The runtime jars of some artifacts and everything they depend on, in `.local/anchors/<name>/libs` (once: a
 * marker holds the hash of the dependency list, so a changed list is fetched again).
 */
export function fetchJars(name: string, deps: Artifact[], log: (line: string) => void): string {
  const dir = path.join(anchorsDir, name);
  const libs = path.join(dir, 'libs');
  const pom = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pipeline.anchors</groupId><artifactId>${name}</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
${deps.map((d) => `    <dependency><groupId>${d.group}</groupId><artifactId>${d.artifact}</artifactId><version>${d.version}</version></dependency>`).join('\n')}
  </dependencies>
</project>
`;
  const hash = crypto.createHash('sha256').update(pom).digest('hex').slice(0, 16);
  const marker = path.join(libs, '.complete');
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === hash) return libs;
  log(`fetching ${deps.map((d) => `${d.artifact}:${d.version}`).join(', ')} from Maven Central into ${libs} (once)`);
  fs.rmSync(libs, { recursive: true, force: true });
  fs.mkdirSync(libs, { recursive: true });
  fs.writeFileSync(path.join(dir, 'pom.xml'), pom);
  mvn(['-f', path.join(dir, 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${libs}`, '-DincludeScope=runtime'], name);
  fs.writeFileSync(marker, `${hash}\n`);
  return libs;
}

/** One archive (`group:artifact:version:type:classifier`), unpacked into `.local/anchors/<name>` (tar.gz), once. */
export function fetchArchive(name: string, coordinates: string, log: (line: string) => void): string {
  const dir = path.join(anchorsDir, name);
  const marker = path.join(dir, '.complete');
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === coordinates) return dir;
  log(`fetching ${coordinates} from Maven Central into ${dir} (once)`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  mvn(['dependency:copy', `-Dartifact=${coordinates}`, `-DoutputDirectory=${dir}`], coordinates);
  const archive = fs.readdirSync(dir).find((f) => f.endsWith('.tar.gz'));
  if (!archive) throw new Error(`${coordinates}: no .tar.gz in ${dir}`);
  const res = spawnSync('tar', ['xzf', archive], { cwd: dir, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`unpacking ${archive}: ${res.stderr}`);
  fs.rmSync(path.join(dir, archive));
  fs.writeFileSync(marker, `${coordinates}\n`);
  return dir;
}

/** Compiles Java sources against a classpath into `<dir>/classes`, when a source is newer than its classes. */
export function compileJava(dir: string, sources: string[], classpath: string): string {
  const classes = path.join(dir, 'classes');
  const stamp = path.join(classes, '.compiled');
  const newest = Math.max(...sources.map((s) => fs.statSync(s).mtimeMs));
  if (fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= newest) return classes;
  fs.mkdirSync(classes, { recursive: true });
  const res = spawnSync('javac', ['-nowarn', '-cp', classpath, '-d', classes, ...sources], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`javac failed (a JDK is needed for the anchors: apt-get install openjdk-17-jdk-headless): ${(res.stdout + res.stderr).trim().split('\n').slice(0, 6).join(' ')}`);
  fs.writeFileSync(stamp, new Date().toISOString());
  return classes;
}

// node-rdkafka as this project needs it, in two steps of `npm ci`:
//
// prepare (the preinstall of scripts/native, a dependency of its own: npm runs every dependency's preinstall before
// any dependency's install, so this runs after node-rdkafka is unpacked and before its install compiles librdkafka):
//   1. zstd: librdkafka builds a codec in only when its library is there at build time, and a fresh machine has
//      libzstd's runtime but not its headers. zstd's C sources come from a package on the npm registry (pinned, its
//      integrity checked) and are compiled into a static, position-independent libzstd.a inside node-rdkafka's tree.
//   2. patches/node-rdkafka-codecs.patch: librdkafka's configure requires zlib, zstd and OpenSSL (so a build that
//      lacks one fails instead of quietly leaving it out) and finds the libzstd.a above.
//   3. patches/node-rdkafka-packed.patch: packed reads and writes (consumePacked, producePacked; README: Performance).
//   node-rdkafka's own install then builds all of it once.
//
// check (postinstall of the project): the binding has the packed methods and every feature the topologies need
// (REQUIRED_FEATURES). On a tree where the patches changed after node-rdkafka was built (`npm install` over an old
// node_modules), it takes the old patch out, puts the new one in and rebuilds what changed; anything still missing
// stops the install with one line naming it.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rdkafka = join(root, 'node_modules', 'node-rdkafka');
const NODE_RDKAFKA_VERSION = '3.6.1';

/** What librdkafka must have built in: every codec a producer may use, and TLS with SASL/SCRAM. */
export const REQUIRED_FEATURES = ['gzip', 'snappy', 'lz4', 'zstd', 'ssl', 'sasl_scram'];

/** zstd's C sources, as a package on the npm registry ships them (deps/zstd/lib), pinned by integrity. */
const ZSTD_SOURCES = {
  spec: 'zstd-napi@0.0.13',
  integrity: 'sha512-ErGF+Ko1PsbooU6oC/sc/diiWKwVa0kd/5AkFSs7kg5kwcEuOtSzOy3xUOadXQlAVNab9TxsxaUk3hOq3cj/lA==',
};

const PATCHES = [
  { file: 'node-rdkafka-codecs.patch', stamp: '.codecs.patch', applied: () => read('configure').includes('--enable-zstd'), rebuilds: 'librdkafka' },
  { file: 'node-rdkafka-packed.patch', stamp: '.packed.patch', applied: () => read('src/producer.cc').includes('NodeProducePacked'), rebuilds: 'binding' },
];

function read(file) {
  return readFileSync(join(rdkafka, file), 'utf8');
}

function fail(message) {
  console.error(`node-rdkafka: ${message}`);
  process.exit(1);
}

function log(message) {
  console.log(`node-rdkafka: ${message}`);
}

function checkVersion() {
  if (!existsSync(join(rdkafka, 'package.json'))) fail(`${rdkafka} is missing: run npm ci`);
  const { version } = JSON.parse(read('package.json'));
  if (version.replace(/^v/, '') !== NODE_RDKAFKA_VERSION) fail(`the patches are for node-rdkafka ${NODE_RDKAFKA_VERSION}, this is ${version}: update patches/`);
}

/**
 * Puts each patch in, taking out an earlier version of it first (kept beside the sources as its stamp). Returns
 * what has to be rebuilt: 'librdkafka' (configure changed) and/or 'binding' (the C++ sources changed).
 */
function applyPatches() {
  const rebuild = new Set();
  const run = (args) => spawnSync('patch', ['-p1', '--silent', '-d', rdkafka, ...args], { encoding: 'utf8' });
  for (const p of PATCHES) {
    const patch = join(root, 'patches', p.file);
    const wanted = readFileSync(patch, 'utf8');
    const stamp = join(rdkafka, p.stamp);
    if (p.applied()) {
      const applied = existsSync(stamp) ? readFileSync(stamp, 'utf8') : undefined;
      if (applied === undefined) {
        // Applied before stamps were kept: fine if it is this patch (it would come out cleanly).
        if (run(['-R', '--dry-run', '-i', patch]).status !== 0) fail(`${rdkafka} holds another version of ${p.file}: reinstall (rm -rf node_modules && npm ci)`);
        writeFileSync(stamp, wanted);
      } else if (applied !== wanted) {
        const r = run(['-R', '-i', stamp]);
        if (r.status !== 0) fail(`could not take out the earlier version of ${p.file}:\n${r.stdout}${r.stderr}`);
        log(`took out the earlier version of ${p.file}`);
      }
    }
    if (!p.applied()) {
      const r = run(['--forward', '-i', patch]);
      if (r.status !== 0) fail(`${p.file} failed:\n${r.stdout}${r.stderr}`);
      writeFileSync(stamp, wanted);
      log(`applied patches/${p.file}`);
      rebuild.add(p.rebuilds);
    }
  }
  return rebuild;
}

/** Fetches zstd's sources with npm (the registry npm ci uses) and checks them against the pinned integrity. */
function fetchZstdSources(work) {
  const r = spawnSync('npm', ['pack', ZSTD_SOURCES.spec, '--pack-destination', work, '--json', '--silent'], { encoding: 'utf8', cwd: work });
  if (r.status !== 0) fail(`could not fetch zstd's sources (npm pack ${ZSTD_SOURCES.spec}): ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
  const tarball = join(work, JSON.parse(r.stdout)[0].filename);
  const digest = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  if (digest !== ZSTD_SOURCES.integrity) fail(`${basename(tarball)} does not match its pinned integrity (${digest})`);
  const x = spawnSync('tar', ['xzf', tarball, '-C', work, 'package/deps/zstd/lib'], { encoding: 'utf8' });
  if (x.status !== 0) fail(`could not unpack ${basename(tarball)}: ${x.stderr}`);
  return join(work, 'package', 'deps', 'zstd', 'lib');
}

function sourcesOf(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourcesOf(p);
    return /\.(c|S)$/.test(e.name) ? [p] : [];
  });
}

/** Compiles `jobs` at a time; rejects on the first failure with the compiler's output. */
async function compileAll(commands, jobs) {
  const queue = [...commands];
  const worker = async () => {
    for (let args = queue.shift(); args; args = queue.shift()) {
      await new Promise((resolve, reject) => {
        const child = spawn('cc', args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (d) => { err += d; });
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cc ${args.join(' ')}\n${err}`))));
      });
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
}

/**
 * libzstd.a and its headers in node-rdkafka/deps/zstd, where the codecs patch points librdkafka's configure. Static
 * and position-independent, so it links into librdkafka.so; XXH_NAMESPACE as zstd's own Makefile sets it, since
 * librdkafka has an xxhash of its own.
 */
async function buildZstd() {
  const out = join(rdkafka, 'deps', 'zstd');
  if (existsSync(join(out, 'lib', 'libzstd.a'))) return;
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'zstd-'));
  try {
    const lib = fetchZstdSources(work);
    const objects = join(work, 'obj');
    mkdirSync(objects);
    const sources = sourcesOf(lib);
    const flags = ['-O2', '-fPIC', '-fvisibility=hidden', '-DXXH_NAMESPACE=ZSTD_', '-DZSTD_LEGACY_SUPPORT=0', `-I${lib}`, `-I${join(lib, 'common')}`];
    const commands = sources.map((s, i) => [...flags, '-c', s, '-o', join(objects, `${i}-${basename(s)}.o`)]);
    try {
      await compileAll(commands, availableParallelism());
    } catch (e) {
      fail(`could not compile zstd (a C compiler is needed, as for node-rdkafka itself): ${e.message.split('\n').slice(0, 4).join(' ')}`);
    }
    mkdirSync(join(out, 'lib'), { recursive: true });
    mkdirSync(join(out, 'include'), { recursive: true });
    const ar = spawnSync('ar', ['rcs', join(out, 'lib', 'libzstd.a'), ...readdirSync(objects).map((o) => join(objects, o))], { encoding: 'utf8' });
    if (ar.status !== 0) fail(`ar failed: ${ar.stderr}`);
    for (const h of ['zstd.h', 'zstd_errors.h', 'zdict.h']) copyFileSync(join(lib, h), join(out, 'include', h));
    log(`built zstd from ${ZSTD_SOURCES.spec}'s sources (${sources.length} files, ${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What the built binding has: its features, and whether the packed methods are there. */
function probe() {
  const code = `const K = require('node-rdkafka');
const c = new K.KafkaConsumer({ 'group.id': 'probe' }, {})._client;
const p = new K.Producer({})._client;
const packed = typeof c.consumePacked === 'function' && typeof p.producePacked === 'function' && typeof p.packedDeliveries === 'function';
process.stdout.write(JSON.stringify({ features: K.features, packed }));`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) return { features: [], packed: false, loads: false };
  return { ...JSON.parse(r.stdout), loads: true };
}

function make(dir, args, what) {
  const r = spawnSync('make', ['-C', dir, ...args, `-j${availableParallelism()}`], { encoding: 'utf8' });
  if (r.status !== 0) fail(`${what} failed:\n${(r.stdout + r.stderr).split('\n').slice(-20).join('\n')}`);
}

async function prepare() {
  checkVersion();
  await buildZstd();
  applyPatches();
}

async function check() {
  checkVersion();
  await buildZstd();
  const rebuild = applyPatches();
  let built = probe();
  const lacking = () => REQUIRED_FEATURES.filter((f) => !built.features.includes(f));
  if (built.loads && lacking().length) rebuild.add('librdkafka');
  if (built.loads && !built.packed) rebuild.add('binding');
  if (rebuild.size) {
    if (!existsSync(join(rdkafka, 'build', 'Makefile'))) fail(`node-rdkafka was not built from source (${rdkafka}/build/Makefile is missing): run npm ci with install scripts enabled`);
    if (rebuild.has('librdkafka')) {
      log('rebuilding librdkafka (a few minutes)');
      const c = spawnSync('./configure', [], { cwd: rdkafka, encoding: 'utf8' });
      if (c.status !== 0) fail(`librdkafka's configure failed:\n${(c.stdout + c.stderr).split('\n').slice(-20).join('\n')}`);
      make(join(rdkafka, 'deps', 'librdkafka'), ['libs', 'install'], 'building librdkafka');
    }
    make(join(rdkafka, 'build'), ['BUILDTYPE=Release'], 'building the binding');
    built = probe();
    log(`rebuilt ${[...rebuild].join(' and ')}`);
  }
  if (!built.loads) fail('the binding does not load: rm -rf node_modules && npm ci');
  if (!built.packed) fail('the binding lacks consumePacked or producePacked after patching');
  if (lacking().length) fail(`librdkafka was built without ${lacking().join(', ')}: rm -rf node_modules && npm ci (features: ${built.features.join(',')})`);
  log(`features: ${built.features.join(',')}`);
}

const step = process.argv[2];
if (step === 'prepare') await prepare();
else if (step === 'check') await check();
else fail('usage: node scripts/node-rdkafka.mjs prepare|check');

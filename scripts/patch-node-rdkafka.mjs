// postinstall: adds packed reads and writes to node-rdkafka (patches/node-rdkafka-packed.patch) and rebuilds only
// the binding (its C++ files and the link, ~15 s; librdkafka, built by node-rdkafka's own install, is untouched).
// - consumePacked: a poll's messages copied into one buffer on node-rdkafka's consume thread, instead of an object
//   and two Buffers each made on the main thread (KafkaSource.poll);
// - producePacked: a batch enqueued in one call, its delivery reports counted in C++ instead of an event each
//   (KafkaProducer.producePacked, the orders generator).
// Safe to run again; when the patch changes, the earlier version (kept as node_modules/node-rdkafka/.packed.patch) is
// taken out first.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const patch = join(root, 'patches', 'node-rdkafka-packed.patch');
const require = createRequire(join(root, 'package.json'));
const dir = dirname(require.resolve('node-rdkafka/package.json'));
const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));

function fail(message) {
  console.error(`patch-node-rdkafka: ${message}`);
  process.exit(1);
}

if (version !== 'v3.6.1' && version !== '3.6.1') fail(`the patch is for node-rdkafka 3.6.1, this is ${version}: update ${patch}`);
const probe = `const K = require('node-rdkafka');
const c = new K.KafkaConsumer({ 'group.id': 'probe' }, {})._client;
const p = new K.Producer({})._client;
process.exit(typeof c.consumePacked === 'function' && typeof p.producePacked === 'function' && typeof p.packedDeliveries === 'function' ? 0 : 1);`;
const hasPacked = () => spawnSync(process.execPath, ['-e', probe], { cwd: root, stdio: 'ignore' }).status === 0;

// The patch as applied, kept beside the sources: when the patch changes, the old one is taken out before the new one goes in.
const stamp = join(dir, '.packed.patch');
const wanted = readFileSync(patch, 'utf8');
const run = (args) => spawnSync('patch', ['-p1', '--silent', '-d', dir, ...args], { encoding: 'utf8' });
const isApplied = () => readFileSync(join(dir, 'src', 'producer.cc'), 'utf8').includes('NodeProducePacked');
let rebuild = !hasPacked();
if (isApplied()) {
  const applied = existsSync(stamp) ? readFileSync(stamp, 'utf8') : undefined;
  if (applied === undefined) {
    // Applied before this script kept a stamp: fine if it is this patch (it would come out cleanly).
    if (run(['-R', '--dry-run', '-i', patch]).status !== 0) fail(`${dir} holds another version of the patch: reinstall node-rdkafka (rm -rf node_modules && npm ci)`);
    writeFileSync(stamp, wanted);
  } else if (applied !== wanted) {
    const r = run(['-R', '-i', stamp]);
    if (r.status !== 0) fail(`could not take out the earlier version of the patch:\n${r.stdout}${r.stderr}`);
    console.log('patch-node-rdkafka: took out the earlier version of the patch');
  }
}
if (!isApplied()) {
  const r = run(['--forward', '-i', patch]);
  if (r.status !== 0) fail(`patch failed:\n${r.stdout}${r.stderr}`);
  writeFileSync(stamp, wanted);
  console.log(`patch-node-rdkafka: applied ${patch}`);
  rebuild = true;
}
if (rebuild) {
  if (!existsSync(join(dir, 'build', 'Makefile'))) fail(`node-rdkafka was not built from source (${dir}/build/Makefile is missing): run npm ci with install scripts enabled`);
  const make = spawnSync('make', ['-C', join(dir, 'build'), 'BUILDTYPE=Release', `-j${availableParallelism()}`], { encoding: 'utf8' });
  if (make.status !== 0) fail(`make failed:\n${make.stdout}${make.stderr}`);
  if (!hasPacked()) fail('rebuilt node-rdkafka, but its binding lacks consumePacked or producePacked');
  console.log('patch-node-rdkafka: rebuilt node-rdkafka with consumePacked and producePacked');
}

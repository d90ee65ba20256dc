/**
 * npm run topology -- <name> [<name>...] [flags]
 * Runs one or more topologies in one process until they finish or SIGINT/SIGTERM; then drains, commits, exits 0.
 * Configuration: flags over environment over defaults. A bad flag or value: one line on stderr, exit code 2.
 */
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { topologies } from '../../topologies/index.ts';
import { fromEnv, GLOBAL_OPTIONS as GLOBAL, helpText, parseArgs, userPath, type OptionSpec, type OptionValues, type ParsedArgs } from '../config/options.ts';
import { ConfigError, EnvironmentError, errorMessage } from '../errors.ts';
import Kafka from 'node-rdkafka';
import { checkKafkaConfig, kafkaConnection, type KafkaConnection } from '../kafka/client-config.ts';
import { partitionCounts, refuseNotCoPartitioned } from '../kafka/admin.ts';
import { portOpen } from '../local/process.ts';
import { checkFeatures } from '../kafka/features.ts';
import { checkKafkaAccess } from '../kafka/access.ts';
import { Aborted, retry } from '../runtime/retry.ts';
import { ensureInfrastructure, localKafkaBrokers } from '../local/index.ts';
import { PipelineMetrics, serveMetrics } from '../metrics/registry.ts';
import { statusSnapshot, type StatusSource } from '../metrics/status-page.ts';
import { closeDatabases, database, redactUrl } from '../postgres/db.ts';
import type { Topology } from '../topology.ts';


function usage(list: Topology[]): string {
  const specs = mergedSpecs(list);
  return [
    'usage: npm run topology -- <name|./module.ts> [<name|./module.ts>...] [flags]',
    '',
    'topologies:',
    ...list.map((t) => `  ${t.name.padEnd(20)} ${t.description}`),
    '',
    'flags:',
    helpText([...GLOBAL, ...specs]),
    '',
    'environment: KAFKA_BROKERS, DATABASE_URL (unset: the embedded default, started on first use), METRICS_PORT',
  ].join('\n');
}

/** The flags given on the command line, and this topology's own defaults for the rest. */
function valuesFor(t: Topology, args: ParsedArgs): OptionValues {
  const out: OptionValues = {};
  const specs: readonly OptionSpec[] = [...GLOBAL, ...t.options];
  for (const spec of specs) out[spec.name] = args.given.has(spec.name) ? args.values[spec.name] : spec.default;
  return out;
}

function mergedSpecs(list: Topology[]): OptionSpec[] {
  const seen = new Map<string, OptionSpec>();
  for (const t of list) for (const o of t.options) if (!seen.has(o.name)) seen.set(o.name, o);
  return [...seen.values()];
}

/** A name that is a module path (./my-topology.ts): a topology of the user's own, outside this repository. */
const isModulePath = (name: string) => /^(\.{1,2}\/|\/)/.test(name) || /\.(m?[jt]s)$/.test(name);

/**
 * Loads a topology module: its default export, or else the one export that is a topology (a value with a name,
 * options and run), made with defineTopology from the package ('orders-stream-pipeline').
 */
async function loadTopology(file: string): Promise<Topology> {
  const full = userPath(file);
  if (!existsSync(full)) throw new ConfigError(`${file}: no such topology module`);
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(full).href) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${file}: cannot be loaded: ${errorMessage(err)}`);
  }
  const isTopology = (x: unknown): x is Topology => typeof x === 'object' && x !== null && typeof (x as Topology).name === 'string'
    && typeof (x as Topology).run === 'function' && Array.isArray((x as Topology).options);
  if (isTopology(mod.default)) return mod.default;
  const found = Object.values(mod).filter(isTopology);
  if (found.length !== 1) {
    throw new ConfigError(`${file}: ${found.length ? `exports ${found.length} topologies (${found.map((t) => t.name).join(', ')}); export one as default` : 'exports no topology (export default defineTopology({...}))'}`);
  }
  return found[0];
}

async function main(argv: string[]): Promise<number> {
  // Topology modules named by path are loaded first, so that their flags are known to the parser.
  const firstFlag = argv.findIndex((a) => a.startsWith('--'));
  const loaded = new Map<string, Topology>();
  for (const name of (firstFlag < 0 ? argv : argv.slice(0, firstFlag)).filter(isModulePath)) loaded.set(name, await loadTopology(name));
  const known = [...topologies, ...loaded.values()];
  const first = parseArgs(argv, [...GLOBAL, ...mergedSpecs(known)]);
  if (first.values.help || (!first.names.length && !first.values.list)) {
    process.stdout.write(`${usage(known)}\n`);
    return first.values.help ? 0 : 2;
  }
  if (first.values.list) {
    for (const t of topologies) process.stdout.write(`${t.name.padEnd(20)} ${t.description}\n`);
    return 0;
  }
  const selected = first.names.map((name) => {
    const t = loaded.get(name) ?? topologies.find((x) => x.name === name);
    if (!t) throw new ConfigError(`unknown topology "${name}" (known: ${topologies.map((x) => x.name).join(', ')}; or a path to a module, ./my-topology.ts)`);
    return t;
  });
  // Parse again against the selected topologies only, so a flag none of them takes is an error.
  const args = parseArgs(argv, [...GLOBAL, ...mergedSpecs(selected)]);
  const kafka = kafkaConnection('', (args.values.kafka as string[] | undefined) ?? []);
  // A client that is created but never connected: librdkafka checks every property here.
  checkKafkaConfig(kafka, (config) => new Kafka.Producer({ ...config, 'bootstrap.servers': '127.0.0.1:1' } as Kafka.ProducerGlobalConfig));
  const metricsPortSpec = GLOBAL.find((s) => s.name === 'metrics-port')!;
  const metricsPort = (args.values['metrics-port'] as number | undefined) ?? (fromEnv(metricsPortSpec, process.env, 'METRICS_PORT') as number | undefined) ?? 9464;
  const metricsHost = (args.values['metrics-host'] as string | undefined) ?? process.env.METRICS_HOST ?? '127.0.0.1';

  // Each topology gets its own defaults (two topologies in one process must not share, say, a consumer group).
  const valuesOf = new Map(selected.map((t) => [t, valuesFor(t, args)]));
  for (const t of selected) t.validate?.(valuesOf.get(t)!);
  if (args.values.describe) {
    process.stdout.write(`${selected.map((t) => t.describe(valuesOf.get(t)!)).join('\n\n')}\n`);
    await describeCoPartitioning(selected, valuesOf, kafka);
    return 0;
  }
  const kafkaUsers = selected.filter((t) => t.uses.kafka).map((t) => t.name);
  if (kafkaUsers.length) checkFeatures(kafkaUsers, kafka);

  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const needsPostgres = selected.some((t) => t.uses.postgres);
  const endpoints = await ensureInfrastructure({ postgres: needsPostgres }, log);
  kafka.brokers = endpoints.kafkaBrokers;
  log(`kafka ${kafka.brokers}${needsPostgres ? `, postgres ${redactUrl(endpoints.databaseUrl)}` : ''}`);

  const metrics = PipelineMetrics.create();
  const ready = new Map(selected.map((t) => [t.name, false]));
  for (const t of selected) metrics.ready.set({ topology: t.name }, 0);
  if (metricsPort > 0) {
    try {
      const source: StatusSource = { topologies: selected.map((t) => ({ name: t.name, mermaid: mermaidOf(t, valuesOf.get(t)!) })), ready: () => Object.fromEntries(ready) };
      await serveMetrics(metrics.registry, metricsPort, () => [...ready.values()].every(Boolean), metricsHost, () => statusSnapshot(metrics, source));
    } catch (err) {
      throw new ConfigError(`metrics server cannot listen on ${metricsHost}:${metricsPort}: ${errorMessage(err)} (set METRICS_PORT, 0 = off)`);
    }
  }

  // A broker that refuses these credentials or this protocol stops the process here, with one line (exit 2); one
  // that is not up yet is waited for. A signal meanwhile ends it: nothing has been read yet.
  if (kafkaUsers.length) {
    const waiting = new AbortController();
    const onEarlySignal = () => waiting.abort();
    process.once('SIGINT', onEarlySignal);
    process.once('SIGTERM', onEarlySignal);
    try {
      await retry('connecting to Kafka', () => checkKafkaAccess(kafka), log, waiting.signal);
      // A signal while the last check was still running is not lost: the check succeeding does not start anything.
      if (waiting.signal.aborted) return 0;
    } catch (err) {
      if (err instanceof Aborted) return 0;
      throw err;
    } finally {
      process.off('SIGINT', onEarlySignal);
      process.off('SIGTERM', onEarlySignal);
    }
  }

  // Each topology stops on its own signal: on SIGINT/SIGTERM the writers of a topic another one here reads stop
  // first, and its readers then drain to where the writers got (see stopInOrder).
  const stops = new Map(selected.map((t) => [t, { stop: new AbortController(), drain: new AbortController() }]));
  const runs = new Map(selected.map((t) => [t, t.run({
    kafka,
    database: () => database(endpoints.databaseUrl),
    metrics,
    log: (line) => log(`[${t.name}] ${line}`),
    signal: stops.get(t)!.stop.signal,
    drain: stops.get(t)!.drain.signal,
    setReady: (r) => {
      ready.set(t.name, r);
      metrics.ready.set({ topology: t.name }, r ? 1 : 0);
    },
  }, valuesOf.get(t)!)]));
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      log(`${sig} again: exiting without draining`);
      process.exit(130);
    }
    void stopInOrder(sig, selected, valuesOf, stops, runs, log);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const results = await Promise.allSettled(selected.map((t) => runs.get(t)!));
  await closeDatabases();
  let code = 0;
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      log(`[${selected[i].name}] failed: ${errorMessage(r.reason)}`);
      if (process.env.PIPELINE_DEBUG && r.reason instanceof Error) log(r.reason.stack ?? "");
      code = r.reason instanceof ConfigError ? 2 : 1;
    }
  });
  return code;
}

/** How long readers drain after their writers stopped, at most, before they stop with what they have. */
const DRAIN_BOUND_MS = 10_000;

/**
 * Stops the topologies of one process. Writers of a topic that another one here reads stop first (they flush what
 * they produced); then those readers are asked to drain: read on to the high watermarks, commit, stop. So Ctrl-C on
 * `orders-generator orders-ingest` leaves as many rows as orders produced. The rest stop at once, and every reader
 * stops by DRAIN_BOUND_MS after its writers did, drained or not.
 */
async function stopInOrder(sig: string, selected: Topology[], valuesOf: Map<Topology, OptionValues>,
  stops: Map<Topology, { stop: AbortController; drain: AbortController }>, runs: Map<Topology, Promise<void>>, log: (line: string) => void): Promise<void> {
  const topics = new Map(selected.map((t) => [t, t.topics(valuesOf.get(t)!)]));
  const writersOf = (reader: Topology) => selected.filter((w) => w !== reader && topics.get(w)!.writes.some((topic) => topics.get(reader)!.reads.includes(topic)));
  const readers = selected.filter((t) => writersOf(t).length > 0);
  const writers = new Set(readers.flatMap(writersOf));
  if (!readers.length) {
    log(`${sig}: draining in-flight batches, committing, then exiting`);
    for (const s of stops.values()) s.stop.abort();
    return;
  }
  log(`${sig}: stopping ${[...writers].map((t) => t.name).join(', ')} first; then ${readers.map((t) => t.name).join(', ')} read on to where they got `
    + `(at most ${DRAIN_BOUND_MS / 1000} s), commit and exit`);
  for (const t of selected) if (!readers.includes(t) && !writers.has(t)) stops.get(t)!.stop.abort();
  for (const w of writers) if (!readers.includes(w)) stops.get(w)!.stop.abort();
  await Promise.allSettled([...writers].filter((w) => !readers.includes(w)).map((w) => runs.get(w)!));
  for (const r of readers) stops.get(r)!.drain.abort();
  setTimeout(() => { for (const s of stops.values()) s.stop.abort(); }, DRAIN_BOUND_MS).unref();
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    const config = err instanceof ConfigError || err instanceof EnvironmentError;
    process.stderr.write(`${config ? '' : 'error: '}${errorMessage(err)}\n`);
    process.exit(config ? 2 : 1);
  },
);

/**
 * A topology's graph for the status page: its `--describe=mermaid` flowchart, or for one without a plan (a generator)
 * what it reads and writes around its name.
 */
function mermaidOf(t: Topology, values: OptionValues): string {
  const described = t.describe({ ...values, describe: 'mermaid' });
  if (described.startsWith('flowchart')) return described;
  const { reads, writes } = t.topics(values);
  const q = (s: string) => s.replace(/"/g, '#quot;');
  return ['flowchart LR', `  t["${q(t.name)}"]`, ...reads.map((r, i) => `  r${i}[/"topic ${q(r)}"/] --> t`), ...writes.map((w, i) => `  t --> w${i}[/"topic ${q(w)}"/]`)].join('\n');
}

/**
 * --describe of a topology whose inputs must be co-partitioned: when a broker is up (KAFKA_BROKERS, or the embedded
 * default's port), the topics that exist are checked as the startup check would, and a mismatch is refused with its
 * line (exit 2); when none is, a line says the check waits for the start.
 */
async function describeCoPartitioning(selected: Topology[], valuesOf: Map<Topology, OptionValues>, kafka: KafkaConnection): Promise<void> {
  const groups = selected.flatMap((t) => t.copartitioned?.(valuesOf.get(t)!) ?? []).filter((g) => g.length > 1);
  if (!groups.length) return;
  const brokers = process.env.KAFKA_BROKERS ?? localKafkaBrokers();
  const [host, port] = brokers.split(',')[0].split(':');
  if (!(await portOpen(Number(port), host, 1000))) {
    process.stdout.write(`co-partitioning of ${groups.map((g) => g.join(' + ')).join('; ')}: not checked now (no broker at ${brokers}), checked at start\n`);
    return;
  }
  for (const g of groups) refuseNotCoPartitioned(g, await partitionCounts({ ...kafka, brokers }, g, 5_000));
  process.stdout.write(`co-partitioning of ${groups.map((g) => g.join(' + ')).join('; ')}: checked on ${brokers} (topics that do not exist yet are created with the same count)\n`);
}

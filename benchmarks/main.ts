/**
 * npm run bench -- <name> [flags]: throughput and latency benchmarks, each against a ceiling or a baseline
 * measured in the same run. Each prints a table and writes benchmarks/results/<name>-latest.json and an SVG chart.
 */
import {
  closeDatabases,
} from '../pipeline/index.ts';
import { ingestBench, ingestHelp } from './ingest.ts';
import { stagesBench, stagesHelp } from './stages.ts';
import { generatorBench, generatorHelp } from './generator.ts';
import { latencyBench, latencyHelp } from './latency.ts';
import { revenueBench, revenueHelp } from './revenue.ts';
import { upsertBench, upsertHelp } from './upsert.ts';
import { joinBench, joinHelp } from './join.ts';
import { anchorsBench, anchorsHelp } from './anchors.ts';
import { scaleBench, scaleHelp } from './scale.ts';
import { startupBench, startupHelp } from './startup.ts';

const benches: Record<string, { run: (argv: string[]) => Promise<void>; help: string }> = {
  ingest: { run: ingestBench, help: ingestHelp },
  stages: { run: stagesBench, help: stagesHelp },
  generator: { run: generatorBench, help: generatorHelp },
  latency: { run: latencyBench, help: latencyHelp },
  revenue: { run: revenueBench, help: revenueHelp },
  upsert: { run: upsertBench, help: upsertHelp },
  join: { run: joinBench, help: joinHelp },
  anchors: { run: anchorsBench, help: anchorsHelp },
  scale: { run: scaleBench, help: scaleHelp },
  startup: { run: startupBench, help: startupHelp },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const bench = name ? benches[name] : undefined;
  if (!bench) {
    process.stdout.write(`usage: npm run bench -- <name> [flags]\n\n${Object.values(benches).map((b) => `  ${b.help}`).join('\n')}\n`);
    return name && name !== '--help' ? 2 : 0;
  }
  await bench.run(rest);
  return 0;
}

main(process.argv.slice(2)).then(
  async (code) => {
    await closeDatabases();
    process.exit(code);
  },
  async (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    await closeDatabases().catch(() => undefined);
    process.exit(1);
  },
);

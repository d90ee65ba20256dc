import fs from 'node:fs';
import path from 'node:path';
import { kafkaStatus } from '../../pipeline/local/index.ts';
import { localRoot } from '../../pipeline/local/paths.ts';
import { procSample } from './child.ts';

/**
 * CPU seconds used so far by the embedded broker and by the embedded PostgreSQL (postmaster and every live
 * backend), from /proc. Undefined when they are external (KAFKA_BROKERS / DATABASE_URL) or not readable.
 * A backend that exited takes its CPU time with it, so take both readings while the connections are open.
 */
export interface InfraCpu {
  kafka?: number;
  postgres?: number;
}

function children(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

let kafkaPid: number | undefined | null = null;

export async function infraCpu(): Promise<InfraCpu> {
  if (kafkaPid === null) kafkaPid = process.env.KAFKA_BROKERS ? undefined : (await kafkaStatus()).pid;
  const out: InfraCpu = {};
  if (kafkaPid !== undefined) out.kafka = procSample(kafkaPid)?.cpuSeconds;
  if (!process.env.DATABASE_URL) {
    try {
      const pm = Number(fs.readFileSync(path.join(localRoot, 'postgres', 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
      let sum = procSample(pm)?.cpuSeconds ?? 0;
      for (const c of children(pm)) sum += procSample(c)?.cpuSeconds ?? 0;
      out.postgres = sum;
    } catch { /* not the embedded default */ }
  }
  return out;
}

export function cpuDelta(a: InfraCpu, b: InfraCpu): InfraCpu {
  return {
    kafka: a.kafka !== undefined && b.kafka !== undefined ? b.kafka - a.kafka : undefined,
    postgres: a.postgres !== undefined && b.postgres !== undefined ? b.postgres - a.postgres : undefined,
  };
}

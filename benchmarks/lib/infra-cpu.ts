import {
  localRoot,
} from '../../pipeline/index.ts';
import fs from 'node:fs';
import path from 'node:path';
import { kafkaStatus } from '../../pipeline/local/index.ts';
import { procSample, TICKS } from './child.ts';

/**
 * CPU seconds used so far by the embedded broker and by the embedded PostgreSQL (postmaster and every live
 * backend), from /proc. Undefined when they are external (KAFKA_BROKERS / DATABASE_URL) or not readable.
 * A child that exited counts through the postmaster's cutime/cstime.
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

/** utime + stime + cutime + cstime of a process (fields 14-17 of /proc/<pid>/stat), in seconds. */
function reapedChildrenSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS;
}

let kafkaPid: number | undefined | null = null;

export async function infraCpu(): Promise<InfraCpu> {
  if (kafkaPid === null) kafkaPid = process.env.KAFKA_BROKERS ? undefined : (await kafkaStatus()).pid;
  const out: InfraCpu = {};
  if (kafkaPid !== undefined) out.kafka = procSample(kafkaPid)?.cpuSeconds;
  if (!process.env.DATABASE_URL) {
    try {
      const pm = Number(fs.readFileSync(path.join(localRoot, 'postgres', 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
      // The postmaster's own time plus that of its children it has reaped (cutime, cstime), plus every live child's:
      // a backend or autovacuum worker that exits between two readings still counts (its time moves to cutime).
      let sum = reapedChildrenSeconds(pm);
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

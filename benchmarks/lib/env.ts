import {
  database, type Database, kafkaConnection, type KafkaConnection,
} from '../../pipeline/index.ts';
import crypto from 'node:crypto';
import os from 'node:os';
import { ensureInfrastructure, type Endpoints } from '../../pipeline/local/index.ts';

export interface BenchEnv {
  endpoints: Endpoints;
  kafka: KafkaConnection;
  db: Database;
  /** Environment for child processes: the same brokers and database, no default metrics port. */
  childEnv: NodeJS.ProcessEnv;
}

export const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${line}\n`);

/** The embedded default (or KAFKA_BROKERS / DATABASE_URL), exactly as the CLI resolves it. */
export async function benchEnv(): Promise<BenchEnv> {
  const endpoints = await ensureInfrastructure({ postgres: true }, log);
  const kafka = kafkaConnection(endpoints.kafkaBrokers, []);
  return {
    endpoints, kafka, db: database(endpoints.databaseUrl, 4),
    childEnv: { ...process.env, KAFKA_BROKERS: endpoints.kafkaBrokers, DATABASE_URL: endpoints.databaseUrl },
  };
}

/** A fresh name for topics, tables and groups, so every run starts empty. */
export function fresh(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${crypto.randomBytes(3).toString('hex')}`;
}

export function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  return { cpus: cpus.length, cpu_model: cpus[0]?.model ?? 'unknown', memory_bytes: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { db, readTopic, runTopology } from './infra.ts';

/** A multiset's differences from the expected one, in a few words: what is missing, what is extra, what came twice. */
function differences(label: string, actual: string[], expected: string[]): string[] {
  const want = new Map<string, number>();
  for (const k of expected) want.set(k, (want.get(k) ?? 0) + 1);
  const got = new Map<string, number>();
  for (const k of actual) got.set(k, (got.get(k) ?? 0) + 1);
  const missing = [...want.keys()].filter((k) => !got.has(k));
  const extra = [...got.keys()].filter((k) => !want.has(k));
  const twice = [...got].filter(([k, n]) => want.has(k) && n > want.get(k)!).map(([k, n]) => `${k} x${n}`);
  const some = (xs: string[]) => `${xs.length} (${xs.slice(0, 3).join(', ')}${xs.length > 3 ? ', ...' : ''})`;
  const out: string[] = [];
  if (missing.length) out.push(`${label}: missing ${some(missing)}`);
  if (extra.length) out.push(`${label}: not expected ${some(extra)}`);
  if (twice.length) out.push(`${label}: more than once ${some(twice)}`);
  return out;
}

/**
 * Exactly once, checked by id, as the chaos script checks it: the table's rows are exactly the valid ids, each once,
 * and the dead-letter topic holds exactly the invalid ids (by message key), each once. Counting alone lets errors
 * cancel out (a lost dead letter and a replayed order), and order_id is the table's key, so a replayed order never
 * makes a second row: it makes a `duplicate` dead letter, which this sees.
 */
export async function assertExactlyOnce(o: {
  table: string; dlqTopic: string; valid: string[]; invalid: string[]; column?: string;
  /** Dead-letter topic messages to count (default: all); a test that writes others there on purpose leaves them out. */
  deadLetter?: (key: string) => boolean;
}): Promise<void> {
  const rows = (await db().any<{ id: string }>('SELECT $2:name::text AS id FROM $1:name', [o.table, o.column ?? 'order_id'])).map((r) => r.id);
  const dead = (await readTopic(o.dlqTopic)).map((m) => m.key?.toString() ?? '<null key>').filter((k) => o.deadLetter?.(k) ?? true);
  const problems = [...differences(`rows of ${o.table}`, rows, o.valid), ...differences(`dead letters in ${o.dlqTopic}`, dead, o.invalid)];
  assert.deepEqual(problems, [], `not exactly once: ${problems.join('; ')}`);
  assert.equal(rows.length, o.valid.length);
  assert.equal(dead.length, o.invalid.length);
}

/** The generator's --report file: the keys of the valid and invalid orders it sent. */
export interface SentReport {
  produced: number;
  valid: string[];
  invalid: string[];
}

/**
 * orders-generator with --report into a temporary file: `args` to pass, `read()` once it has exited (it writes the
 * file after its last flush, so the keys are what Kafka holds).
 */
export function reported(args: string[]): { args: string[]; read(): SentReport } {
  const file = path.join(os.tmpdir(), `report-${crypto.randomBytes(6).toString('hex')}.json`);
  return {
    args: ['orders-generator', ...args, '--report', file],
    read() {
      const r = JSON.parse(fs.readFileSync(file, 'utf8')) as SentReport;
      fs.rmSync(file, { force: true });
      return r;
    },
  };
}

/** Runs orders-generator to its end with a report: what it sent, by key. */
export async function generate(args: string[]): Promise<SentReport> {
  const g = reported(args);
  const r = await runTopology(g.args);
  assert.equal(r.code, 0, r.stderr);
  return g.read();
}

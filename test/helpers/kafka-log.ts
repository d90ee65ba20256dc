import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { kafkaDataDir, kafkaLibs } from '../../pipeline/local/kafka.ts';
import { projectRoot } from '../../pipeline/local/paths.ts';

/**
 * Apache Kafka's own Java producer (test/fixtures/JavaProducer.java), run with the embedded broker's jars: a client
 * other than ours, with every codec. Each line: `<codec>\t<partition>\t<key or \N>\t<value>`, or `flush`.
 */
export async function javaProduce(topic: string, lines: string[], options: { transactional?: boolean } = {}): Promise<number> {
  const child = spawn('java', ['-cp', `${kafkaLibs}/*`, path.join(projectRoot, 'test/fixtures/JavaProducer.java'), process.env.KAFKA_BROKERS!, topic,
    ...(options.transactional ? ['transactional'] : [])],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  child.stdin.end(`${lines.join('\n')}\n`);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const m = /sent (\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error(`the Java producer failed (exit ${code}):\n${err.split('\n').slice(-10).join('\n')}`);
  return Number(m[1]);
}

export const CODEC_NAMES = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;

/** A record batch (magic 2) as the broker stored it in a log segment. */
export interface StoredBatch {
  file: string;
  /** Byte position of the batch in the file. */
  position: number;
  baseOffset: number;
  lastOffset: number;
  records: number;
  codec: string;
}

/** Position of the attributes (int16) in a batch: baseOffset, length, leader epoch, magic, crc come first. */
export const ATTRIBUTES_AT = 8 + 4 + 4 + 1 + 4;

/**
 * The batches of a partition, read from the embedded broker's log segments (the broker serves fetches from these
 * files, so a byte changed here is what a consumer then reads).
 */
export function storedBatches(topic: string, partition: number): StoredBatch[] {
  const dir = path.join(kafkaDataDir, `${topic}-${partition}`);
  if (!fs.existsSync(dir)) throw new Error(`${dir} is missing: this test reads the embedded broker's log segments (run it without KAFKA_BROKERS)`);
  const out: StoredBatch[] = [];
  for (const name of fs.readdirSync(dir).filter((f) => f.endsWith('.log')).sort()) {
    const file = path.join(dir, name);
    const b = fs.readFileSync(file);
    for (let at = 0; at + 61 <= b.length;) {
      const length = b.readInt32BE(at + 8);
      if (length <= 0) break;
      const baseOffset = Number(b.readBigInt64BE(at));
      out.push({
        file, position: at, baseOffset, lastOffset: baseOffset + b.readInt32BE(at + 23), records: b.readInt32BE(at + 57),
        codec: CODEC_NAMES[b.readInt16BE(at + ATTRIBUTES_AT) & 7] ?? `codec ${b.readInt16BE(at + ATTRIBUTES_AT) & 7}`,
      });
      at += 12 + length;
    }
  }
  return out;
}

/** Overwrites a batch's attributes in place; returns the old value, to put back. */
export function setAttributes(batch: StoredBatch, attributes: number): number {
  const fd = fs.openSync(batch.file, 'r+');
  try {
    const old = Buffer.alloc(2);
    fs.readSync(fd, old, 0, 2, batch.position + ATTRIBUTES_AT);
    const next = Buffer.alloc(2);
    next.writeInt16BE(attributes);
    fs.writeSync(fd, next, 0, 2, batch.position + ATTRIBUTES_AT);
    return old.readInt16BE();
  } finally {
    fs.closeSync(fd);
  }
}

import type Kafka from 'node-rdkafka';
import { sleep } from '../runtime/retry.ts';
import { countLines, readFileLines, type FileLine } from './file-records.ts';
import { packMessages } from './packed-batch.ts';
import type { PartitionListener, Polled, Source } from './source.ts';

export interface FileSourceOptions {
  /** The file's real path: offsets are stored under `file:<path>`. */
  file: string;
  /** Line 1 is a header, not a record (CSV). */
  header: boolean;
  /** Read the file again from the start each time its end is reached (replay 1, 2, ...). */
  loop: boolean;
  /** Lines a second at most, 0 for as fast as it can. */
  rate: number;
}

/**
 * A position in a looped file as one number: replay × lines + the line (1-based). The end of replay r and the start
 * of replay r+1 are the same number, as they are the same place. Without a loop (lines undefined) it is the line.
 */
export function encodePosition(replay: number, line: number, lines: number | undefined): number {
  return lines ? replay * lines + line : line;
}
export function decodePosition(position: number, lines: number | undefined): { replay: number; line: number } {
  if (position <= 0) return { replay: 0, line: 1 };
  if (!lines) return { replay: 0, line: position };
  const replay = Math.floor((position - 1) / lines);
  return { replay, line: position - replay * lines };
}

/**
 * A file as a source of one partition: each line is a record whose offset is its position (its line number, or with
 * a loop encodePosition), its value the line's bytes, with headers source.line (and source.replay). The runtime
 * commits the position after the last line of a flush, so a restart or a rewind reads on from the first line not
 * committed. Without a loop the source is bounded: `finished` once the last line is read.
 */
export class FileSource implements Source {
  readonly kind = 'file';
  readonly topic: string;
  private lines: number | undefined;
  private reader: AsyncGenerator<FileLine> | undefined;
  private replay = 0;
  /** The position after the last line read. */
  private position = 0;
  private ended = false;
  /** Lines read since the reader (re)started: a replay of a file without lines would never end. */
  private readThisReplay = 0;
  private readFromStart = true;
  private paused = false;
  private sent = 0;
  private startedAt = Date.now();
  onLag?: (lag: Map<number, number>) => void;
  onError?: (err: Error) => void;

  constructor(private readonly o: FileSourceOptions, private readonly listener: PartitionListener) {
    this.topic = `file:${o.file}`;
  }

  async connect(): Promise<void> {
    if (this.o.loop) this.lines = await countLines(this.o.file);
    const start = await this.listener.onAssign([0]);
    await this.seek(0, start.get(0)?.[0] ?? -1);
    this.startedAt = Date.now();
  }

  /** Where the next line is read from (a position); the reader starts over there. */
  async seek(_partition: number, position: number): Promise<void> {
    await this.reader?.return(undefined);
    const { replay, line } = decodePosition(position, this.lines);
    this.replay = replay;
    this.position = encodePosition(replay, line, this.lines);
    this.ended = false;
    this.readThisReplay = 0;
    this.readFromStart = line <= 1;
    this.reader = readFileLines(this.o.file, line, this.o.header);
  }

  async poll(max: number): Promise<Polled> {
    let room = max;
    if (this.o.rate > 0) {
      room = Math.min(max, Math.floor(((Date.now() - this.startedAt) * this.o.rate) / 1000) - this.sent);
      if (room <= 0) await sleep(Math.max(1, Math.min(20, 1000 / this.o.rate)));
    }
    const out: Kafka.Message[] = [];
    while (!this.paused && !this.ended && out.length < room) {
      const next = await this.reader!.next();
      if (next.done) {
        if (!this.o.loop) this.ended = true;
        if (!this.o.loop || (this.readFromStart && this.readThisReplay === 0)) break; // a looped file without a line
        this.replay++;
        this.readThisReplay = 0;
        this.readFromStart = true;
        this.position = encodePosition(this.replay, 1, this.lines);
        this.reader = readFileLines(this.o.file, 1, this.o.header);
        continue;
      }
      this.readThisReplay++;
      const { line, text } = next.value;
      const offset = encodePosition(this.replay, line, this.lines);
      const headers = [{ 'source.line': String(line) }, ...(this.o.loop ? [{ 'source.replay': String(this.replay) }] : [])];
      out.push({ topic: this.topic, partition: 0, offset, value: Buffer.from(text), size: text.length, timestamp: Date.now(), headers } as unknown as Kafka.Message);
      this.position = offset + 1;
    }
    this.sent += out.length;
    return { batch: packMessages(this.topic, out), straddled: false, errors: [] };
  }

  finished(): boolean {
    return this.ended;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  async settled(): Promise<void> {}

  async watermarks(): Promise<{ low: number; high: number }> {
    return { low: 0, high: this.ended ? this.position : this.position + 1 };
  }

  commitForMonitoring(): void {}

  async disconnect(): Promise<void> {
    await this.reader?.return(undefined);
  }
}

import Kafka from 'node-rdkafka';
import type { PartitionError } from '../sources/kafka-source.ts';

/** Why a partition could not be read (the `reason` label of pipeline_source_errors_total). */
export type SourceErrorReason = 'unsupported-codec' | 'corrupt' | 'too-large' | 'fetch';

const E = Kafka.CODES.ERRORS;

export function sourceErrorReason(code: number): SourceErrorReason {
  switch (code) {
    case E.ERR__NOT_IMPLEMENTED: return 'unsupported-codec';
    case E.ERR__BAD_COMPRESSION:
    case E.ERR__BAD_MSG:
    case E.ERR_INVALID_MSG: return 'corrupt';
    case E.ERR_MSG_SIZE_TOO_LARGE:
    case E.ERR_RECORD_LIST_TOO_LARGE: return 'too-large';
    default: return 'fetch';
  }
}

/** A partition held at the first offset it could not read. */
export interface Unreadable {
  offset: number;
  reason: SourceErrorReason;
  message: string;
  /** When to seek back to offset and try again. */
  retryAt: number;
  /** Sought back to offset and resumed: the next message of the partition was read from there. */
  retrying: boolean;
}

/**
 * The partitions that stopped at a batch librdkafka could not read. librdkafka reports the batch and goes on past
 * it, so without this the offsets of later messages would be committed and the batch skipped for good. Instead the
 * partition is paused at the batch, nothing at or after it is taken, and every retryMs it is sought back there and
 * resumed: a transient fault then heals, and a lasting one (a codec the build lacks) stays visible in the log,
 * pipeline_source_errors_total and /readyz, and makes --stop-when-idle exit non-zero.
 */
export class UnreadablePartitions {
  private readonly held = new Map<number, Unreadable>();

  constructor(readonly retryMs = 5_000) {}

  get size(): number {
    return this.held.size;
  }

  get(partition: number): Unreadable | undefined {
    return this.held.get(partition);
  }

  /**
   * Holds the partition at the error's offset (or nextOffset, the first not taken, when the error has none). Returns
   * the hold, or undefined when the error is about offsets already taken (from before a seek).
   */
  hold(e: PartitionError, nextOffset: number, now = Date.now()): Unreadable | undefined {
    const offset = e.offset >= 0 ? e.offset : nextOffset;
    if (offset < nextOffset) return undefined;
    const before = this.held.get(e.partition);
    const u: Unreadable = {
      offset: before && !before.retrying ? Math.min(before.offset, offset) : offset,
      reason: sourceErrorReason(e.code), message: e.message, retryAt: now + this.retryMs, retrying: false,
    };
    this.held.set(e.partition, u);
    return u;
  }

  /**
   * The first offset of the partition's messages to leave untaken in a poll (Infinity: take all). A message read after
   * the partition was sought back to its hold means it reads again: the hold ends.
   */
  limit(partition: number): number {
    const u = this.held.get(partition);
    if (!u) return Infinity;
    if (u.retrying) {
      this.held.delete(partition);
      return Infinity;
    }
    return u.offset;
  }

  /** The holds whose time to try again has come; each is marked as retrying. */
  due(now = Date.now()): [number, Unreadable][] {
    const out: [number, Unreadable][] = [];
    for (const [p, u] of this.held) {
      if (!u.retrying && now >= u.retryAt) {
        u.retrying = true;
        out.push([p, u]);
      }
    }
    return out;
  }

  release(partitions: Iterable<number>): number[] {
    const released: number[] = [];
    for (const p of partitions) if (this.held.delete(p)) released.push(p);
    return released;
  }
}

/**
 * Window definitions, as Kafka Streams has them (TimeWindows, SessionWindows). All times are epoch milliseconds;
 * a time window covers [start, end). A record is late, and dropped, when the window it belongs to has closed:
 * window end + grace <= stream time (the highest event time seen in the partition).
 */
export interface TimeWindows {
  kind: 'tumbling' | 'hopping';
  sizeMs: number;
  advanceMs: number;
  graceMs: number;
}

export interface SessionWindows {
  kind: 'session';
  gapMs: number;
  graceMs: number;
}

export type Windows = TimeWindows | SessionWindows;

function positive(name: string, ms: number): number {
  if (!Number.isInteger(ms) || ms <= 0) throw new RangeError(`${name} must be a positive whole number of milliseconds, got ${ms}`);
  return ms;
}

function grace(ms: number): number {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`grace must be zero or more milliseconds, got ${ms}`);
  return ms;
}

export const TimeWindows = {
  /** Fixed-size, non-overlapping windows: each record belongs to exactly one. */
  tumbling(sizeMs: number, graceMs = 0): TimeWindows {
    return { kind: 'tumbling', sizeMs: positive('size', sizeMs), advanceMs: sizeMs, graceMs: grace(graceMs) };
  },
  /** Fixed-size windows that start every advanceMs: a record belongs to size/advance of them. */
  hopping(sizeMs: number, advanceMs: number, graceMs = 0): TimeWindows {
    positive('size', sizeMs);
    positive('advance', advanceMs);
    if (advanceMs > sizeMs) throw new RangeError(`advance (${advanceMs} ms) must not exceed the window size (${sizeMs} ms)`);
    return { kind: advanceMs === sizeMs ? 'tumbling' : 'hopping', sizeMs, advanceMs, graceMs: grace(graceMs) };
  },
};

export const SessionWindows = {
  /** Activity sessions per key: records closer than gapMs belong to one session, which grows and merges. */
  withGap(gapMs: number, graceMs = 0): SessionWindows {
    return { kind: 'session', gapMs: positive('gap', gapMs), graceMs: grace(graceMs) };
  },
};

/** Start times of the windows containing ts, oldest first (TimeWindows#windowsFor). */
export function windowStarts(ts: number, w: TimeWindows): number[] {
  const last = ts - mod(ts, w.advanceMs);
  const out: number[] = [];
  for (let start = last - Math.ceil(w.sizeMs / w.advanceMs - 1) * w.advanceMs; start <= last; start += w.advanceMs) {
    if (start + w.sizeMs > ts) out.push(start);
  }
  return out;
}

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

export function describeWindows(w: Windows): string {
  const s = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
  if (w.kind === 'session') return `session windows (gap ${s(w.gapMs)}, grace ${s(w.graceMs)})`;
  if (w.kind === 'tumbling') return `tumbling windows (${s(w.sizeMs)}, grace ${s(w.graceMs)})`;
  return `hopping windows (${s(w.sizeMs)} every ${s(w.advanceMs)}, grace ${s(w.graceMs)})`;
}

/**
 * A stream-stream join's window, as Kafka Streams' JoinWindows: a record of the left stream at t joins the right
 * stream's records of the same key from t - beforeMs to t + afterMs (both ends included). grace is how late (behind
 * its own partition's stream time) a record may come and still join.
 */
export interface JoinWindows {
  beforeMs: number;
  afterMs: number;
  graceMs: number;
}

export const JoinWindows = {
  /** Records of the two streams join when their times differ by at most differenceMs. */
  ofTimeDifferenceAndGrace(differenceMs: number, graceMs: number): JoinWindows {
    if (!Number.isInteger(differenceMs) || differenceMs < 0) throw new RangeError(`the time difference must be zero or more milliseconds, got ${differenceMs}`);
    return { beforeMs: differenceMs, afterMs: differenceMs, graceMs: grace(graceMs) };
  },
  ofTimeDifferenceWithNoGrace(differenceMs: number): JoinWindows {
    return JoinWindows.ofTimeDifferenceAndGrace(differenceMs, 0);
  },
};

export function describeJoinWindows(w: JoinWindows): string {
  const s = (ms: number) => (ms % 60_000 === 0 && ms ? `${ms / 60_000}m` : ms % 1000 === 0 && ms ? `${ms / 1000}s` : `${ms}ms`);
  return w.beforeMs === w.afterMs ? `within ${s(w.beforeMs)}, grace ${s(w.graceMs)}` : `from ${s(w.beforeMs)} before to ${s(w.afterMs)} after, grace ${s(w.graceMs)}`;
}

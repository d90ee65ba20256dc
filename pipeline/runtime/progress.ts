/**
 * The progress line on stderr every few seconds while a topology runs: rate, total, invalid, late (when any), lag.
 */
export class Progress {
  total = 0;
  invalid = 0;
  /** Records dropped as late (their window had closed), shown once there are any. */
  late = 0;
  lag: number | undefined;
  private lastTotal = 0;
  private lastAt = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly name: string, private readonly unit: string, private readonly intervalMs = 5000) {}

  start(): void {
    this.lastAt = Date.now();
    this.timer = setInterval(() => this.print(), this.intervalMs);
    this.timer.unref();
  }

  stop(final = true): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (final) this.print();
  }

  line(): string {
    const now = Date.now();
    const rate = ((this.total - this.lastTotal) * 1000) / Math.max(1, now - this.lastAt);
    this.lastTotal = this.total;
    this.lastAt = now;
    const parts = [`${fmt(Math.round(rate))} ${this.unit}/s`, `total ${fmt(this.total)}`, `invalid ${fmt(this.invalid)}`];
    if (this.late) parts.push(`late ${fmt(this.late)}`);
    if (this.lag !== undefined) parts.push(`lag ${fmt(this.lag)}`);
    return `[${this.name}] ${parts.join(' · ')}`;
  }

  private print(): void {
    process.stderr.write(`${this.line()}\n`);
  }
}

const fmt = (n: number) => n.toLocaleString('en-US');

import net from 'node:net';

/**
 * A TCP proxy of the tests' own between a client and Postgres that can break a flush at a chosen point of the wire
 * protocol. The client's simple queries are plain text in 'Q' messages, so a point is found by the text a message
 * carries (pg-promise sends `BEGIN; UPDATE pipeline_offsets ...` and `COMMIT` that way).
 * - hold(text): the next client message with that text is kept back (with everything after it on that connection)
 *   until release(): the client is stuck mid-flush, its transaction not yet begun on the server.
 * - cutAfter(query): the next client message that is exactly that query reaches the server, and the server's answer never comes
 *   back: both sockets close. For COMMIT, the transaction is committed and the client sees a broken connection.
 */
export class PgProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private holding: { text: Buffer; seen?: () => void } | undefined;
  private held: { upstream: net.Socket; chunks: Buffer[] } | undefined;
  private cutting: Buffer | undefined;
  /** How many times each fault happened. */
  readonly happened = { held: 0, cut: 0 };
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    this.server = net.createServer((client) => this.connection(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** DATABASE_URL through this proxy. */
  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Resolves once a client message with this text is held. */
  hold(text: string): Promise<void> {
    return new Promise((resolve) => { this.holding = { text: Buffer.from(text), seen: resolve }; });
  }

  release(): void {
    const h = this.held;
    this.held = undefined;
    if (h) for (const c of h.chunks) h.upstream.write(c);
  }

  /** The next Query message that is exactly this query (`COMMIT`). */
  cutAfter(query: string): void {
    const text = Buffer.from(`${query}\0`);
    const head = Buffer.alloc(5);
    head[0] = 0x51;
    head.writeInt32BE(4 + text.length, 1);
    this.cutting = Buffer.concat([head, text]);
  }

  private connection(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    let cutNext = false;
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.on('data', (chunk: Buffer) => {
      if (this.held?.upstream === upstream) {
        this.held.chunks.push(chunk);
        return;
      }
      if (this.holding && chunk.includes(this.holding.text)) {
        const seen = this.holding.seen;
        this.holding = undefined;
        this.held = { upstream, chunks: [chunk] };
        this.happened.held++;
        seen?.();
        return;
      }
      if (this.cutting && chunk.includes(this.cutting)) {
        this.cutting = undefined;
        cutNext = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutNext) {
        this.happened.cut++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  }

  async close(): Promise<void> {
    this.release();
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}

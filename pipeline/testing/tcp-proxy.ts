import net from 'node:net';

/**
 * A TCP proxy on loopback for network faults: clients connect to it instead of the server (the chaos run points the
 * ingest's DATABASE_URL at it), and it can stall or drop what goes through.
 * - stall(ms): every byte in either direction waits (the sockets stop being read, as when a link hangs and TCP's
 *   buffers fill); new connections are accepted but not forwarded until the stall ends. Nothing is lost: the bytes
 *   flow once it is over, as after a network partition that heals before any timeout.
 * - drop(ms): every connection is reset at once, and new ones are refused (reset on accept) until ms have passed.
 */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private stalledUntil = 0;
  private droppedUntil = 0;
  private readonly waiting: (() => void)[] = [];
  /** Connections accepted, and those reset by drop(). */
  readonly counts = { accepted: 0, reset: 0, refused: 0 };

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** Listens on 127.0.0.1 (port 0: any free one); resolves to the port. */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port));
    });
  }

  private accept(client: net.Socket): void {
    if (Date.now() < this.droppedUntil) {
      this.counts.refused++;
      client.resetAndDestroy();
      return;
    }
    this.counts.accepted++;
    client.on('error', () => undefined);
    const connect = () => {
      if (client.destroyed) return;
      const server = net.connect(this.target);
      server.on('error', () => client.destroy());
      client.on('error', () => server.destroy());
      const pair: [net.Socket, net.Socket] = [client, server];
      this.pairs.add(pair);
      const forget = () => this.pairs.delete(pair);
      client.on('close', () => { forget(); server.destroy(); });
      server.on('close', () => { forget(); client.destroy(); });
      client.pipe(server);
      server.pipe(client);
    };
    if (Date.now() < this.stalledUntil) this.waiting.push(connect);
    else connect();
  }

  /** Holds every byte and new connection for ms, then lets them through. */
  stall(ms: number): Promise<void> {
    this.stalledUntil = Date.now() + ms;
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
    return new Promise((resolve) => setTimeout(() => {
      this.stalledUntil = 0;
      for (const [a, b] of this.pairs) {
        a.pipe(b);
        b.pipe(a);
      }
      for (const connect of this.waiting.splice(0)) connect();
      resolve();
    }, ms));
  }

  /** Resets every connection now, and refuses new ones for ms. */
  drop(ms: number): Promise<void> {
    this.droppedUntil = Date.now() + ms;
    for (const [a, b] of [...this.pairs]) {
      this.counts.reset++;
      a.resetAndDestroy();
      b.destroy();
    }
    this.pairs.clear();
    return new Promise((resolve) => setTimeout(() => {
      this.droppedUntil = 0;
      resolve();
    }, ms));
  }

  async close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

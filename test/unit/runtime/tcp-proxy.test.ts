import assert from 'node:assert/strict';
import net from 'node:net';
import { TcpProxy } from '../../../pipeline/testing/tcp-proxy.ts';

/** An echo server on loopback, and a client through the proxy that sends a line and reads what comes back. */
async function echo(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

const reply = (s: net.Socket, ms: number) => new Promise<string | undefined>((resolve) => {
  const t = setTimeout(() => resolve(undefined), ms);
  s.once('data', (d) => { clearTimeout(t); resolve(d.toString()); });
});

describe('the TCP proxy of the chaos run', () => {
  it('forwards both ways, holds every byte through a stall and delivers it after, and resets and refuses on a drop', async () => {
    const server = await echo();
    const proxy = new TcpProxy({ host: '127.0.0.1', port: server.port });
    const port = await proxy.listen();
    try {
      const s = await connect(port);
      s.write('one');
      assert.equal(await reply(s, 2000), 'one');
      const stalled = proxy.stall(600);
      s.write('two');
      assert.equal(await reply(s, 300), undefined, 'nothing passes while stalled');
      await stalled;
      assert.equal(await reply(s, 2000), 'two', 'and it comes through after');
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      s.on('error', () => undefined);
      const dropped = proxy.drop(500);
      await closed;
      const refused = await new Promise<boolean>((r) => {
        const c = net.connect({ port, host: '127.0.0.1' }, () => c.write('x'));
        c.on('error', () => undefined);
        c.once('close', () => r(true));
        c.once('data', () => r(false));
      });
      assert.equal(refused, true, 'a new connection during the drop is reset');
      await dropped;
      const again = await connect(port);
      again.write('three');
      assert.equal(await reply(again, 2000), 'three');
      again.destroy();
      assert.deepEqual({ reset: proxy.counts.reset, refused: proxy.counts.refused }, { reset: 1, refused: 1 });
    } finally {
      await proxy.close();
      await server.close();
    }
  });
});

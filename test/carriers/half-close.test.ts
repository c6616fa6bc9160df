/**
 * A client may write its requests and then shut down its write side (FIN, `socket.end()`): it
 * still gets every reply it is owed, in order, and then the server closes. Real sockets, and
 * replies that go through a store whose commits finish on a later turn of the event loop, so the
 * replies are still being worked on when the FIN arrives.
 */
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { MemoryStore } from '../../src/store/memory.ts';
import { getHeader } from '../../src/wire/index.ts';
import { loginToken, parseFrames, parseHttpResponses, startServer } from './helpers.ts';

/** A memory store whose session loads and commits answer on a later turn, as LMDB's and Redis's do. */
class LaterStore extends MemoryStore {
  override async loadSession(id: string) {
    await new Promise((resolve) => setImmediate(resolve));
    return super.loadSession(id);
  }
  override async commitSession(...args: Parameters<MemoryStore['commitSession']>) {
    await new Promise((resolve) => setImmediate(resolve));
    return super.commitSession(...args);
  }
}

/** Write `bytes`, half-close, and collect every byte until the server closes (a liveness guard, not a bound, ends a hung test). */
function halfClose(socket: net.Socket, bytes: Buffer): Promise<{ bytes: Buffer; serverEnded: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let serverEnded = false;
    const guard = setTimeout(() => socket.destroy(), 20_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => (serverEnded = true));
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(guard);
      resolve({ bytes: Buffer.concat(chunks), serverEnded });
    });
    socket.write(bytes);
    socket.end();
  });
}

const connectTo = (port: number, secure?: tls.ConnectionOptions): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, allowHalfOpen: true };
    const socket = secure ? tls.connect({ ...options, ...secure }, () => resolve(socket)) : net.connect(options, () => resolve(socket));
    socket.once('error', reject);
  });

for (const secure of [false, true]) {
  t.test(secure ? 'TLS and HTTPS' : 'TCP and HTTP', async (t) => {
    const server = await startServer({ tls: secure, store: new LaterStore() });
    t.teardown(() => server.close());
    const clientTls = secure ? { ca: server.tls!.cert, servername: 'localhost' } : undefined;

    // 40 fits in the in-flight window (64); 150 makes frames wait their turn behind it; 3000
    // (81 KB) takes more than one read, and most of it waits unparsed while the FIN arrives.
    for (const count of [40, 150, 3000]) {
      await t.test(`${count} frames, then FIN: ${count} replies, in order, then the close`, async (t) => {
        const token = await loginToken(server);
        // The first /hello rotates (a store commit), the later ones replay it (a store read); the
        // pings between them (every third frame) make the order visible.
        const isPing = (i: number) => i % 3 === 2;
        const frames = Array.from({ length: count }, (_, i) => (isPing(i) ? 'GET /rotor/ping ROTOR/1\r\n\r\n' : `GET /hello ROTOR/1\r\nToken: ${token}\r\n\r\n`));
        const socket = await connectTo(server.tcpPort, clientTls);
        const result = await halfClose(socket, Buffer.from(frames.join(''), 'latin1'));
        const replies = parseFrames(result.bytes);
        t.equal(replies.length, count, 'one reply per frame');
        t.strictSame(
          replies.map((r) => `${r.status} ${r.body?.toString() ?? '-'}`),
          frames.map((_, i) => (isPing(i) ? '200 -' : '200 hello, alice')),
          'every reply, in request order',
        );
        const tokens = new Set(replies.filter((_, i) => !isPing(i)).map((r) => getHeader(r, 'Token')));
        t.equal(tokens.size, 1, 'one rotation, then its replays');
        t.ok(result.serverEnded, 'then the server ended its side');
      });
    }

    await t.test('40 HTTP requests, then FIN: 40 responses, then the close', async (t) => {
      const token = await loginToken(server);
      const requests = Array.from({ length: 40 }, (_, i) => `GET /hello HTTP/1.1\r\nHost: x\r\nToken: ${token}\r\nX-Seq: ${i}\r\n\r\n`);
      const socket = await connectTo(server.httpPort, clientTls);
      const result = await halfClose(socket, Buffer.from(requests.join(''), 'latin1'));
      const responses = parseHttpResponses(result.bytes);
      t.equal(responses.length, 40, 'one response per request');
      t.ok(responses.every((r) => r.status === 200 && r.body.toString() === 'hello, alice'), 'every one a 200 hello');
      t.ok(result.serverEnded, 'then the server ended its side');
    });
  });
}

/**
 * The operations listener under idle sockets: one peer may hold at most 8 of its 64 slots, so
 * it cannot turn the probes red, and a socket that sends nothing is dropped within seconds.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { startOpsServer, textLog } from './helpers.ts';

const open = (port: number, localAddress = '127.0.0.1') =>
  new Promise<net.Socket>((resolve, reject) => {
    // Read (and drop) what comes, so the server's FIN is seen and 'close' fires.
    const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket.resume()));
    socket.once('error', reject);
  });
const closed = (socket: net.Socket) => new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
const probe = (port: number, localAddress: string) =>
  new Promise<number>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/livez', agent: false, localAddress }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.setTimeout(5_000, () => req.destroy(new Error('no answer in 5 s')));
    req.once('error', reject);
  });

t.test('idle sockets from one address cannot hold the probes shut', async (t) => {
  const ops = await startOpsServer({ log: textLog('fatal').log });
  t.teardown(() => ops.close());
  const idle = await Promise.all(Array.from({ length: 8 }, () => open(ops.opsPort)));
  for (const socket of idle) socket.on('error', () => {});
  const ninth = await open(ops.opsPort);
  ninth.on('error', () => {});
  await closed(ninth);
  t.pass('a ninth socket from the same address is dropped at once');
  t.equal(await probe(ops.opsPort, '127.0.0.2'), 200, 'a probe from another address is answered meanwhile');
  // The idle ones are dropped by the listener's own deadline (headers within 2 s of connecting, checked every 0.5 s).
  await Promise.all(idle.map(closed));
  t.pass('the idle sockets were dropped by the server');
  t.equal(await probe(ops.opsPort, '127.0.0.1'), 200, 'and the first address is answered again');
});

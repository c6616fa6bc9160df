/**
 * Connection caps and the listen backlog on every listener: one source address may hold at most
 * connection.maxConnectionsPerAddress connections (the one over it is refused like one over the
 * global cap), another address is still served, and a closed connection frees its slot.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { DEFAULTS, resolveConfig } from '../../src/config/defaults.ts';
import { getHeader } from '../../src/wire/index.ts';
import type { StreamListener } from '../../src/transport/tcp.ts';
import { parseFrames, parseHttpResponses, Probe, startServer, until, type TestServer } from './helpers.ts';

const PER_ADDRESS = 3;
const OTHER = '127.0.0.2'; // another loopback address: Linux routes all of 127/8 to lo

interface Kind {
  name: string;
  port: (server: TestServer) => number;
  listener: (server: TestServer) => { connections: number };
  request: Buffer;
  /** Replies received so far: status and Error code of each. */
  answers: (bytes: Buffer) => Array<{ status: number; code: string | undefined }>;
}

const KINDS: Kind[] = [
  {
    name: 'TCP',
    port: (s) => s.tcpPort,
    listener: (s) => s.server.tcp,
    request: Buffer.from('GET /rotor/ping ROTOR/1\r\n\r\n'),
    answers: (bytes) => parseFrames(bytes).map((f) => ({ status: f.status, code: getHeader(f, 'Error') })),
  },
  {
    name: 'HTTP',
    port: (s) => s.httpPort,
    listener: (s) => s.server.http!,
    request: Buffer.from('GET /rotor/ping HTTP/1.1\r\nHost: x\r\n\r\n'),
    answers: (bytes) => parseHttpResponses(bytes).map((r) => ({ status: r.status, code: r.header('error') })),
  },
];

/** Ask once on `probe` and wait for the answer (or the close). */
async function ask(kind: Kind, probe: Probe): Promise<{ status: number; code: string | undefined } | undefined> {
  const before = kind.answers(probe.bytes).length;
  probe.socket.write(kind.request);
  await until(() => kind.answers(probe.bytes).length > before || probe.closed);
  return kind.answers(probe.bytes)[before];
}

const served = { status: 200, code: undefined };
const refused = { status: 503, code: 'ROTOR_E_TOO_MANY_CONNECTIONS' };

t.test('the per-address cap and the backlog have their defaults and are validated', async (t) => {
  t.equal(DEFAULTS.connection.maxConnectionsPerAddress, 256);
  t.ok(DEFAULTS.connection.maxConnectionsPerAddress <= DEFAULTS.connection.maxConnections, 'per address within the global cap');
  t.equal(DEFAULTS.connection.listenBacklog, 4096);
  t.throws(() => resolveConfig({ connection: { maxConnectionsPerAddress: 0 } }), /maxConnectionsPerAddress/);
  t.doesNotThrow(() => resolveConfig({ connection: { maxConnections: 2 } }), 'a low global cap needs no lower per-address one');
  t.throws(() => resolveConfig({ connection: { listenBacklog: 0 } }), /listenBacklog/);
});

for (const kind of KINDS) {
  t.test(`${kind.name}: ${PER_ADDRESS} connections per address`, async (t: Test) => {
    const server = await startServer({ config: { connection: { maxConnectionsPerAddress: PER_ADDRESS } } });
    t.teardown(() => server.close());
    const port = kind.port(server);
    const probes: Probe[] = [];
    t.teardown(() => probes.forEach((p) => p.socket.destroy()));
    const open = async (from: string) => {
      const probe = await Probe.open(port, from);
      probes.push(probe);
      return probe;
    };

    const mine: Probe[] = [];
    for (let i = 0; i < PER_ADDRESS; i++) {
      mine.push(await open('127.0.0.1'));
      t.strictSame(await ask(kind, mine[i]), served, `connection ${i + 1} from 127.0.0.1 is served`);
    }
    const over = await open('127.0.0.1');
    t.strictSame(await ask(kind, over), refused, `connection ${PER_ADDRESS + 1} from 127.0.0.1 is refused with ROTOR_E_TOO_MANY_CONNECTIONS`);
    await until(() => over.closed);
    t.equal(kind.answers(over.bytes).length, 1, 'only the refusal, then the close');

    const other = await open(OTHER);
    t.strictSame(await ask(kind, other), served, `a connection from ${OTHER} is still served`);
    for (const probe of mine) t.strictSame(await ask(kind, probe), served, 'the first ones still are');

    // Closing one frees its slot once the server has seen the close.
    mine[0].socket.destroy();
    await until(() => mine[0].closed);
    await until(() => kind.listener(server).connections === PER_ADDRESS);
    const again = await open('127.0.0.1');
    t.strictSame(await ask(kind, again), served, 'after one closed, a new connection from 127.0.0.1 is served');
    const overAgain = await open('127.0.0.1');
    t.strictSame(await ask(kind, overAgain), refused, 'and the one after it is refused again');
  });
}

t.test('WebSocket upgrades count against their address too', async (t) => {
  const server = await startServer({ config: { connection: { maxConnectionsPerAddress: 1 } } });
  t.teardown(() => server.close());
  const url = `ws://127.0.0.1:${server.httpPort}/rotor/ws`;
  const connect = (from: string) =>
    new Promise<{ ws?: WebSocket; status?: number; code?: string }>((resolve, reject) => {
      const ws = new WebSocket(url, { localAddress: from, perMessageDeflate: false });
      ws.once('open', () => resolve({ ws }));
      ws.once('unexpected-response', (_req, res) => {
        resolve({ status: res.statusCode, code: res.headers.error as string | undefined });
        res.resume();
      });
      ws.once('error', reject);
    });
  const first = await connect('127.0.0.1');
  t.ok(first.ws, 'the first WebSocket from 127.0.0.1 opens');
  t.teardown(() => first.ws?.terminate());
  t.strictSame(await connect('127.0.0.1'), { status: 503, code: 'ROTOR_E_TOO_MANY_CONNECTIONS' }, 'the second is refused');
  const other = await connect(OTHER);
  t.ok(other.ws, `one from ${OTHER} opens`);
  other.ws?.terminate();
});

t.test('every listener listens with connection.listenBacklog (as the kernel caps it)', async (t) => {
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  const backlog = 100; // under any somaxconn Linux ships, and not node's 511
  for (const tls of [false, true]) {
    const server = await startServer({ tls, config: { connection: { listenBacklog: backlog } } });
    for (const [name, port] of [[tls ? 'TLS' : 'TCP', server.tcpPort], [tls ? 'HTTPS' : 'HTTP', server.httpPort]] as const) {
      // A listening socket's Send-Q in `ss` is its backlog.
      const { stdout } = await promisify(execFile)('ss', ['-ltnH', `sport = :${port}`]);
      t.equal(Number(stdout.trim().split(/\s+/)[2]), Math.min(backlog, somaxconn), `${name} backlog`);
    }
    await server.close();
  }
});

t.test('TLS: sockets count from the moment they connect, before any handshake', async (t) => {
  const server = await startServer({ tls: true, config: { connection: { maxConnectionsPerAddress: PER_ADDRESS } } });
  t.teardown(() => server.close());
  // Plain TCP to the TLS port: no ClientHello ever comes, yet each holds a slot.
  const silent = await Promise.all(Array.from({ length: PER_ADDRESS }, () => Probe.open(server.tcpPort)));
  const over = await Probe.open(server.tcpPort);
  await until(() => over.closed);
  t.ok(over.closed, 'one more from the same address is dropped before its handshake');
  t.equal(silent.filter((p) => p.closed).length, 0, 'the silent ones still hold their slots');
  const other = await Probe.open(server.tcpPort, OTHER);
  t.notOk(other.closed, 'another address still connects');
  // Resets: a FIN alone leaves a half-open, handshake-less socket until the handshake deadline.
  other.socket.resetAndDestroy();
  silent[0].socket.resetAndDestroy();
  await until(() => silent[0].closed);
  await until(() => (server.server.tcp as StreamListener).admitted === PER_ADDRESS - 1);
  const next = await Probe.open(server.tcpPort);
  await until(() => (server.server.tcp as StreamListener).admitted === PER_ADDRESS);
  t.notOk(next.closed, 'a freed slot takes the next one: admitted, not dropped');
  for (const p of [...silent, next]) p.socket.resetAndDestroy();
});

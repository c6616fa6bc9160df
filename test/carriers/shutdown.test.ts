/**
 * Shutdown is the same on every carrier (spec.md §7 "Shutdown"): each connection reads no more
 * frames; frames already dispatched get their replies, in order; frames received but not yet
 * dispatched are not run; then one ROTOR_E_SHUTTING_DOWN error frame and the close (over
 * WebSocket that frame as a binary message, then close 1001). Over HTTP the first request not
 * yet started gets the 503 instead, and an idle keep-alive connection is closed without a word.
 *
 * Three connections per carrier at shutdown, with connection.maxInFlight 1: an idle one, a busy
 * one (its one request blocked in the application until the test releases it) and a pipelining
 * one (three requests: a blocked one and two pings behind it). Counts and events, no clocks.
 */
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import WebSocket from 'ws';
import type { RotorApp } from '../../src/server/index.ts';
import { getHeader, type Frame } from '../../src/wire/index.ts';
import { loginToken, parseFrames, parseHttpResponses, startServer, testApp, until, type TestServer } from './helpers.ts';

/** The test app plus `GET /held`, which answers only when the test calls `releaseAll()`; `started` counts the runs. */
function blockingApp(): { app: RotorApp; started: () => number; releaseAll: () => void } {
  const base = testApp();
  const waiting: Array<() => void> = [];
  let started = 0;
  const app: RotorApp = {
    tasks: base.tasks,
    routes: {
      ...base.routes,
      'GET /held': () =>
        new Promise((resolve) => {
          started++;
          waiting.push(() => resolve({ body: 'done' }));
        }),
    },
  };
  return { app, started: () => started, releaseAll: () => waiting.splice(0).forEach((release) => release()) };
}

/** One client connection: what it got (each reply as `status code`, or for HTTP `status code connection`), and how it ended. */
interface Peer {
  send(requests: string[]): void;
  replies(): string[];
  /** Bytes that are not a whole reply (none expected). */
  leftover(): number;
  closed(): boolean;
  /** WebSocket only: the close code and reason. */
  close?: () => [number | undefined, string];
  destroy(): void;
}

interface Kind {
  name: string;
  port: (server: TestServer) => number;
  open(server: TestServer, port: number): Promise<Peer>;
  /** One request for `path` (with `token` if given), as this carrier sends it. */
  request(path: string, token?: string): string;
}

function streamPeer(socket: net.Socket, summarize: (bytes: Buffer) => { replies: string[]; used: number }): Peer {
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.once('close', () => (closed = true));
  return {
    send: (requests) => socket.write(requests.join('')),
    replies: () => summarize(Buffer.concat(chunks)).replies,
    leftover: () => {
      const bytes = Buffer.concat(chunks);
      return bytes.length - summarize(bytes).used;
    },
    closed: () => closed,
    destroy: () => socket.destroy(),
  };
}

const connectStream = (server: TestServer, port: number): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port };
    const socket = server.tls
      ? tls.connect({ ...options, ca: server.tls.cert, servername: 'localhost' }, () => resolve(socket))
      : net.connect(options, () => resolve(socket));
    socket.once('error', reject);
  });

const frameSummary = (bytes: Buffer) => {
  const frames = parseFrames(bytes);
  const used = frames.reduce((sum, f) => sum + frameLength(f), 0);
  return { replies: frames.map((f) => `${f.status} ${getHeader(f, 'Error') ?? '-'}`), used };
};

/** The byte length of a reply frame as rotor writes it (only to tell whether bytes were left over). */
function frameLength(frame: Frame & { kind: 'response' }): number {
  let length = `ROTOR/1 ${frame.status} ${frame.reason}\r\n`.length + 2;
  for (const [name, value] of frame.headers) length += Buffer.byteLength(`${name}: ${value}\r\n`);
  if (frame.body !== undefined) length += `BIN-Length: ${frame.body.length}\r\n`.length + frame.body.length;
  return length;
}

const httpSummary = (bytes: Buffer) => {
  const responses = parseHttpResponses(bytes);
  return { replies: responses.map((r) => `${r.status} ${r.header('error') ?? '-'} ${r.header('connection') ?? '-'}`), used: responsesEnd(bytes, responses.length) };
};

/** Where the first `count` HTTP responses in `bytes` end. */
function responsesEnd(bytes: Buffer, count: number): number {
  let at = 0;
  for (let i = 0; i < count; i++) {
    const end = bytes.indexOf('\r\n\r\n', at);
    const head = bytes.toString('latin1', at, end);
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    at = end + 4 + length;
  }
  return at;
}

const STREAM: Kind = {
  name: 'TCP',
  port: (server) => server.tcpPort,
  open: async (server, port) => streamPeer(await connectStream(server, port), frameSummary),
  request: (path, token) => `GET ${path} ROTOR/1\r\n${token ? `Token: ${token}\r\n` : ''}\r\n`,
};

const HTTP: Kind = {
  name: 'HTTP',
  port: (server) => server.httpPort,
  open: async (server, port) => streamPeer(await connectStream(server, port), httpSummary),
  request: (path, token) => `GET ${path} HTTP/1.1\r\nHost: x\r\n${token ? `Token: ${token}\r\n` : ''}\r\n`,
};

const WS: Kind = {
  name: 'WS',
  port: (server) => server.httpPort,
  open: (server, port) =>
    new Promise((resolve, reject) => {
      const url = `ws${server.tls ? 's' : ''}://127.0.0.1:${port}/rotor/ws`;
      const socket = new WebSocket(url, { perMessageDeflate: false, ...(server.tls ? { ca: server.tls.cert, servername: 'localhost' } : {}) });
      const messages: Buffer[] = [];
      let close: [number | undefined, string] = [undefined, ''];
      let closed = false;
      socket.on('message', (data: Buffer) => messages.push(data));
      socket.once('close', (code, reason) => {
        close = [code, reason.toString()];
        closed = true;
      });
      socket.once('error', reject);
      socket.once('open', () =>
        resolve({
          send: (requests) => requests.forEach((request) => socket.send(Buffer.from(request), { binary: true })),
          replies: () =>
            messages.map((message) => {
              const frames = parseFrames(message);
              return frames.length === 1 ? `${frames[0].status} ${getHeader(frames[0], 'Error') ?? '-'}` : `${frames.length} frames in one message`;
            }),
          leftover: () => 0,
          closed: () => closed,
          close: () => close,
          destroy: () => socket.terminate(),
        }),
      );
    }),
  request: STREAM.request,
};

const SHUT = '503 ROTOR_E_SHUTTING_DOWN';

for (const secure of [false, true]) {
  t.test(secure ? 'TLS, HTTPS, WSS' : 'TCP, HTTP, WS', async (t) => {
    const kinds = secure ? [{ ...STREAM, name: 'TLS' }, { ...HTTP, name: 'HTTPS' }, { ...WS, name: 'WSS' }] : [STREAM, HTTP, WS];
    const blocking = blockingApp();
    const server = await startServer({ tls: secure, app: blocking.app, config: { connection: { maxInFlight: 1 } } });
    t.teardown(() => server.close());
    const rotor = server.server.rotor;
    const dispatch = rotor.dispatch.bind(rotor);
    const dispatched: string[] = [];
    rotor.dispatch = (frame: Frame, ...rest) => {
      if (frame.kind === 'request') dispatched.push(frame.path);
      return dispatch(frame, ...rest);
    };

    const peers: Array<{ kind: Kind; idle: Peer; busy: Peer; pipelining: Peer }> = [];
    for (const kind of kinds) {
      const port = kind.port(server);
      const idle = await kind.open(server, port);
      if (kind === HTTP || kind.name === 'HTTPS') {
        // An idle keep-alive connection: one request answered, then nothing.
        idle.send([kind.request('/rotor/ping')]);
        await until(() => idle.replies().length === 1);
      }
      const busy = await kind.open(server, port);
      const pipelining = await kind.open(server, port);
      const before = blocking.started();
      busy.send([kind.request('/held', await loginToken(server))]);
      pipelining.send([kind.request('/held', await loginToken(server)), kind.request('/rotor/ping'), kind.request('/rotor/ping')]);
      await until(() => blocking.started() === before + 2);
      peers.push({ kind, idle, busy, pipelining });
      t.teardown(() => [idle, busy, pipelining].forEach((peer) => peer.destroy()));
    }
    const pingsBefore = dispatched.filter((path) => path === '/rotor/ping').length;

    const closing = server.close();
    blocking.releaseAll();
    await closing;
    await until(() => peers.every((p) => p.idle.closed() && p.busy.closed() && p.pipelining.closed()));

    t.equal(blocking.started(), 2 * kinds.length, 'only the requests dispatched before the shutdown ran');
    t.equal(dispatched.filter((path) => path === '/rotor/ping').length, pingsBefore, 'no frame waiting behind the in-flight one was dispatched');

    for (const { kind, idle, busy, pipelining } of peers) {
      if (kind.name.startsWith('HTTP')) {
        t.strictSame(idle.replies(), ['200 - keep-alive'], `${kind.name} idle keep-alive: closed without a response`);
        t.strictSame(busy.replies(), ['200 - close'], `${kind.name} busy: its request answered with Connection: close`);
        t.strictSame(pipelining.replies(), ['200 - keep-alive', `${SHUT} close`], `${kind.name} pipelining: the one in flight answered, the next one 503, the third nothing`);
      } else {
        t.strictSame(idle.replies(), [SHUT], `${kind.name} idle: one ROTOR_E_SHUTTING_DOWN frame`);
        t.strictSame(busy.replies(), ['200 -', SHUT], `${kind.name} busy: its reply, then ROTOR_E_SHUTTING_DOWN`);
        t.strictSame(pipelining.replies(), ['200 -', SHUT], `${kind.name} pipelining: the reply in flight, then ROTOR_E_SHUTTING_DOWN; the two waiting are not run`);
      }
      for (const [what, peer] of [['idle', idle], ['busy', busy], ['pipelining', pipelining]] as const) {
        t.ok(peer.closed(), `${kind.name} ${what}: closed`);
        t.equal(peer.leftover(), 0, `${kind.name} ${what}: nothing but whole replies`);
        if (peer.close) t.strictSame(peer.close(), [1001, 'ROTOR_E_SHUTTING_DOWN'], `${kind.name} ${what}: close 1001 ROTOR_E_SHUTTING_DOWN`);
      }
    }
  });
}

/**
 * Shared helpers for the carrier tests (not a test file: tap runs only *.test.ts): a server with
 * every carrier on, a throwaway certificate, one description per carrier, and raw clients that
 * send what no well-behaved client would.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { exampleApp } from '../../src/app/example.ts';
import { httpConnect, RotorClient, tcpConnect, wsConnect, type Connect } from '../../src/client/index.ts';
import { resolveConfig, type DeepPartial, type RotorConfig } from '../../src/config/defaults.ts';
import { createLogger, type Logger } from '../../src/log/index.ts';
import { hashPassword, serve, type RotorApp, type RunningServer } from '../../src/server/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { FrameParser, getHeader, type ResponseFrame } from '../../src/wire/index.ts';

export const run = promisify(execFile);

export const USER = 'alice';
export const PASSWORD = 'correct horse';
export const MAX_BODY = 64 * 1024;

export const TEST_CONFIG: DeepPartial<RotorConfig> = {
  host: '127.0.0.1',
  port: 0,
  wire: { maxBodyBytes: MAX_BODY },
  auth: { scryptN: 1024 },
  tasks: { pollIntervalMs: 50 },
  session: { maxMetaBytes: 4096 },
  connection: { shutdownGraceMs: 2_000 },
};

export interface Certificate {
  key: Buffer;
  cert: Buffer;
}

let certificate: Promise<Certificate> | undefined;

/** A self-signed certificate for localhost and 127.0.0.1, made now in a temp dir and deleted at once: no key is ever committed. */
export function throwawayCertificate(): Promise<Certificate> {
  certificate ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rotor-tls-'));
    try {
      const key = path.join(dir, 'key.pem');
      const cert = path.join(dir, 'cert.pem');
      await run('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ]);
      return { key: await readFile(key), cert: await readFile(cert) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return certificate;
}

/** The example application plus routes that let tests see what a carrier delivered (echo) and fill its buffers (big). */
export function testApp(): RotorApp {
  const base = exampleApp();
  const echo = (request: Parameters<RotorApp['routes'][string]>[0]) => ({
    contentType: 'application/json',
    body: JSON.stringify({
      verb: request.verb,
      headers: request.headers,
      body: request.body === undefined ? null : request.body.toString('base64'),
    }),
  });
  return {
    routes: { ...base.routes, 'GET /echo': echo, 'POST /echo': echo, 'FETCH /echo': echo, 'GET /big': () => ({ body: Buffer.alloc(60_000, 0x62) }) },
    tasks: base.tasks,
  };
}

/** The test app plus `GET /slow/<n>`, which takes longer the smaller n is, and counts how many run at once. */
export function slowApp(): { app: RotorApp; most: () => number } {
  const base = testApp();
  let running = 0;
  let most = 0;
  const app: RotorApp = {
    tasks: base.tasks,
    routes: {
      ...base.routes,
      'GET /slow/*': async (request) => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 10 * (10 - Number(request.path.slice(6)))));
        running--;
        return { body: request.path };
      },
    },
  };
  return { app, most: () => most };
}

/** The test app plus `GET /held`, which answers only when `release()` is called. */
export function heldApp(): { app: RotorApp; release: () => void } {
  const base = testApp();
  let release: () => void = () => {};
  const app: RotorApp = {
    tasks: base.tasks,
    routes: { ...base.routes, 'GET /held': () => new Promise((resolve) => (release = () => resolve({ body: 'done' }))) },
  };
  return { app, release: () => release() };
}

/** Log in over TCP (TLS when the server has a certificate) and return the session's first token. */
export async function loginToken(server: { tcpPort: number; tls?: Certificate }): Promise<string> {
  const tls = server.tls ? { ca: server.tls.cert, servername: 'localhost' } : undefined;
  const client = new RotorClient({ connect: tcpConnect({ port: server.tcpPort, tls }) });
  await client.login(USER, PASSWORD);
  client.close();
  return client.token!;
}

export interface LogCapture {
  log: Logger;
  lines: Array<Record<string, unknown>>;
}

export function captureLog(): LogCapture {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  return { log, lines };
}

export interface TestServer {
  server: RunningServer;
  store: MemoryStore;
  config: RotorConfig;
  tls?: Certificate;
  tcpPort: number;
  httpPort: number;
  close(): Promise<void>;
}

export async function startServer(
  options: { tls?: boolean; config?: DeepPartial<RotorConfig>; app?: RotorApp; log?: Logger; tokenApi?: boolean | { dump?: boolean }; store?: MemoryStore } = {},
): Promise<TestServer> {
  const override: DeepPartial<RotorConfig> = {
    ...TEST_CONFIG,
    ...options.config,
    wire: { ...TEST_CONFIG.wire, ...options.config?.wire },
    auth: { ...TEST_CONFIG.auth, ...options.config?.auth },
    tasks: { ...TEST_CONFIG.tasks, ...options.config?.tasks },
    session: { ...TEST_CONFIG.session, ...options.config?.session },
    connection: { ...TEST_CONFIG.connection, ...options.config?.connection },
  };
  const config = resolveConfig(override);
  const store = options.store ?? new MemoryStore();
  await store.putUser({ name: USER, passwordHash: await hashPassword(PASSWORD, config.auth, pooledRandom()), createdAt: 0 });
  const certificate = options.tls ? await throwawayCertificate() : undefined;
  const { log } = options.log ? { log: options.log } : captureLog();
  const server = await serve({
    config: override,
    store,
    app: options.app ?? testApp(),
    log,
    tls: certificate,
    http: { port: 0, ws: true, tokenApi: options.tokenApi ?? true },
    // Some of these tests use a Redis or LMDB store: keys of this server alone are what they want.
    ephemeralKeys: true,
  });
  return {
    server,
    store,
    config: server.rotor.config,
    tls: certificate,
    tcpPort: server.tcp.address.port,
    httpPort: server.http!.address.port,
    close: () => server.close(),
  };
}

/** What a server answered to bad input: status, Error code, and whether it closed the connection. */
export interface Refusal {
  status: number;
  code: string | undefined;
  closed: boolean;
}

/** A way to reach the server, described once and run through the same scenarios as every other. */
export interface Carrier {
  name: string;
  connect: Connect;
  /** Bytes that can never be a rotor request. */
  garbage(): Promise<Refusal>;
  /** A request whose body is larger than wire.maxBodyBytes. */
  oversized(): Promise<Refusal>;
}

const GARBAGE = Buffer.from('HELLO\r\n\r\n');

export function carriers(server: TestServer): Carrier[] {
  const secure = server.tls !== undefined;
  const ca = server.tls?.cert;
  const clientTls = secure ? { ca, servername: 'localhost' } : undefined;
  const s = secure ? 's' : '';
  const openTcp = () => openStream(server.tcpPort, clientTls);
  const openHttp = () => openStream(server.httpPort, clientTls);
  const wsUrl = `ws${s}://127.0.0.1:${server.httpPort}/rotor/ws`;
  const oversizedBody = Buffer.alloc(MAX_BODY + 1, 0x61);
  return [
    {
      name: secure ? 'TLS' : 'TCP',
      connect: tcpConnect({ port: server.tcpPort, tls: clientTls }),
      garbage: async () => frameRefusal(await exchangeRaw(openTcp, GARBAGE)),
      oversized: async () => frameRefusal(await exchangeRaw(openTcp, Buffer.from(`POST /reverse ROTOR/1\r\nBIN-Length: ${MAX_BODY + 1}\r\n\r\n`))),
    },
    {
      name: secure ? 'HTTPS' : 'HTTP',
      connect: httpConnect(`http${s}://127.0.0.1:${server.httpPort}`, { tls: clientTls }),
      garbage: async () => httpRefusal(await exchangeRaw(openHttp, GARBAGE)),
      oversized: async () =>
        httpRefusal(await exchangeRaw(openHttp, Buffer.from(`POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`))),
    },
    {
      name: secure ? 'WSS' : 'WS',
      connect: wsConnect(wsUrl, { tls: clientTls }),
      garbage: async () => wsRefusal(await wsExchangeRaw(wsUrl, clientTls, GARBAGE)),
      oversized: async () =>
        wsRefusal(await wsExchangeRaw(wsUrl, clientTls, Buffer.concat([Buffer.from(`POST /reverse ROTOR/1\r\nBIN-Length: ${MAX_BODY + 1}\r\n\r\n`), oversizedBody]))),
    },
  ];
}

export function openStream(port: number, secure?: tls.ConnectionOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = secure ? tls.connect({ host: '127.0.0.1', port, ...secure }, () => resolve(socket)) : net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A raw connection to 127.0.0.1 from `from` (any loopback address): what it received, and whether it has closed. */
export class Probe {
  readonly received: Buffer[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.received.push(chunk));
    socket.on('error', () => {});
    socket.once('close', () => (this.closed = true));
  }

  static open(port: number, from = '127.0.0.1'): Promise<Probe> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: from }, () => resolve(new Probe(socket)));
      socket.once('error', reject);
    });
  }

  get bytes(): Buffer {
    return Buffer.concat(this.received);
  }
}

export interface RawResult {
  bytes: Buffer;
  closed: boolean;
}

/** Write bytes, then collect everything until the server closes (or `waitMs` passes). */
export async function exchangeRaw(open: () => Promise<net.Socket>, bytes: Buffer, waitMs = 3_000): Promise<RawResult> {
  const socket = await open();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(done, waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.once('close', () => {
      closed = true;
      done();
    });
    socket.write(bytes);
  });
}

export function parseFrames(bytes: Buffer): ResponseFrame[] {
  const { frames } = new FrameParser({ maxLineBytes: 1 << 20, maxHeaderBytes: 1 << 20, maxHeaders: 1000, maxBodyBytes: 1 << 26 }).push(bytes);
  return frames.filter((f): f is ResponseFrame => f.kind === 'response');
}

function frameRefusal(result: RawResult): Refusal {
  const [frame] = parseFrames(result.bytes);
  return { status: frame?.status ?? 0, code: frame ? getHeader(frame, 'Error') : undefined, closed: result.closed };
}

export interface RawHttpResponse {
  status: number;
  headers: Array<[string, string]>;
  header(name: string): string | undefined;
  body: Buffer;
}

/** Split raw bytes into HTTP/1.1 responses (test-side only; every one must have a Content-Length). */
export function parseHttpResponses(bytes: Buffer): RawHttpResponse[] {
  const out: RawHttpResponse[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const lines = bytes.toString('latin1', at, end).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0])?.[1] ?? 0);
    const headers = lines.slice(1).map((line): [string, string] => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()]);
    const header = (name: string) => headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
    const length = Number(header('content-length') ?? 0);
    const body = bytes.subarray(end + 4, end + 4 + length);
    out.push({ status, headers, header, body });
    at = end + 4 + length;
  }
  return out;
}

function httpRefusal(result: RawResult): Refusal {
  const [response] = parseHttpResponses(result.bytes);
  return { status: response?.status ?? 0, code: response?.header('error'), closed: result.closed };
}

export interface WsRawResult {
  messages: Buffer[];
  closeCode: number | undefined;
  closeReason: string;
}

/** Open a WebSocket, send one message (binary unless told), collect replies until the server closes. */
export function wsExchangeRaw(url: string, secure: tls.ConnectionOptions | undefined, ...messages: Array<Buffer | string>): Promise<WsRawResult> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, ...(secure as object) });
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.terminate();
      resolve({ messages: received, closeCode: undefined, closeReason: '' });
    }, 3_000);
    socket.on('message', (data: Buffer) => received.push(data));
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ messages: received, closeCode: code, closeReason: reason.toString() });
    });
    socket.once('open', () => {
      for (const message of messages) socket.send(message, { binary: typeof message !== 'string' });
    });
  });
}

function wsRefusal(result: WsRawResult): Refusal {
  const frames = result.messages.flatMap((message) => parseFrames(message));
  const frame = frames[frames.length - 1];
  return { status: frame?.status ?? 0, code: frame ? getHeader(frame, 'Error') : undefined, closed: result.closeCode !== undefined };
}

export function until(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error('condition not met in time'));
      setTimeout(tick, 10);
    };
    tick();
  });
}

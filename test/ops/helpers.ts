/**
 * Helpers for the operations tests (not a test file: tap runs only *.test.ts): a server with the
 * operations listener on a free port, a raw frame client (so a test decides exactly which frames
 * are sent, lost-reply replays and reuses included), a /metrics parser, and a log captured as text.
 */
import http from 'node:http';
import net from 'node:net';
import { testApp, TEST_CONFIG, USER, PASSWORD } from '../carriers/helpers.ts';
import type { DeepPartial, RotorConfig } from '../../src/config/defaults.ts';
import { createLogger, type Logger } from '../../src/log/index.ts';
import { hashPassword, serve, type RotorApp, type RunningServer } from '../../src/server/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import type { Store } from '../../src/store/types.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { FrameParser, getHeader, serializeFrame, type Header, type ResponseFrame } from '../../src/wire/index.ts';

export { USER, PASSWORD };

/** Everything a logger wrote, as the text it wrote. */
export interface TextLog {
  log: Logger;
  text(): string;
  /** The lines, parsed (JSON lines only). */
  lines(): Array<Record<string, unknown>>;
}

export function textLog(level = 'info'): TextLog {
  let text = '';
  const log = createLogger({ level, destination: { write: (line: string) => void (text += line) } });
  return {
    log,
    text: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

export interface OpsServer {
  server: RunningServer;
  tcpPort: number;
  /** 0 without `http`. */
  httpPort: number;
  opsPort: number;
  close(): Promise<void>;
}

/** A rotor with alice as a user and the operations listener on a free loopback port; TCP, and HTTP with WebSocket when `http`. */
export async function startOpsServer(
  options: { store?: Store; log?: Logger; config?: DeepPartial<RotorConfig>; app?: RotorApp; http?: boolean } = {},
): Promise<OpsServer> {
  const override: DeepPartial<RotorConfig> = {
    ...TEST_CONFIG,
    ...options.config,
    connection: { ...TEST_CONFIG.connection, ...options.config?.connection },
    observability: { ...options.config?.observability },
  };
  const store = options.store ?? new MemoryStore();
  await store.putUser({ name: USER, passwordHash: await hashPassword(PASSWORD, resolveConfig(override).auth, pooledRandom()), createdAt: 0 });
  const server = await serve({
    config: override,
    store,
    app: options.app ?? testApp(),
    log: options.log ?? textLog().log,
    ops: { port: 0, host: '127.0.0.1' },
    http: options.http ? { port: 0, ws: true } : undefined,
    // Some of these tests use a Redis or LMDB store: keys of this server alone are what they want.
    ephemeralKeys: true,
  });
  return { server, tcpPort: server.tcp.address.port, httpPort: server.http?.address.port ?? 0, opsPort: server.ops!.address.port, close: () => server.close() };
}

/** One GET to the operations listener. */
export function opsGet(port: number, path: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.setTimeout(5_000, () => req.destroy(new Error(`GET ${path}: no answer in 5 s`)));
    req.once('error', reject);
  });
}

/** One sample of a Prometheus text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`; throws unless exactly one matches. */
export function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name}${JSON.stringify(labels)}`);
  return found[0].value;
}

export async function scrape(port: number): Promise<Sample[]> {
  const { status, type, body } = await opsGet(port, '/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}: ${body}`);
  if (!type?.startsWith('text/plain')) throw new Error(`/metrics content type ${type}`);
  return parseMetrics(body);
}

/** A raw rotor connection over TCP: one frame out, its reply back, in order. */
export class FrameClient {
  private readonly parser = new FrameParser();
  private readonly replies: ResponseFrame[] = [];
  private waiting: Array<(frame: ResponseFrame) => void> = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.parser.push(chunk).frames) {
        if (frame.kind !== 'response') continue;
        const waiter = this.waiting.shift();
        if (waiter) waiter(frame);
        else this.replies.push(frame);
      }
    });
  }

  static open(port: number): Promise<FrameClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new FrameClient(socket)));
      socket.once('error', reject);
    });
  }

  send(verb: string, path: string, headers: Header[] = [], body?: string): Promise<ResponseFrame> {
    return this.sendAll([{ verb, path, headers, body }])[0];
  }

  /** Several frames in one write: the server reads them in one chunk and dispatches them in the same turn. */
  sendAll(frames: Array<{ verb: string; path: string; headers?: Header[]; body?: string }>): Array<Promise<ResponseFrame>> {
    const bytes = frames.map(({ verb, path, headers = [], body }) =>
      serializeFrame({ kind: 'request', verb, path, headers, body: body === undefined ? undefined : Buffer.from(body) }),
    );
    this.socket.write(Buffer.concat(bytes));
    return frames.map(() => {
      const ready = this.replies.shift();
      return ready ? Promise.resolve(ready) : new Promise<ResponseFrame>((resolve) => this.waiting.push(resolve));
    });
  }

  /** Log in; returns the first token (and throws with the code if refused). */
  async login(user = USER, password = PASSWORD): Promise<string> {
    const reply = await this.send('POST', '/rotor/login', [['User', user], ['Password', password]]);
    return tokenOf(reply);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The next token a reply carries; throws (with its Error code) when it carries none. */
export function tokenOf(reply: ResponseFrame): string {
  const token = getHeader(reply, 'Token');
  if (!token) throw new Error(`no token in the reply: ${reply.status} ${getHeader(reply, 'Error')}`);
  return token;
}

/**
 * The servers a benchmark drives: rotor itself (with any store), and the ceiling — a bare
 * server on the very same framing code (listenStream + StreamConnection + FrameParser) that
 * answers every request with pre-built bytes of the size rotor's answer has, doing no token work.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exampleApp } from '../app/example.ts';
import { DEFAULTS, resolveConfig, type DeepPartial, type RotorConfig } from '../config/defaults.ts';
import { silentLogger } from '../log/index.ts';
import { hashPassword, serve, SERVER_NAME, type RunningServer, type ServeOptions } from '../server/index.ts';
import { reasonFor } from '../errors.ts';
import { createSession } from '../session/machine.ts';
import { pooledRandom } from '../session/random.ts';
import { KeyRing, mintToken } from '../session/token.ts';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/types.ts';
import { listenStream } from '../transport/tcp.ts';
import type { FrameHandler } from '../transport/connection.ts';
import { FrameParser, Reply, serializeFrame, type Frame, type Header, type ResponseFrame } from '../wire/index.ts';
import { BENCH_APP, BENCH_POOL, BENCH_TEMPLATE } from './types.ts';
import { benchApp, benchCodes } from './scenarios.ts';
import { APP, type AppRecord } from '../seal/types.ts';
import { codeId } from '../quotas/codes.ts';
import { freshCode, templateRecord } from '../quotas/templates.ts';

export interface BenchServer {
  /** The TCP port for rotor frames. */
  port: number;
  /** The HTTP port (HTTP fallback and WebSocket upgrades), when the server has one. */
  httpPort?: number;
  /** What the server is: 'echo', or 'rotor/<store kind>'. */
  label: string;
  close(): Promise<void>;
}

export interface RotorServerOptions {
  store?: string;
  dataDir?: string;
  preload?: number;
  user: string;
  password: string;
  config?: DeepPartial<RotorConfig>;
  /** Also listen for HTTP and WebSocket (src/transport/http.ts), on a port of its own. */
  http?: boolean;
}

/** Bench config: loopback, any free port, quiet, room for 32+ frames in flight per connection. */
export function benchConfig(extra: DeepPartial<RotorConfig> = {}): RotorConfig {
  return resolveConfig({
    ...extra,
    host: '127.0.0.1',
    port: 0,
    logLevel: 'error',
    connection: { maxInFlight: 256, ...extra.connection },
  });
}

/** `.js` when this runs compiled (dist/), `.ts` from the sources: how to name a sibling module. */
const OWN_EXT = import.meta.url.endsWith('.js') ? '.js' : '.ts';

/** Open a store by spec: memory here; anything else through src/store/index.ts once it exists. */
export async function openBenchStore(spec: string, dataDir: string): Promise<Store> {
  if (spec === 'memory') return new MemoryStore();
  const index = new URL(`../store/index${OWN_EXT}`, import.meta.url);
  if (!existsSync(fileURLToPath(index))) throw new StoreUnavailable(`store ${spec}: src/store/index.ts not built yet`);
  const mod = (await import(index.href)) as { openStore?: (spec: string, options: { dataDir: string }) => Promise<Store> };
  if (typeof mod.openStore !== 'function') throw new StoreUnavailable('src/store/index.ts has no openStore yet');
  try {
    return await mod.openStore(spec, { dataDir });
  } catch (err) {
    throw new StoreUnavailable(`store ${spec}: ${(err as Error).message}`);
  }
}

export class StoreUnavailable extends Error {
  override name = 'StoreUnavailable';
}

/**
 * Put `count` idle sessions into a store, as logins would leave them (a token hash, no
 * replay copy, no metadata), a window of writes in flight so a durable store can group them.
 */
export async function preloadSessions(store: Store, count: number, user: string, keepIds = false): Promise<string[]> {
  const ids: string[] = [];
  const random = pooledRandom();
  const now = Date.now();
  const expiresAt = now + DEFAULTS.session.tokenTtlMinutes * 60_000;
  const window = store.kind === 'memory' ? 1 : 2_000;
  let done = 0;
  while (done < count) {
    const batch = Math.min(window, count - done);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < batch; i++) {
      const id = random(16).toString('base64url');
      if (keepIds) ids.push(id);
      writes.push(store.createSession(createSession({ id, user, tokenHash: random(16).toString('base64url'), expiresAt, meta: {}, now })));
    }
    await Promise.all(writes);
    done += batch;
  }
  return ids;
}

/** For the quota scenario: a template no exchange of a run can exhaust, and the lot of the lanes' codes. */
async function issueBenchCodes(store: Store): Promise<void> {
  const now = Date.now();
  const template = templateRecord(BENCH_TEMPLATE, { maxBytesTotal: 1e15, usageMs: 365 * 86_400_000 }, now);
  await store.commitRecord('template', template.name, template, 0);
  const codes = benchCodes();
  const records = codes.map((code) => {
    const record = freshCode({ id: codeId(code.replace(/-/g, '')), lot: '', template: template.name, issuer: 'bench', owner: '', issuedAt: now });
    return { id: record.id, value: record };
  });
  await store.createRecords('code', records);
}

/** For the sealed scenario: the bench app, its keys made from the seed the load generator uses too. */
async function registerBenchApp(store: Store): Promise<void> {
  const app = benchApp();
  await store.createRecords<AppRecord>(APP, [{ id: app.id, value: { name: BENCH_APP, publicKey: app.publicKey, instances: 'open', createdAt: Date.now() } }]);
}

/** A cheap password hash for the bench user: the login storm measures rotor, not scrypt's N. */
export function benchPasswordHash(password: string): Promise<string> {
  return hashPassword(password, { ...DEFAULTS.auth, scryptN: 16, scryptR: 1, scryptP: 1 }, pooledRandom());
}

export async function startRotorServer(options: RotorServerOptions): Promise<BenchServer> {
  const spec = options.store ?? 'memory';
  const ownDir = spec === 'memory' || options.dataDir ? undefined : mkdtempSync(join(tmpdir(), 'rotor-bench-'));
  const store = await openBenchStore(spec, options.dataDir ?? ownDir ?? '');
  try {
    await store.putUser({ name: options.user, passwordHash: await benchPasswordHash(options.password), createdAt: Date.now() });
    // For the seats scenario: half as many seats as a 16×32 run has clients, so half of them wait in line.
    await store.putPool({ name: BENCH_POOL, seats: 256, perUser: 0, heartbeatMs: 300_000, maxHoldMs: null, queueLimit: 100_000, perUserQueueLimit: 100_000, createdAt: Date.now() });
    await issueBenchCodes(store);
    await registerBenchApp(store);
    if (options.preload) await preloadSessions(store, options.preload, options.user);
    const serveOptions: ServeOptions & { http?: { port: number; ws: boolean } } = { store, app: exampleApp(), config: benchConfig(options.config), log: silentLogger(), ephemeralKeys: true };
    if (options.http) {
      if (!existsSync(fileURLToPath(new URL(`../transport/http${OWN_EXT}`, import.meta.url)))) throw new StoreUnavailable('not available: src/transport/http.ts not built yet');
      serveOptions.http = { port: 0, ws: true };
    }
    const server = (await serve(serveOptions)) as RunningServer & { http?: { address: { port: number } } };
    if (options.http && !server.http) throw new StoreUnavailable('not available: serve() does not start an HTTP listener yet');
    return {
      port: server.tcp.address.port,
      httpPort: server.http?.address.port,
      label: `rotor/${store.kind}`,
      async close() {
        await server.close();
        await store.close();
        if (ownDir) rmSync(ownDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await store.close().catch(() => undefined);
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Replies of the sizes rotor sends, made once with a real minted token: login, GET /hello,
 * PUT /rotor/token, ping. Anything else gets the /hello answer.
 */
export function echoReplies(user: string): Map<string, Buffer> {
  const random = pooledRandom();
  const keys = KeyRing.generate(random);
  const now = Math.floor(Date.now() / 1000);
  // A generation in the thousands: a few varint bytes, as a session some minutes into a run has.
  const token = mintToken(keys, { session: random(16).toString('base64url'), generation: 5_000, issued: now, ttlMinutes: 120, user }, random);
  const reply = (status: number, headers: Header[], body?: string) =>
    serializeFrame({ kind: 'response', status, reason: reasonFor(status), headers, body: body === undefined ? undefined : Buffer.from(body) });
  return new Map([
    ['POST /rotor/login', reply(200, [['Token', token]])],
    ['GET /hello', reply(200, [['Token', token], ['Content-Type', 'text/plain; charset=utf-8']], `hello, ${user}`)],
    ['PUT /rotor/token', reply(200, [['Token', token], ['Content-Type', 'application/json']], JSON.stringify({ k0: 'v'.repeat(8), k1: 'v'.repeat(9) }))],
    ['GET /rotor/ping', reply(200, [['Server', SERVER_NAME]])],
  ]);
}

/** The ceiling's handler: look the answer up, resolve. No parsing of tokens, no store, no crypto. */
export function echoHandler(user: string): FrameHandler {
  const replies = echoReplies(user);
  const fallback = Reply.fromBytes(replies.get('GET /hello')!);
  const byKey = new Map([...replies].map(([key, bytes]) => [key, Promise.resolve(Reply.fromBytes(bytes))]));
  const fallbackPromise = Promise.resolve(fallback);
  return {
    dispatch(frame: Frame) {
      if (frame.kind !== 'request') return fallbackPromise;
      return byKey.get(`${frame.verb} ${frame.path}`) ?? fallbackPromise;
    },
  };
}

export async function startEchoServer(user: string): Promise<BenchServer> {
  const config = benchConfig();
  const listener = await listenStream(echoHandler(user), config, silentLogger(), { host: config.host, port: 0 });
  return { port: listener.address.port, label: 'echo', close: () => listener.close() };
}

/**
 * The HTTP ceiling: a bare node:http server answering every request with the bytes rotor's HTTP
 * carrier sends for it (status, Token, Content-Type, Cache-Control: no-store, Content-Length,
 * no Date), after reading the request body, doing nothing else.
 */
export async function startHttpEchoServer(user: string): Promise<BenchServer> {
  const answers = new Map<string, { status: number; reason: string; headers: string[]; body: Buffer }>();
  for (const [key, bytes] of echoReplies(user)) {
    const frame = parseReply(bytes);
    const flat: string[] = [];
    for (const [name, value] of frame.headers) flat.push(name, value);
    const body = frame.body ?? Buffer.alloc(0);
    flat.push('Cache-Control', 'no-store', 'Content-Length', String(body.length));
    answers.set(key, { status: frame.status, reason: frame.reason, headers: flat, body });
  }
  const fallback = answers.get('GET /hello')!;
  const server = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = answers.get(`${req.method} ${req.url}`) ?? fallback;
      res.sendDate = false;
      res.writeHead(answer.status, answer.reason, answer.headers);
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    httpPort: port,
    label: 'http-echo',
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function parseReply(bytes: Buffer): ResponseFrame {
  const { frames } = new FrameParser().push(bytes);
  return frames[0] as ResponseFrame;
}

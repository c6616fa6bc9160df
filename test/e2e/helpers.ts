/**
 * Shared helpers for the end-to-end tests (not a test file itself: tap only runs *.test.ts).
 *
 * A real server on 127.0.0.1, port 0, backed by a MemoryStore with one user (alice / pw), and
 * a raw socket client that writes exactly the bytes it is given and parses what comes back;
 * and the real `rotor` command (node bin/rotor.js) run as a user runs it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { serve, hashPassword, type RunningServer, type RotorApp } from '../../src/server/index.ts';
import { resolveConfig, type DeepPartial, type RotorConfig } from '../../src/config/defaults.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { exampleApp } from '../../src/app/example.ts';
import { FrameParser, getHeader, type ResponseFrame } from '../../src/wire/index.ts';

const USER = 'alice';
const PASSWORD = 'pw';

const FAST_AUTH = { scryptN: 1024 };
let aliceHash: Promise<string> | undefined;

export interface TestServer {
  server: RunningServer;
  store: MemoryStore;
  port: number;
  close(): Promise<void>;
}

/** A server with alice in its store; `config` goes over `{ port: 0, auth: { scryptN: 1024 }, logLevel: 'silent' }`. */
export async function startServer(config: DeepPartial<RotorConfig> = {}, app: RotorApp = exampleApp()): Promise<TestServer> {
  const store = new MemoryStore();
  aliceHash ??= hashPassword(PASSWORD, resolveConfig({ auth: FAST_AUTH }).auth, pooledRandom());
  await store.putUser({ name: USER, passwordHash: await aliceHash, createdAt: 0 });
  const server = await serve({
    store,
    app,
    config: { port: 0, logLevel: 'silent', ...config, auth: { ...FAST_AUTH, ...config.auth } },
  });
  return { server, store, port: server.tcp.address.port, close: () => server.close() };
}

export const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A request frame's bytes: start line, headers, and BIN-Length + body when a body is given. */
export function request(verb: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Buffer {
  let head = `${verb} ${path} ROTOR/1\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (body === undefined) return ascii(`${head}\r\n`);
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return Buffer.concat([ascii(`${head}BIN-Length: ${bytes.length}\r\n\r\n`), bytes]);
}

/** Generous limits: the test side must be able to read any reply the server may send. */
const READ_LIMITS = { maxLineBytes: 64 * 1024, maxHeaderBytes: 1 << 20, maxHeaders: 1000, maxBodyBytes: 1 << 28 };

/**
 * One raw TCP connection. Every byte received is parsed as response frames and queued;
 * `end`/`close` of the socket are recorded with their time.
 */
export class RawConn {
  readonly socket: net.Socket;
  readonly frames: ResponseFrame[] = [];
  bytesReceived = 0;
  endedAt = 0;
  closedAt = 0;
  error: NodeJS.ErrnoException | undefined;
  parseError: string | undefined;
  private readonly parser = new FrameParser(READ_LIMITS);
  private waiters: Array<() => void> = [];
  private readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      const { frames, error } = this.parser.push(chunk);
      for (const frame of frames) {
        if (frame.kind !== 'response') this.parseError = 'server sent a request frame';
        else this.frames.push(frame);
      }
      if (error) this.parseError = error.code;
      this.wake();
    });
    socket.on('end', () => {
      this.endedAt = Date.now();
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err;
      this.wake();
    });
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedAt = Date.now();
        this.wake();
        resolve();
      }),
    );
  }

  static connect(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: options.allowHalfOpen ?? false });
      const conn = new RawConn(socket);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(conn);
      });
      socket.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedAt !== 0;
  }

  /** The server's side is done: it ended or the socket is gone. */
  get serverDone(): boolean {
    return this.endedAt !== 0 || this.closedAt !== 0;
  }

  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  /** Wait until `ready()` holds; rejects after `timeoutMs` with `what` in the message. */
  async until(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next response frame (in order); fails if the connection ends first. */
  async next(timeoutMs = 2_000): Promise<ResponseFrame> {
    await this.until(() => this.frames.length > 0 || this.closed || this.parseError !== undefined, timeoutMs, 'a reply');
    if (this.parseError) throw new Error(`server sent bytes that do not parse: ${this.parseError}`);
    const frame = this.frames.shift();
    if (!frame) throw new Error('connection closed before a reply came');
    return frame;
  }

  /** Send one request and read its reply. */
  async call(bytes: Buffer, timeoutMs = 2_000): Promise<ResponseFrame> {
    this.write(bytes);
    return this.next(timeoutMs);
  }

  /** Wait for the socket to be fully closed. */
  async waitClosed(timeoutMs = 2_000): Promise<void> {
    await Promise.race([
      this.closedPromise,
      sleep(timeoutMs).then(() => {
        throw new Error(`connection still open after ${timeoutMs} ms`);
      }),
    ]);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

/** A frame as comparable data: status, Error header, body text. */
export function summary(frame: ResponseFrame): { status: number; error: string | undefined; body: string | undefined } {
  return { status: frame.status, error: getHeader(frame, 'Error'), body: frame.body?.toString('utf8') };
}

/**
 * A logged-in session on its own connection: checks after each hostile input that the server
 * still serves real exchanges (token rotation included) on a connection that was open all along.
 */
export class LiveSession {
  private constructor(
    readonly conn: RawConn,
    public token: string,
  ) {}

  static async open(port: number, meta?: Record<string, unknown>): Promise<LiveSession> {
    const conn = await RawConn.connect(port);
    const reply = await conn.call(request('POST', '/rotor/login', { User: USER, Password: PASSWORD }, meta && JSON.stringify(meta)));
    const token = getHeader(reply, 'Token');
    if (reply.status !== 200 || !token) throw new Error(`login failed: ${JSON.stringify(summary(reply))}`);
    return new LiveSession(conn, token);
  }

  /** GET /hello with the newest token: 200, `hello, alice`, and a new token. */
  async hello(): Promise<{ status: number; body: string | undefined; rotated: boolean; error: string | undefined }> {
    const reply = await this.conn.call(request('GET', '/hello', { Token: this.token }));
    const next = getHeader(reply, 'Token');
    const rotated = next !== undefined && next !== this.token;
    if (next) this.token = next;
    // Cut long bodies so a failed comparison stays readable.
    return { status: reply.status, body: reply.body?.toString('utf8').slice(0, 200), rotated, error: getHeader(reply, 'Error') };
  }

  close(): void {
    this.conn.destroy();
  }
}

/** Keep writing `chunk` until `stop()` holds, the socket fails, or `total` bytes are written; returns the bytes written. */
export async function writeUntil(conn: RawConn, chunk: Buffer, total: number, stop: () => boolean): Promise<number> {
  let written = 0;
  while (written < total && !stop() && !conn.error && !conn.socket.destroyed) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - written));
    written += piece.length;
    if (!conn.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          conn.socket.off('drain', done);
          conn.socket.off('close', done);
          resolve();
        };
        conn.socket.on('drain', done);
        conn.socket.on('close', done);
      });
    } else {
      // Let replies and close events in between writes.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  return written;
}

// --- the rotor command as a child process ------------------------------------------------------
//
// Starting the CLI costs a second or more of CPU (tsx loads the sources), so at most CLI_JOBS
// short-lived commands run at a time; test files start their independent chains at once.

export const BIN = fileURLToPath(new URL('../../bin/rotor.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PTY_RUN = fileURLToPath(new URL('./pty_run.py', import.meta.url));
// A guard against a hung child only: on a loaded machine a start can take many seconds.
const SPAWN_TIMEOUT_MS = 60_000;
const CLI_JOBS = 3;

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliInput {
  /** Variables set for the command (ROTOR_PASSWORD is unset unless given here). */
  env?: Record<string, string>;
  /** Written to the command's stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string;
  /** Where it runs (default: the repository). */
  cwd?: string;
}

export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.ROTOR_PASSWORD; // passwords come from where each test says only
  delete env.NODE_OPTIONS; // tap's process tracking is no use to the CLI, and costs each start time
  return { ...env, ...extra };
}

export function startCli(args: string[], input: CliInput = {}, command = [process.execPath, BIN]): { child: ChildProcess; done: Promise<Run> } {
  const stdin = input.stdin === undefined ? 'ignore' : 'pipe';
  const child = spawn(command[0], [...command.slice(1), ...args], { cwd: input.cwd ?? ROOT, stdio: [stdin, 'pipe', 'pipe'], env: cliEnv(input.env) });
  if (input.stdin !== undefined) child.stdin!.end(input.stdin);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT_MS);
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

let running = 0;
const waiting: Array<() => void> = [];

/** One short-lived command, once fewer than CLI_JOBS are running. */
export const cli = (...args: string[]): Promise<Run> => cliWith({}, ...args);

export async function cliWith(input: CliInput, ...args: string[]): Promise<Run> {
  return queued(() => startCli(args, input).done);
}

/**
 * `rotor ARGS` on a pseudo-terminal of its own (test/e2e/pty_run.py): `keys` and Enter are
 * typed once `prompt` shows. Gives what the terminal showed, the echo of the typing included.
 */
export async function cliOnTerminal(prompt: string, keys: string, ...args: string[]): Promise<{ shown: string; typed: boolean; code: number }> {
  const run = await queued(() => startCli([prompt, keys, process.execPath, BIN, ...args], {}, ['python3', PTY_RUN]).done);
  if (run.code !== 0) throw new Error(`pty_run.py failed: ${JSON.stringify(run)}`);
  return JSON.parse(run.stdout);
}

export async function queued<T>(job: () => Promise<T>): Promise<T> {
  if (running >= CLI_JOBS) await new Promise<void>((resolve) => waiting.push(resolve));
  else running++;
  try {
    return await job();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Connect once the server listens (a starting CLI takes a while). */
export async function connectWhenUp(port: number, exited: () => boolean): Promise<RawConn> {
  const deadline = Date.now() + SPAWN_TIMEOUT_MS;
  for (;;) {
    try {
      return await RawConn.connect(port);
    } catch (err) {
      if (exited() || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** A long-running `rotor` (serve, token-server) started by a test. */
export interface CliServer {
  child: ChildProcess;
  /** Resolves when it exits, with all it wrote. */
  done: Promise<Run>;
  /** SIGTERM (or `signal`), then what it wrote once it exited. */
  stop(signal?: NodeJS.Signals): Promise<Run>;
}

/**
 * `rotor ARGS` left running, once something accepts connections on `port`; rejects, with what
 * the command said, if it exits before. Killed at the end of the test file whatever happens.
 */
export async function startCliServer(args: string[], port: number, input: CliInput = {}): Promise<CliServer> {
  const { child, done } = startCli(args, input);
  let exited = false;
  void done.then(() => (exited = true));
  process.once('exit', () => child.kill('SIGKILL'));
  try {
    (await connectWhenUp(port, () => exited)).destroy();
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`rotor ${args.join(' ')} did not come up on port ${port} (${(err as Error).message}): ${JSON.stringify(await done)}`);
  }
  return {
    child,
    done,
    stop: async (signal = 'SIGTERM') => {
      if (!exited) child.kill(signal);
      return done;
    },
  };
}

/** What a client written in Python from spec.md alone did: its exit code, the facts of its last stdout line (JSON), and all it wrote. */
export interface PythonRun {
  code: number | null;
  facts: Record<string, unknown>;
  stdout: string;
  stderr: string;
}

/** Run `python3 SCRIPT ARGS…`, killed after `timeoutMs`. */
export function runPython(script: string, args: string[], timeoutMs: number): Promise<PythonRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let facts: Record<string, unknown>;
      try {
        facts = JSON.parse(stdout.trim().split('\n').pop() ?? '');
      } catch {
        facts = { unparsed: stdout };
      }
      resolve({ code, facts, stdout, stderr });
    });
  });
}

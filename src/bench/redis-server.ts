/**
 * A throwaway redis-server for the benchmark and the tests: 127.0.0.1 on a free port, no persistence, its own temp
 * directory. `startRedis()` rejects — loudly, never a skip — when redis-server cannot be
 * started. `stop()` and `start()` take it down and bring it back on the same port (with no
 * data: nothing is persisted), `pause()` and `resume()` freeze and thaw it, for tests of a
 * store losing and regaining its server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasTaskset } from './spawn.ts';

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port>/0 */
  readonly url: string;
  readonly running: boolean;
  /** Stop the server (SIGTERM, or SIGKILL for a crash) and wait until it has exited. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Start it again on the same port, empty. */
  start(): Promise<void>;
  /** Freeze it (SIGSTOP): connections stay open, nothing is answered. `resume()` thaws it. */
  pause(): void;
  resume(): void;
  /** Stop it for good and remove its directory. */
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 5_000;

export interface StartRedisOptions {
  /** Pin it to this CPU with taskset (the benchmark keeps it off the server's core). */
  cpu?: number;
}

export async function startRedis(binary = 'redis-server', options: StartRedisOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const killOnExit = () => child?.kill('SIGKILL');
  process.on('exit', killOnExit);

  const start = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'];
    const proc =
      options.cpu !== undefined && hasTaskset()
        ? spawn('taskset', ['-c', String(options.cpu), binary, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let output = '';
    proc.stdout!.on('data', (chunk) => (output += chunk));
    proc.stderr!.on('data', (chunk) => (output += chunk));
    const failed = new Promise<never>((_, reject) => {
      proc.once('error', (err) => reject(new Error(`cannot start ${binary}: ${err.message}`)));
      proc.once('exit', (code, signal) => reject(new Error(`${binary} exited (${code ?? signal}) before it was ready:\n${output}`)));
    });
    failed.catch(() => {});
    await Promise.race([failed, waitForPong(port)]).catch((err: Error) => {
      proc.kill('SIGKILL');
      throw new Error(`redis-server could not be started on 127.0.0.1:${port}: ${err.message}\n${output}`);
    });
  };

  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
  };

  const forget = () => {
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };
  await start().catch((err) => {
    forget();
    throw err;
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    get running() {
      return child !== undefined;
    },
    stop,
    start,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    async close() {
      await stop('SIGKILL');
      forget();
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Poll until the server answers PING, for at most READY_TIMEOUT_MS. */
async function waitForPong(port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (await ping(port)) return;
    if (Date.now() > deadline) throw new Error(`no PONG within ${READY_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

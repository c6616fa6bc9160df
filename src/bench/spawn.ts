/**
 * Child processes of a benchmark (servers, load generators, memory probes), each pinned to a
 * CPU with taskset when there is one, talking to the parent over the IPC channel only: their
 * stdout and stderr go to the parent's stderr, so a `--json` result on stdout stays clean.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
// Compiled (dist/bench/*.js, what `rotor bench` runs) or the sources through tsx: the child
// runs the same way this module does — or compiled whatever this module is, with
// ROTOR_BENCH_COMPILED=1 (`npm run bench`: the servers measured are what `rotor serve` runs,
// without the loader's code in every function; `npm run build` first).
const COMPILED = import.meta.url.endsWith('.js') || process.env.ROTOR_BENCH_COMPILED === '1';
const CHILD = fileURLToPath(new URL(import.meta.url.endsWith('.js') ? './child.js' : COMPILED ? '../../dist/bench/child.js' : './child.ts', import.meta.url));

let tasksetChecked: boolean | undefined;
/** Whether `taskset` is on this machine (util-linux). */
export function hasTaskset(): boolean {
  tasksetChecked ??= spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0;
  return tasksetChecked;
}

/** Pin every thread of a running process to one CPU; false when that is not possible here. */
export function pinProcess(pid: number, cpu: number): boolean {
  if (!hasTaskset()) return false;
  return spawnSync('taskset', ['-a', '-pc', String(cpu), String(pid)], { stdio: 'ignore' }).status === 0;
}

export interface ChildOptions {
  cpu?: number;
  nodeFlags?: string[];
  /** Give up when the child has not said it is ready within this long. */
  readyTimeoutMs?: number;
}

export interface ChildHandle<Ready> {
  readonly pid: number;
  readonly ready: Ready;
  /** Ask the child something; it answers with a message of the same `type`. */
  ask<T>(message: { type: string; [key: string]: unknown }): Promise<T>;
  /** The next message of this type the child sends (or has sent and nobody took yet). */
  wait<T>(type: string): Promise<T>;
  /** Ask it to stop and wait for it to exit (killed after a grace). */
  stop(): Promise<void>;
}

/**
 * Start `src/bench/child.ts` in `role` with `payload`, wait for its `ready` message. A child
 * that fails before that rejects with the message it sent (`{type:'error'}`) or its exit code.
 */
export function startChild<Ready>(role: string, payload: unknown, options: ChildOptions = {}): Promise<ChildHandle<Ready>> {
  const loader = COMPILED ? [] : ['--import', pathToFileURL(require.resolve('tsx')).href];
  const nodeArgs = [...(options.nodeFlags ?? []), ...loader, CHILD, role, JSON.stringify(payload)];
  const pinned = options.cpu !== undefined && hasTaskset();
  const child: ChildProcess = pinned
    ? spawn('taskset', ['-c', String(options.cpu), process.execPath, ...nodeArgs], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    : spawn(process.execPath, nodeArgs, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  // A child that already went away makes a late send fail with EPIPE: nothing to do about it.
  child.on('error', () => undefined);
  child.stdout!.on('data', (chunk) => process.stderr.write(chunk));
  child.stderr!.on('data', (chunk) => process.stderr.write(chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waiting = new Map<string, Array<(message: unknown) => void>>();
  const inbox: Array<{ type: string }> = [];
  let failure: ((err: Error) => void) | undefined;

  child.on('message', (raw) => {
    const message = raw as { type: string; message?: string };
    if (message.type === 'error') {
      failure?.(new Error(message.message ?? 'child failed'));
      return;
    }
    const resolve = waiting.get(message.type)?.shift();
    if (resolve) resolve(message);
    else inbox.push(message);
  });
  const next = <T>(type: string) =>
    new Promise<T>((resolve, reject) => {
      const early = inbox.findIndex((m) => m.type === type);
      if (early !== -1) return resolve(inbox.splice(early, 1)[0] as T);
      const queue = waiting.get(type) ?? [];
      queue.push(resolve as (message: unknown) => void);
      waiting.set(type, queue);
      failure = reject;
      void exited.then((code) => reject(new Error(`${role} child exited (code ${code}) before answering ${type}`)));
    });

  return (async () => {
    const timeoutMs = options.readyTimeoutMs ?? 600_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const ready = await Promise.race([
        next<Ready>('ready'),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${role} child not ready within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      if (timer) clearTimeout(timer);
      return {
        pid: child.pid!,
        ready,
        ask<T>(message: { type: string }) {
          const answer = next<T>(message.type);
          child.send(message);
          return answer;
        },
        wait: next,
        async stop() {
          if (child.exitCode !== null) return;
          if (child.connected) child.send({ type: 'stop' }, (err) => err && child.kill('SIGTERM'));
          const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          await exited;
          clearTimeout(killer);
        },
      };
    } catch (err) {
      if (timer) clearTimeout(timer);
      child.kill('SIGKILL');
      await exited;
      throw err;
    }
  })();
}

/**
 * Shared by the server-level crash tests (not a test file: tap only runs *.test.ts): rotor
 * nodes as child processes (fixtures/node.ts) that can be SIGKILLed and restarted on the same
 * port, the task log they write, and client helpers that ride out a dead node.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { RotorClient, tcpConnect, TransportError } from '../../src/client/index.ts';
import type { TapTest } from '../store/suite.ts';
import { hasEnded } from '../../src/store/records.ts';
import type { Store, TaskRecord } from '../../src/store/types.ts';
import { FrameParser, getHeader } from '../../src/wire/index.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'node.ts');
/** A node that is not listening this long after its spawn fails the test. */
const READY_TIMEOUT_MS = 20_000;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface NodeSpec {
  store: string;
  dataDir: string;
  /** 0: the first start picks a free port, every restart takes the same one. */
  port: number;
  keyFile: string;
  logFile: string;
  taskTimeoutMs: number;
}

/** One rotor node in a child process; `start()` again after `kill()` brings it back on the same port. */
export class RotorNode {
  private child: ChildProcess | undefined;
  /** Every pid this node ran as, and those that were SIGKILLed. */
  readonly pids: number[] = [];
  readonly killed = new Set<number>();
  stderr = '';

  constructor(
    readonly name: string,
    readonly spec: NodeSpec,
  ) {}

  get port(): number {
    return this.spec.port;
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    const { store, dataDir, port, keyFile, logFile, taskTimeoutMs } = this.spec;
    const args = ['--import', 'tsx', FIXTURE, store, dataDir, String(port), keyFile, logFile, String(taskTimeoutMs)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    // Should the test process end without its teardown, the node goes with it.
    const killOnExit = () => child.kill('SIGKILL');
    process.on('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    child.stderr!.on('data', (chunk) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready within ${READY_TIMEOUT_MS} ms:\n${this.stderr}`)), READY_TIMEOUT_MS);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.startsWith('ROTOR_READY ')) return;
        this.spec.port = Number(line.split(' ')[2]);
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code ?? signal}) before it was ready:\n${this.stderr}`));
      });
    });
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    try {
      await ready;
    } catch (err) {
      await this.kill();
      throw err;
    }
    this.pids.push(child.pid!);
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    this.killed.add(child.pid!);
    this.child = undefined;
  }
}

export interface TaskLine {
  pid: number;
  at: number;
  /** The claim's attempt number the handler was given. */
  attempt: number;
}
export interface TaskRuns {
  starts: TaskLine[];
  finishes: TaskLine[];
  skips: TaskLine[];
  /** The attempt of each run (its `start` or `skip` line), in log order. */
  attempts: number[];
}

export const noRuns = (): TaskRuns => ({ starts: [], finishes: [], skips: [], attempts: [] });

/** The task log, by task id, lines in file order. */
export function readTaskLog(file: string): Map<string, TaskRuns> {
  const runs = new Map<string, TaskRuns>();
  if (!existsSync(file)) return runs;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const [what, id, pid, at, attempt] = line.split(' ');
    let entry = runs.get(id);
    if (!entry) runs.set(id, (entry = noRuns()));
    const record = { pid: Number(pid), at: Number(at), attempt: Number(attempt) };
    if (!Number.isInteger(record.attempt)) throw new Error(`bad log line ${JSON.stringify(line)}`);
    if (what === 'start') entry.starts.push(record);
    else if (what === 'finish') entry.finishes.push(record);
    else if (what === 'skip') entry.skips.push(record);
    else throw new Error(`bad log line ${JSON.stringify(line)}`);
    if (what !== 'finish') entry.attempts.push(record.attempt);
  }
  return runs;
}

/**
 * What is wrong with one task's runs, or undefined. The guarantee: at most one run per claim.
 * A task may start again only when the process of its earlier start was SIGKILLed before that
 * start's `finish`; a `skip` (the idempotency check saw a `finish`) only after a `finish` by a
 * process that was SIGKILLed (it died before storing the outcome). Every run is a new claim:
 * its attempt number is higher than every earlier run's, so a run again is attempt 2 or more.
 */
export function runProblem(runs: TaskRuns, killed: ReadonlySet<number>): string | undefined {
  if (runs.finishes.length > 1) return `finished ${runs.finishes.length} times`;
  const finisher = runs.finishes[0]?.pid;
  const pids = runs.starts.map((s) => s.pid);
  if (new Set(pids).size !== pids.length) return `started twice by one process: ${pids.join(',')}`;
  for (const start of runs.starts.slice(0, -1)) {
    if (start.pid === finisher) return `started again after process ${start.pid} finished it`;
    if (!killed.has(start.pid)) return `started again though process ${start.pid} was never killed`;
  }
  if (runs.skips.length > 0 && (finisher === undefined || !killed.has(finisher))) return `skipped, but its finisher ${finisher} was not killed`;
  if (runs.attempts.some((attempt, i) => attempt < 1 || (i > 0 && attempt <= runs.attempts[i - 1]))) {
    return `runs with attempts ${runs.attempts.join(',')}: each run must be a later claim than the one before`;
  }
  return undefined;
}

/**
 * Poll `store` until every task in `ids` has ended (done, failed or timed out), or until
 * `limitMs` — a guard against a hang, not a deadline anything is expected to meet.
 */
export async function waitUntilEnded(store: Store, ids: readonly string[], limitMs: number): Promise<{ ended: Map<string, TaskRecord>; missing: string[] }> {
  const giveUpAt = Date.now() + limitMs;
  const ended = new Map<string, TaskRecord>();
  let missing = [...ids];
  for (;;) {
    const records = await Promise.all(missing.map((id) => store.loadTask(id)));
    records.forEach((record, i) => {
      if (record && hasEnded(record.status)) ended.set(missing[i], record);
    });
    missing = missing.filter((id) => !ended.has(id));
    if (missing.length === 0 || Date.now() > giveUpAt) return { ended, missing };
    await sleep(200);
  }
}

/**
 * What is wrong between the store's record of an ended task and its runs in the log, or
 * undefined: it did not fail; done means a run finished (its effect is in the log); and the
 * claim that stored the outcome is the task's last run — an earlier, stale claim never did.
 */
export function outcomeProblem(record: TaskRecord, runs: TaskRuns): string | undefined {
  if (record.status === 'failed') return `failed: ${record.error}`;
  if (record.status === 'done' && runs.finishes.length === 0) return 'done in the store, but no run finished';
  const last = runs.attempts[runs.attempts.length - 1];
  if (record.attempt !== last) return `stored by attempt ${record.attempt}, but the last run was attempt ${last}`;
  return undefined;
}

/** A client that connects wherever `target()` points at the moment, with short timeouts. */
export function crashClient(target: () => number, stats: { connects: number; tokens: number } = { connects: 0, tokens: 0 }, timeoutMs = 1000): RotorClient {
  return new RotorClient({
    connect: () => {
      stats.connects++;
      return tcpConnect({ host: '127.0.0.1', port: target(), timeoutMs })();
    },
    retries: 8,
    retryDelayMs: 50,
    onToken: (token) => {
      if (token) stats.tokens++;
    },
  });
}

/**
 * Run `work` until it gets through, calling it again after a TransportError (the node is down:
 * the same token goes out again, so the server replays or proceeds). Anything else is thrown.
 */
export async function persist<T>(work: () => Promise<T>, giveUpMs = 30_000): Promise<T> {
  const deadline = Date.now() + giveUpMs;
  for (;;) {
    try {
      return await work();
    } catch (err) {
      if (!(err instanceof TransportError) || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** Send raw request bytes on a fresh connection; resolve with the raw bytes of the one response. */
export function rawExchange(port: number, bytes: Buffer, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const parser = new FrameParser({ maxLineBytes: 64 * 1024, maxHeaderBytes: 1 << 20, maxHeaders: 1000, maxBodyBytes: 1 << 24 });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => finish(new Error(`no response from ${port} within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    socket.once('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const { frames, error } = parser.push(chunk);
      if (error) finish(new Error(`bad frame: ${error.code}`));
      else if (frames.length > 0) finish();
    });
    socket.once('error', (err) => finish(err));
    socket.once('close', () => finish(new Error('closed before a response')));
  });
}

/**
 * Two nodes on one shared store (the Redis crash tests): a session logged in on A is used on B
 * and on A again; a request sent to A and again to B gets the identical bytes (B replays A's
 * reply); its deferred task, acked on B, runs once, and A reports its result. `allEnded` waits
 * for tasks to end in the store and reads the task log.
 */
export async function sessionMovesAndReplays(
  t: TapTest,
  a: RotorNode,
  b: RotorNode,
  allEnded: (ids: readonly string[]) => Promise<{ runs: Map<string, TaskRuns>; ended: Map<string, TaskRecord>; missing: string[] }>,
): Promise<void> {
  let at = a;
  const client = crashClient(() => at.port);
  await client.login('alice', 'pw');
  at = b;
  client.close();
  t.equal((await client.request('GET', '/read')).status, 200, 'logged in on A, a read on B');
  at = a;
  client.close();
  t.equal((await client.request('GET', '/read')).status, 200, 'and on A again');

  const body = '{"ms":0}';
  const frame = Buffer.from(`POST /job ROTOR/1\r\nToken: ${client.token}\r\nBIN-Length: ${body.length}\r\n\r\n${body}`, 'latin1');
  const first = await rawExchange(a.port, frame);
  const again = await rawExchange(b.port, frame);
  t.ok(first.equals(again), 'the same frame sent again to B gets the identical bytes A sent');
  const { frames } = new FrameParser({ maxLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 100, maxBodyBytes: 65536 }).push(first);
  const reply = frames[0];
  t.equal(reply?.kind === 'response' && reply.status, 202, 'the work was deferred');
  const next = getHeader(reply!, 'Token');
  const taskId = getHeader(reply!, 'Task');
  t.ok(next && taskId, 'with a new token and a task id');
  await client.useToken(next);
  at = b;
  client.close();
  await client.ack();
  const { runs, ended, missing } = await allEnded([taskId!]);
  t.same(missing, [], 'acked on B, the task ran');
  t.equal(runs.get(taskId!)?.starts.length, 1, 'once, though two nodes answered its exchange');
  t.match(ended.get(taskId!), { status: 'done', attempt: 1 }, 'on its first claim');
  at = a;
  client.close();
  const result = await client.task(taskId!);
  t.equal(result.body.toString(), 'done', 'A reports its result');
  client.close();
}

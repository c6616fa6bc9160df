/**
 * Watching processes a test started, for the signal and configuration tests (not a test file
 * itself: tap runs *.test.ts): a child's JSON log lines as they come, the processes below a pid,
 * whether a port still accepts.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** A guard against a hung child only: on a loaded machine a start can take many seconds. */
export const GUARD_MS = 60_000;

/** Every JSON line of a log (other lines, like npm's banner, skipped). */
export function logLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A child's stdout as it comes, to wait for a log line; `exited` when the process itself has (its pipes may outlive it, held by a grandchild). */
export class LogWatch {
  stdout = '';
  readonly exited: Promise<void>;
  private gone = false;
  private waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk) => {
      this.stdout += chunk;
      this.wake();
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stdout!.once('close', () => {
      this.gone = true;
      this.wake();
    });
  }

  /** The first log line for which `match` holds; rejects when the output ends first, or after GUARD_MS. */
  async line(match: (entry: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const deadline = Date.now() + GUARD_MS;
    for (;;) {
      const found = logLines(this.stdout).find(match);
      if (found) return found;
      if (this.gone || Date.now() > deadline) throw new Error(`no such log line in: ${this.stdout}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000).unref();
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The "rotor is listening" line's port and pid. */
  async listening(): Promise<{ port: number; pid: number }> {
    const line = await this.line((entry) => entry.msg === 'rotor is listening');
    return { port: (line.address as { port: number }).port, pid: line.pid as number };
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

/** Whether a TCP connection to 127.0.0.1:port is accepted (false: refused). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A process as /proc shows it: its start time tells it from a later process given the same pid. */
export interface Proc {
  pid: number;
  startTime: string;
  command: string;
}

function stat(pid: number): { ppid: number; startTime: string } | undefined {
  try {
    // The command name in parentheses may hold spaces: the fields after it are split.
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), startTime: fields[19]! };
  } catch {
    return undefined;
  }
}

/** Every process below `root` now (children, theirs, …). */
export function descendants(root: number): Proc[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    const info = Number.isInteger(pid) ? stat(pid) : undefined;
    if (info) children.set(info.ppid, [...(children.get(info.ppid) ?? []), pid]);
  }
  const found: Proc[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    const info = stat(pid);
    if (!info) continue;
    let command: string;
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue;
    }
    found.push({ pid, startTime: info.startTime, command });
    queue.push(...(children.get(pid) ?? []));
  }
  return found;
}

/** Whether this very process (not a later one given its pid) still exists; a zombie counts as gone. */
export function alive(proc: Proc): boolean {
  const info = stat(proc.pid);
  if (!info || info.startTime !== proc.startTime) return false;
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Check `done()` every 100 ms until it holds; false if it still does not after `guardMs`. */
export async function eventually(done: () => boolean | Promise<boolean>, guardMs = GUARD_MS): Promise<boolean> {
  const deadline = Date.now() + guardMs;
  for (;;) {
    if (await done()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

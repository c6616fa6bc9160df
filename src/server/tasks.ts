import type { Logger } from '../log/index.ts';
import type { TaskSettings } from '../config/defaults.ts';
import type { Store, TaskRecord } from '../store/types.ts';
import type { TaskHandler, TaskResult } from './app.ts';

/**
 * Runs released tasks: claims them from the store (so on a shared store each runs on one node),
 * runs the registered handler with a timeout, stores the outcome. Woken at once when this node
 * releases a task, and by a poll for tasks released elsewhere or left by a dead node.
 */
export class TaskRunner {
  private running = 0;
  private active = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  /** The claim loop under way, if any: stop() waits for it so nothing claimed is left behind. */
  private loop: Promise<void> | undefined;
  private claiming = false;
  private again = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly handlers: Record<string, TaskHandler>,
    private readonly settings: TaskSettings,
    private readonly resultTtlMs: number,
    private readonly log: Logger,
    private readonly now: () => number,
    readonly workerId: string,
  ) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.notify(), this.settings.pollIntervalMs);
    this.timer.unref();
    this.notify();
  }

  /** Look for work now. Cheap to call often: concurrent calls fold into one claim loop. */
  notify(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    this.claiming = true;
    this.loop = this.claimLoop().finally(() => {
      this.claiming = false;
      this.loop = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.notify();
      }
    });
  }

  /** Stop claiming and wait for the tasks already running. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    // A claim in flight may still hand us tasks; they are ours now, so they run before we return.
    await this.loop;
    await Promise.allSettled([...this.active]);
  }

  /** Resolves when nothing is running or being claimed (tests use it). */
  async idle(): Promise<void> {
    while (this.claiming || this.active.size > 0) {
      await Promise.allSettled([...this.active]);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private async claimLoop(): Promise<void> {
    while (!this.stopped) {
      const room = this.settings.concurrency - this.running;
      if (room <= 0) return;
      let tasks: TaskRecord[];
      try {
        tasks = await this.store.claimTasks(this.workerId, room, this.now(), this.settings.timeoutMs * 2);
      } catch (err) {
        this.log.warn({ err }, 'claiming tasks failed');
        return;
      }
      if (tasks.length === 0) return;
      for (const task of tasks) this.launch(task);
    }
  }

  private launch(task: TaskRecord): void {
    this.running++;
    const done = this.execute(task).finally(() => {
      this.running--;
      this.active.delete(done);
      this.notify();
    });
    this.active.add(done);
  }

  private async execute(task: TaskRecord): Promise<void> {
    const handler = this.handlers[task.name];
    let outcome: { status: 'done' | 'failed'; result?: Buffer; contentType?: string; error?: string };
    try {
      if (!handler) throw new Error(`no task handler named ${task.name}`);
      const value = await withTimeout(
        handler(task.payload, { taskId: task.id, user: task.user, sessionId: task.sessionId }),
        this.settings.timeoutMs,
      );
      outcome = { status: 'done', ...normalizeResult(value) };
    } catch (err) {
      this.log.warn({ err, task: task.id, name: task.name }, 'task failed');
      outcome = { status: 'failed', error: err instanceof Error ? err.message : String(err) };
    }
    const now = this.now();
    try {
      await this.store.finishTask(task.id, { worker: this.workerId, attempt: task.attempt ?? 1 }, { ...outcome, expiresAt: now + this.resultTtlMs }, now);
    } catch (err) {
      this.log.error({ err, task: task.id }, 'storing a task outcome failed');
    }
  }
}

function normalizeResult(value: TaskResult | string | Buffer | void): { result?: Buffer; contentType?: string } {
  if (value === undefined) return {};
  if (typeof value === 'string') return { result: Buffer.from(value), contentType: 'text/plain; charset=utf-8' };
  if (Buffer.isBuffer(value)) return { result: value, contentType: 'application/octet-stream' };
  const body = value.body === undefined ? undefined : typeof value.body === 'string' ? Buffer.from(value.body) : value.body;
  return { result: body, contentType: value.contentType };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`task timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

import type { Logger } from '../log/index.ts';
import { DEFAULTS, type TaskSettings } from '../config/defaults.ts';
import { Metrics } from '../metrics/index.ts';
import type { Store, TaskClaim, TaskOutcome, TaskRecord } from '../store/types.ts';
import type { TaskContext, TaskHandler, TaskResult } from './app.ts';

/** One-shot timers; `set` returns its cancel. Tests pass a fake clock. */
export interface Timers {
  set(fn: () => void, ms: number): () => void;
}

export const realTimers: Timers = {
  set(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface TaskRunnerOptions {
  timers?: Timers;
  /**
   * A finishTask that rejects is tried again this many times (default 6)… — long enough to ride
   * out a Redis Cluster failover (a few seconds: docs/scale.md), well within a claim's lease, so
   * a store that comes back does not make a finished task run again.
   */
  finishRetries?: number;
  /** …after this long, doubling each time (default 250 ms: 0.25 + 0.5 + 1 + 2 + 4 + 8 s, 15.75 s in all). */
  finishBackoffMs?: number;
  /** stop() lets running handlers go on this long before their signals fire. Default `connection.shutdownGraceMs`'s default. */
  shutdownGraceMs?: number;
  /** Where claims and endings are counted (rotor_tasks_total). Default: a Metrics of its own. */
  metrics?: Metrics | undefined;
}

/** What one run of a handler came to, before it is stored. */
type Ending = Omit<TaskOutcome, 'expiresAt'>;

/**
 * Runs released tasks: claims them from the store with a lease of 2 × `tasks.timeoutMs` (so on
 * a shared store each claim runs on one node), runs the registered handler, stores the outcome.
 * Woken at once when this node releases a task, and by a poll for tasks released elsewhere or
 * left by a dead node.
 *
 * The guarantee, and no more: each claim runs its handler at most once, and only the current
 * claim can store an outcome (finishTask is fenced by the claim's attempt number). A task whose
 * outcome was not stored — its node died or stopped mid-run, or storing failed past the retries
 * — is claimed again once its lease runs out and runs again, with the same task id and the next
 * attempt number: handlers make their effect idempotent by task id.
 *
 * A handler still running at `tasks.timeoutMs` is told to stop (its signal fires) and the task
 * ends `timed_out` at once — its effect may or may not have happened; it is not run again, and
 * whatever the handler does after is ignored.
 */
export class TaskRunner {
  private running = 0;
  private active = new Set<Promise<void>>();
  /** Running handlers' shutdown switches: stop() throws them once the grace is over. */
  private interrupts = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  /** The claim loop under way, if any: stop() waits for it so nothing claimed is left behind. */
  private loop: Promise<void> | undefined;
  private claiming = false;
  private again = false;
  private stopped = false;
  private readonly timers: Timers;
  private readonly finishRetries: number;
  private readonly finishBackoffMs: number;
  private readonly shutdownGraceMs: number;
  private readonly metrics: Metrics;

  constructor(
    private readonly store: Store,
    private readonly handlers: Record<string, TaskHandler>,
    private readonly settings: TaskSettings,
    private readonly resultTtlMs: number,
    private readonly log: Logger,
    private readonly now: () => number,
    readonly workerId: string,
    options: TaskRunnerOptions = {},
  ) {
    this.timers = options.timers ?? realTimers;
    this.finishRetries = options.finishRetries ?? 6;
    this.finishBackoffMs = options.finishBackoffMs ?? 250;
    this.shutdownGraceMs = options.shutdownGraceMs ?? DEFAULTS.connection.shutdownGraceMs;
    this.metrics = options.metrics ?? new Metrics();
  }

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

  /**
   * Stop claiming; give the running handlers `shutdownGraceMs`, then fire their signals and
   * return without storing their outcomes: their tasks run again elsewhere after their leases.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    // A claim in flight may still hand us tasks; they are ours now, so they start before we go on.
    await this.loop;
    let cancel = () => {};
    const graceOver = new Promise<void>((resolve) => (cancel = this.timers.set(resolve, this.shutdownGraceMs)));
    await Promise.race([Promise.allSettled([...this.active]), graceOver]);
    cancel();
    for (const interrupt of [...this.interrupts]) interrupt();
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
      this.metrics.task('claimed', tasks.length);
      for (const task of tasks) this.launch(task);
    }
  }

  private launch(task: TaskRecord): void {
    this.running++;
    // The slot is free once the outcome is stored *and* the handler has returned: a handler that
    // ignores its signal past the timeout still runs, and must still count against concurrency.
    let handlerReturned: Promise<unknown> = Promise.resolve();
    const done = this.execute(task, (settled) => (handlerReturned = settled)).finally(() => this.active.delete(done));
    this.active.add(done);
    void done.then(() => handlerReturned).finally(() => {
      this.running--;
      this.notify();
    });
  }

  private async execute(task: TaskRecord, started: (settled: Promise<unknown>) => void): Promise<void> {
    const claim: TaskClaim = { worker: this.workerId, attempt: task.attempt ?? 1 };
    const ending = await this.run(task, claim.attempt, started);
    if (ending === 'interrupted') {
      this.metrics.task('interrupted');
      this.log.warn({ task: task.id, attempt: claim.attempt }, 'task left unfinished at shutdown: it runs again (next attempt) once its lease runs out');
      return;
    }
    await this.storeOutcome(task.id, claim, ending);
  }

  /** One run of the task's handler, up to its timeout or the shutdown, whichever comes first. */
  private async run(task: TaskRecord, attempt: number, started: (settled: Promise<unknown>) => void): Promise<Ending | 'interrupted'> {
    const handler = this.handlers[task.name];
    if (!handler) return { status: 'failed', error: `no task handler named ${task.name}` };
    const controller = new AbortController();
    let stopped!: (why: 'timed_out' | 'interrupted') => void;
    const stopping = new Promise<'timed_out' | 'interrupted'>((resolve) => (stopped = resolve));
    // Settle the race first, then tell the handler: a handler that gives up at once cannot turn it into a failure.
    const stop = (why: 'timed_out' | 'interrupted', reason: Error) => {
      stopped(why);
      controller.abort(reason);
    };
    const { timeoutMs } = this.settings;
    const cancelTimeout = this.timers.set(() => stop('timed_out', new Error(`task timed out after ${timeoutMs} ms`)), timeoutMs);
    const interrupt = () => stop('interrupted', new Error('rotor is shutting down'));
    this.interrupts.add(interrupt);
    const context: TaskContext = { taskId: task.id, user: task.user, sessionId: task.sessionId, attempt, signal: controller.signal };
    const settled = (async (): Promise<Ending> => {
      try {
        return { status: 'done', ...normalizeResult(await handler(task.payload, context)) };
      } catch (err) {
        if (!controller.signal.aborted) this.log.warn({ err, task: task.id, name: task.name, attempt }, 'task failed');
        return { status: 'failed', error: err instanceof Error ? err.message : String(err) };
      }
    })();
    started(
      settled.then(() => {
        if (controller.signal.aborted) this.log.warn({ task: task.id, name: task.name, attempt }, 'task handler returned only after it was told to stop: pass ctx.signal on');
      }),
    );
    try {
      const first = await Promise.race([settled, stopping]);
      if (first === 'interrupted') return first;
      if (first === 'timed_out') {
        this.log.warn({ task: task.id, name: task.name, attempt, timeoutMs }, 'task timed out: told to stop');
        return { status: 'timed_out', error: `the task timed out after ${timeoutMs} ms and was told to stop; its effect may or may not have happened` };
      }
      return first;
    } finally {
      cancelTimeout();
      this.interrupts.delete(interrupt);
    }
  }

  /**
   * finishTask, tried again with a doubling backoff while the store rejects, up to
   * `finishRetries` times. If it never gets through the outcome is lost: the task stays claimed
   * until its lease runs out, then runs again (next attempt) wherever it is claimed.
   */
  private async storeOutcome(id: string, claim: TaskClaim, ending: Ending): Promise<void> {
    for (let retry = 0; ; retry++) {
      const now = this.now();
      try {
        if (await this.store.finishTask(id, claim, { ...ending, expiresAt: now + this.resultTtlMs }, now)) return this.metrics.task(ending.status);
        // Refused. After a retry that may be our own earlier try, stored with its answer lost.
        const stored = retry > 0 ? await this.store.loadTask(id).catch(() => undefined) : undefined;
        if (stored?.attempt === claim.attempt && stored.status === ending.status) return this.metrics.task(ending.status);
        this.metrics.task('superseded');
        this.log.warn({ task: id, attempt: claim.attempt }, 'task outcome refused: the task was claimed again after its lease ran out, and the newer claim decides');
        return;
      } catch (err) {
        if (retry >= this.finishRetries) {
          this.metrics.task('outcome_lost');
          this.log.error({ err, task: id, attempt: claim.attempt, tries: retry + 1 }, 'storing a task outcome failed: it is lost, and the task runs again (next attempt) once its lease runs out');
          return;
        }
        this.metrics.task('finish_retried');
        this.log.warn({ err, task: id, attempt: claim.attempt, retry: retry + 1 }, 'storing a task outcome failed; trying again');
        await new Promise<void>((resolve) => this.timers.set(resolve, this.finishBackoffMs * 2 ** retry));
      }
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

/**
 * The task runner's guarantee, driven by a fake clock (no sleeps, no millisecond bounds): at
 * most one run per claim; an outcome is stored only by the current claim; a timed-out handler
 * is told to stop and its task reads as "may have run"; a failed finishTask is retried; a task
 * whose outcome was never stored runs again after its lease, with the next attempt number.
 */
import t from 'tap';
import { resolveConfig } from '../../src/config/defaults.ts';
import { RotorError } from '../../src/errors.ts';
import { createLogger, silentLogger } from '../../src/log/index.ts';
import type { RotorApp, TaskContext, TaskHandler } from '../../src/server/app.ts';
import { TaskRunner, type Timers } from '../../src/server/tasks.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { Store, TaskRecord } from '../../src/store/types.ts';
import { getHeader } from '../../src/wire/index.ts';
import { session, task } from '../store/suite.ts';
import { harness } from './harness.ts';

const TIMEOUT_MS = 1_000;
const LEASE_MS = 2 * TIMEOUT_MS;
const GRACE_MS = 5_000;
const RESULT_TTL_MS = 3_600_000;
const settings = { ...resolveConfig().tasks, timeoutMs: TIMEOUT_MS };

/** Lets every promise chain that waits on nothing but other promises (the memory store, the runner) run to its end. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** Timers on a clock that moves only when told to. */
class FakeTimers implements Timers {
  private queue: Array<{ at: number; seq: number; fn: () => void }> = [];
  private seq = 0;
  constructor(readonly clock: { now: number }) {}

  set(fn: () => void, ms: number): () => void {
    const timer = { at: this.clock.now + Math.max(0, ms), seq: this.seq++, fn };
    this.queue.push(timer);
    return () => {
      this.queue = this.queue.filter((other) => other !== timer);
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.set(resolve, ms));
  }

  /** Move the clock `ms` on, firing each timer due on the way at its time, and letting what it starts run. */
  async advance(ms: number): Promise<void> {
    const until = this.clock.now + ms;
    await settle();
    for (;;) {
      const [due] = this.queue.filter((timer) => timer.at <= until).sort((a, b) => a.at - b.at || a.seq - b.seq);
      if (!due) break;
      this.queue = this.queue.filter((timer) => timer !== due);
      this.clock.now = Math.max(this.clock.now, due.at);
      due.fn();
      await settle();
    }
    this.clock.now = until;
    await settle();
  }
}

/** A memory store whose finishTask rejects (the store is unavailable) `failures` times, counting its calls. */
class FlakyFinishStore extends MemoryStore {
  finishCalls = 0;
  constructor(public failures: number) {
    super();
  }
  override async finishTask(...args: Parameters<Store['finishTask']>): Promise<boolean> {
    this.finishCalls++;
    if (this.failures > 0) {
      this.failures--;
      throw new RotorError('ROTOR_E_UNAVAILABLE', 'store went away');
    }
    return super.finishTask(...args);
  }
}

/** A store with one released task named `name`; returns the task. */
async function released(store: Store, name: string, clock: { now: number }): Promise<TaskRecord> {
  const s = session();
  await store.createSession(s);
  const r = task(s.id, { name, releasedAt: clock.now });
  await store.commitSession({ ...s, acked: true }, 0, [r]);
  return r;
}

function runner(store: Store, tasks: Record<string, TaskHandler>, timers: FakeTimers, options: { worker?: string; log?: ReturnType<typeof silentLogger>; finishRetries?: number } = {}): TaskRunner {
  return new TaskRunner(store, tasks, settings, RESULT_TTL_MS, options.log ?? silentLogger(), () => timers.clock.now, options.worker ?? 'node-1', {
    timers,
    finishRetries: options.finishRetries ?? 3,
    finishBackoffMs: 100,
    shutdownGraceMs: GRACE_MS,
  });
}

/** A logger whose lines (parsed) land in `lines`. */
function capturingLogger(lines: Array<{ level: number; msg: string }>) {
  return createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
}

t.test('a handler that checks its AbortSignal stops at the timeout, and its task reads as timed out (504), not failed', async (t) => {
  let timers!: FakeTimers;
  const seen: TaskContext[] = [];
  let steps = 0;
  let effects = 0;
  const app: RotorApp = {
    routes: {
      'POST /slow': () => ({ defer: { task: 'slow' } }),
      'POST /fails': () => ({ defer: { task: 'fails' } }),
    },
    tasks: {
      // Ten steps of 300 ms, checking the signal before each: the timeout (1 s) falls in the fourth.
      slow: async (_payload, context) => {
        seen.push(context);
        for (let step = 0; step < 10; step++) {
          context.signal.throwIfAborted();
          await timers.sleep(300);
          steps++;
        }
        effects++;
        return 'all ten steps';
      },
      fails: async () => {
        throw new Error('the card was declined');
      },
    },
  };
  const h = await harness(app);
  timers = new FakeTimers(h.clock);
  // The dispatcher's own runner stays out of it: the one under test runs on the fake clock.
  await h.rotor.tasks.stop();
  const token = await h.login();
  const work = await h.send('POST', '/slow', [['Token', token]]);
  const slowId = getHeader(work.frame, 'Task')!;
  let next = getHeader(work.frame, 'Token')!;
  const failing = await h.send('POST', '/fails', [['Token', next]]);
  const failsId = getHeader(failing.frame, 'Task')!;
  next = getHeader(failing.frame, 'Token')!;
  t.equal((await h.send('POST', '/rotor/ack', [['Token', next]])).frame.status, 200, 'the ack releases both');

  const node = runner(h.store, app.tasks, timers);
  node.notify();
  await timers.advance(TIMEOUT_MS - 1);
  t.equal(seen.length, 1, 'the slow handler started');
  t.equal(seen[0].attempt, 1, 'on its first claim');
  t.equal(seen[0].taskId, slowId, 'with its task id');
  t.equal(seen[0].signal.aborted, false, 'not told to stop before its time');
  t.equal(steps, 3, 'three steps done by 999 ms');
  t.match(await h.store.loadTask(failsId), { status: 'failed', error: 'the card was declined' }, 'a handler that rejects fails');

  await timers.advance(1);
  t.equal(seen[0].signal.aborted, true, 'at the timeout its signal fires');
  t.match(String(seen[0].signal.reason), /timed out/, 'with a timeout as the reason');
  const timedOut = await h.store.loadTask(slowId);
  t.match(timedOut, { status: 'timed_out', attempt: 1, finishedAt: h.clock.now }, 'the task ends timed out at once');
  t.match(timedOut?.error, /may or may not/, 'saying its effect may or may not have happened');

  await timers.advance(10 * TIMEOUT_MS);
  t.equal(steps, 4, 'the handler finished the step it was in and stopped at its next check');
  t.equal(effects, 0, 'its effect never happened');
  t.equal((await h.store.loadTask(slowId))?.status, 'timed_out', "the handler's late rejection changed nothing");
  node.notify();
  await timers.advance(10 * LEASE_MS);
  t.equal(seen.length, 1, 'a timed-out task is not run again');

  const read = await h.send('GET', `/rotor/tasks/${slowId}`, [['Token', next]]);
  t.equal(read.frame.status, 504, 'the client reads 504');
  t.equal(getHeader(read.frame, 'Error'), 'ROTOR_E_TASK_TIMED_OUT');
  t.match(read.frame.body?.toString(), /may or may not/, 'with what that means as the body');
  next = getHeader(read.frame, 'Token')!;
  const readFailed = await h.send('GET', `/rotor/tasks/${failsId}`, [['Token', next]]);
  t.equal(getHeader(readFailed.frame, 'Error'), 'ROTOR_E_TASK_FAILED', 'a handler that rejected stays ROTOR_E_TASK_FAILED');
  t.equal(readFailed.frame.body?.toString(), 'the card was declined');
  await node.stop();
  await h.rotor.stop();
});

t.test('a finishTask that fails once is retried after a backoff, and the task does not run twice', async (t) => {
  const clock = { now: 1_000_000 };
  const timers = new FakeTimers(clock);
  const store = new FlakyFinishStore(1);
  let runs = 0;
  const r = await released(store, 'job', clock);
  const node = runner(store, { job: async () => `run ${++runs}` }, timers);
  node.notify();
  await settle();
  t.equal(runs, 1, 'the handler ran');
  t.equal(store.finishCalls, 1, 'storing its outcome failed once');
  t.equal((await store.loadTask(r.id))?.status, 'running', 'nothing stored yet');
  await timers.advance(99);
  t.equal(store.finishCalls, 1, 'no retry before the backoff');
  await timers.advance(1);
  t.equal(store.finishCalls, 2, 'retried after it');
  t.match(await store.loadTask(r.id), { status: 'done', attempt: 1 }, 'and stored');
  t.equal((await store.loadTask(r.id))?.result?.toString(), 'run 1');
  await timers.advance(10 * LEASE_MS);
  node.notify();
  await settle();
  t.equal(runs, 1, 'long after its lease, the task has still run once');
  await node.stop();
});

t.test('a finishTask that keeps failing is tried a bounded number of times; the task then runs again after its lease, as attempt 2', async (t) => {
  const clock = { now: 1_000_000 };
  const timers = new FakeTimers(clock);
  const store = new FlakyFinishStore(Infinity);
  const lines: Array<{ level: number; msg: string }> = [];
  const attempts: number[] = [];
  const r = await released(store, 'job', clock);
  const job: TaskHandler = async (_payload, { attempt }) => {
    attempts.push(attempt);
    return `attempt ${attempt}`;
  };
  const node = runner(store, { job }, timers, { log: capturingLogger(lines) });
  node.notify();
  await settle();
  const backoffs = [100, 200, 400];
  for (const [i, ms] of backoffs.entries()) {
    t.equal(store.finishCalls, i + 1, `try ${i + 1}`);
    await timers.advance(ms);
  }
  t.equal(store.finishCalls, 4, 'one try and three retries, with doubling backoff');
  await timers.advance(LEASE_MS - 700);
  t.equal(store.finishCalls, 4, 'then no more');
  t.ok(lines.some((l) => l.level === 50 && /runs again/.test(l.msg)), 'an error says the outcome is lost and the task will run again');
  t.match(await store.loadTask(r.id), { status: 'running', attempt: 1 }, 'the task is still claimed by the lost attempt');

  store.failures = 0;
  node.notify();
  await settle();
  t.same(attempts, [1], 'not run again while the lease holds');
  await timers.advance(1);
  node.notify();
  await settle();
  t.same(attempts, [1, 2], 'once it ran out, it runs again, told it is attempt 2');
  t.match(await store.loadTask(r.id), { status: 'done', attempt: 2 }, 'and the second attempt stores its outcome');
  await node.stop();
});

t.test("after a lease runs out the task is claimed again as attempt 2, and the stale claim's late outcome is refused", async (t) => {
  const clock = { now: 1_000_000 };
  const store = new MemoryStore();
  const r = await released(store, 'job', clock);
  const gates = new Map<number, () => void>();
  const contexts: TaskContext[] = [];
  const job: TaskHandler = async (_payload, context) => {
    contexts.push(context);
    await new Promise<void>((resolve) => gates.set(context.attempt, resolve));
    return `outcome of attempt ${context.attempt}`;
  };
  // Node A stalls (its timers never fire: a frozen process) after claiming; B, with the very
  // same worker id, claims the task once A's lease has run out.
  const a = runner(store, { job }, new FakeTimers(clock), { worker: 'node-1' });
  const b = runner(store, { job }, new FakeTimers(clock), { worker: 'node-1' });
  a.notify();
  await settle();
  t.same(contexts.map((c) => c.attempt), [1], 'A runs attempt 1');
  clock.now += LEASE_MS - 1;
  b.notify();
  await settle();
  t.equal(contexts.length, 1, 'B claims nothing while the lease holds');
  clock.now += 2;
  b.notify();
  await settle();
  t.same(contexts.map((c) => c.attempt), [1, 2], 'once it ran out, B runs the task as attempt 2');
  t.equal(contexts[1].taskId, contexts[0].taskId, 'with the same task id: the idempotency key');

  gates.get(1)!();
  await settle();
  t.match(await store.loadTask(r.id), { status: 'running', attempt: 2 }, "A's late outcome is refused: the task is still B's");
  gates.get(2)!();
  await settle();
  const done = await store.loadTask(r.id);
  t.match(done, { status: 'done', attempt: 2 }, "B's outcome is stored");
  t.equal(done?.result?.toString(), 'outcome of attempt 2');
  await Promise.all([a.stop(), b.stop()]);
});

t.test('stop gives running handlers the grace, then fires their signals and leaves their tasks to run again', async (t) => {
  const clock = { now: 1_000_000 };
  const timers = new FakeTimers(clock);
  const store = new MemoryStore();
  const quick = await released(store, 'quick', clock);
  const stubborn = await released(store, 'stubborn', clock);
  const signals: AbortSignal[] = [];
  const node = new TaskRunner(store, {
    quick: async () => {
      await timers.sleep(500);
      return 'quick';
    },
    stubborn: async (_payload, { signal }) => {
      signals.push(signal);
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    },
  }, { ...settings, timeoutMs: 60_000 }, RESULT_TTL_MS, silentLogger(), () => clock.now, 'node-1', { timers, shutdownGraceMs: GRACE_MS });
  node.notify();
  await settle();
  let stopped = false;
  const stopping = node.stop().then(() => (stopped = true));
  await timers.advance(500);
  t.equal((await store.loadTask(quick.id))?.status, 'done', 'a handler that ends within the grace stores its outcome');
  await timers.advance(GRACE_MS - 501);
  t.equal(stopped, false, 'stop waits out the grace');
  t.equal(signals[0].aborted, false, 'before it, no signal fires');
  await timers.advance(1);
  await stopping;
  t.equal(signals[0].aborted, true, 'past the grace the stubborn handler is told to stop');
  t.match(String(signals[0].reason), /shutting down/);
  t.match(await store.loadTask(stubborn.id), { status: 'running', attempt: 1 }, 'its task is not finished: rotor cannot know what it did');
  const [again] = await store.claimTasks('node-2', 5, clock.now + 60_000 * 2, 1_000);
  t.equal(again?.id, stubborn.id, 'after its lease another node claims it');
  t.equal(again?.attempt, 2, 'as attempt 2');
});

t.test('a handler that ignores its signal keeps its slot until it returns: concurrency holds', async (t) => {
  const clock = { now: 1_000_000 };
  const timers = new FakeTimers(clock);
  const store = new MemoryStore();
  let release!: () => void;
  const started: string[] = [];
  const handlers: Record<string, TaskHandler> = {
    stubborn: async () => {
      started.push('stubborn');
      await new Promise<void>((resolve) => (release = resolve)); // never looks at ctx.signal
      return 'late';
    },
    next: async () => void started.push('next'),
  };
  const first = await released(store, 'stubborn', clock);
  await released(store, 'next', clock);
  const tasks = new TaskRunner(store, handlers, { ...settings, concurrency: 1 }, RESULT_TTL_MS, silentLogger(), () => clock.now, 'node-1', { timers, shutdownGraceMs: GRACE_MS });
  tasks.start();
  await timers.advance(0);
  t.same(started, ['stubborn'], 'one at a time');
  await timers.advance(TIMEOUT_MS + 1);
  t.equal((await store.loadTask(first.id))?.status, 'timed_out', 'the stubborn task timed out');
  await timers.advance(TIMEOUT_MS * 5);
  t.same(started, ['stubborn'], 'yet the next does not start while the stubborn handler still runs');
  release();
  await timers.advance(0);
  t.same(started, ['stubborn', 'next'], 'once it returns, the slot is free');
  await tasks.stop();
});

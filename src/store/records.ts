/** How a task record changes when it is claimed and when it finishes: one definition for the durable stores. */
import { RotorError } from '../errors.ts';
import type { TaskOutcome, TaskRecord } from './types.ts';

/** `task` claimed by `worker` until `leaseUntil`. */
export function claimedTask(task: TaskRecord, worker: string, leaseUntil: number): TaskRecord {
  return { ...task, status: 'running', worker, leaseUntil };
}

/** `task` finished with `outcome` at `now`: no lease any more, kept until `outcome.expiresAt`. */
export function finishedTask(task: TaskRecord, outcome: TaskOutcome, now: number): TaskRecord {
  const { leaseUntil: _lease, result: _result, contentType: _type, error: _error, ...rest } = task;
  const finished: { -readonly [K in keyof TaskRecord]: TaskRecord[K] } = { ...rest, status: outcome.status, finishedAt: now, expiresAt: outcome.expiresAt };
  if (outcome.result !== undefined) finished.result = outcome.result;
  if (outcome.contentType !== undefined) finished.contentType = outcome.contentType;
  if (outcome.error !== undefined) finished.error = outcome.error;
  return finished;
}

/** Any failure of the backend itself, as the error callers retry on. */
export function unavailable(err: unknown, backend: string): RotorError {
  if (err instanceof RotorError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return Object.assign(new RotorError('ROTOR_E_UNAVAILABLE', `${backend}: ${detail}`), { cause: err });
}

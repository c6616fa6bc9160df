/** What the stores share: how a task record changes when claimed and finished, how catalog entries sort, and how failures are reported. */
import { RotorError } from '../errors.ts';
import type { CatalogKind, Store, TaskClaim, TaskOutcome, TaskRecord, TaskStatus } from './types.ts';

/** `task` claimed by `worker` until `leaseUntil`: the next attempt. */
export function claimedTask(task: TaskRecord, worker: string, leaseUntil: number): TaskRecord {
  return { ...task, status: 'running', worker, leaseUntil, attempt: (task.attempt ?? 0) + 1 };
}

/** Whether `claim` is `task`'s current claim, the only one that may finish it. */
export function holdsClaim(task: TaskRecord | undefined, claim: TaskClaim): task is TaskRecord {
  return task?.status === 'running' && task.worker === claim.worker && task.attempt === claim.attempt;
}

/** A task that ended (done, failed, timed out): it is never claimed again and may be purged once expired. */
export function hasEnded(status: TaskStatus): boolean {
  return status === 'done' || status === 'failed' || status === 'timed_out';
}

/** `task` finished with `outcome` at `now`: no lease any more, kept (with the attempt that finished it) until `outcome.expiresAt`. */
export function finishedTask(task: TaskRecord, outcome: TaskOutcome, now: number): TaskRecord {
  const { leaseUntil: _lease, result: _result, contentType: _type, error: _error, ...rest } = task;
  const finished: { -readonly [K in keyof TaskRecord]: TaskRecord[K] } = { ...rest, status: outcome.status, finishedAt: now, expiresAt: outcome.expiresAt };
  if (outcome.result !== undefined) finished.result = outcome.result;
  if (outcome.contentType !== undefined) finished.contentType = outcome.contentType;
  if (outcome.error !== undefined) finished.error = outcome.error;
  return finished;
}

/** One store call: refused once the store is closed, and any failure of the backend reported as unavailability. */
export async function storeCall<T>(closed: boolean, backend: string, work: () => T | Promise<T>): Promise<T> {
  if (closed) throw new RotorError('ROTOR_E_UNAVAILABLE', 'store is closed');
  try {
    return await work();
  } catch (err) {
    throw unavailable(err, backend);
  }
}

/** storeCall for work that answers at once: throws what storeCall rejects with. */
export function storeCallNow<T>(closed: boolean, backend: string, work: () => T): T {
  if (closed) throw new RotorError('ROTOR_E_UNAVAILABLE', 'store is closed');
  try {
    return work();
  } catch (err) {
    throw unavailable(err, backend);
  }
}

/** Any failure of the backend itself, as the error callers retry on. */
export function unavailable(err: unknown, backend: string): RotorError {
  if (err instanceof RotorError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return Object.assign(new RotorError('ROTOR_E_UNAVAILABLE', `${backend}: ${detail}`), { cause: err });
}

/** A catalog record kept changing under `changeRecord`'s every attempt. */
export class RecordConflict extends Error {}

/**
 * Change catalog record `kind`/`id` by compare-and-set, again from a fresh read when another
 * writer (another node) changed it in between. `change` gets the record (undefined: there is
 * none) and gives the next value, or undefined to leave it as it is. Resolves to the record as
 * it stands afterwards; rejects with RecordConflict after `attempts` lost races.
 */
export async function changeRecord<T>(store: Store, kind: CatalogKind, id: string, change: (current: T | undefined) => T | undefined, attempts = 16): Promise<T | undefined> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const entry = await store.loadRecord<T>(kind, id);
    const next = change(entry?.value);
    if (next === undefined) return entry?.value;
    if (await store.commitRecord(kind, id, next, entry?.rev ?? 0)) return next;
  }
  throw new RecordConflict(`${kind} ${id} changed under ${attempts} attempts in a row`);
}

/** Catalog entries in the order listRecords gives them: by id, code unit by code unit. */
export function byId(a: { readonly id: string }, b: { readonly id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Whether an id stands twice among `entries` (createRecords then writes none). */
export function repeatsId(entries: readonly { readonly id: string }[]): boolean {
  return new Set(entries.map((entry) => entry.id)).size !== entries.length;
}

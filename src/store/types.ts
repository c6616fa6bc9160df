import type { PoolRecord, PoolSeats } from '../seats/types.ts';
import type { SessionState, TaskSpec } from '../session/types.ts';

/** How a task ended: its handler resolved, rejected, or was told to stop at the timeout (its effect may or may not have happened). */
export type TaskEnding = 'done' | 'failed' | 'timed_out';
export type TaskStatus = 'released' | 'running' | TaskEnding;

/**
 * A released task: it belongs to a session, is claimed by some node, runs at most once per
 * claim, keeps its outcome a while. A claim whose node dies leaves the task to a later claim.
 */
export interface TaskRecord extends TaskSpec {
  readonly sessionId: string;
  readonly user: string;
  readonly status: TaskStatus;
  readonly releasedAt: number;
  /** While running: the node that claimed it and until when its claim holds. */
  readonly worker?: string;
  readonly leaseUntil?: number;
  /**
   * Claims so far: 1 on the first, one more on every claim (a lease that ran out). The current
   * claim's number is its fencing token: only it can finish the task. Kept once finished (the
   * claim that finished it); absent while never claimed.
   */
  readonly attempt?: number;
  readonly finishedAt?: number;
  /** The handler's result bytes (done) and their content type. */
  readonly result?: Buffer;
  readonly contentType?: string;
  /** The failure message (failed), or what a timeout means (timed_out). */
  readonly error?: string;
  /** When the store may forget the task (set when it finishes). */
  readonly expiresAt: number | null;
}

/** Who may finish a running task: the worker that claimed it, by the attempt number of that claim. */
export interface TaskClaim {
  readonly worker: string;
  readonly attempt: number;
}

export interface TaskOutcome {
  status: TaskEnding;
  result?: Buffer;
  contentType?: string;
  error?: string;
  expiresAt: number;
}

export interface UserRecord {
  readonly name: string;
  /** `scrypt$N$r$p$<salt b64>$<hash b64>` */
  readonly passwordHash: string;
  /** base32 TOTP secret, when the user has one. */
  readonly totpSecret?: string;
  /** The newest TOTP time step accepted: a code is never accepted twice. */
  readonly lastTotpStep?: number;
  readonly createdAt: number;
}

/**
 * What a catalog record is: a quota template, a lot of codes, an access code, the codes a user owns (spec §10); the key ring (spec §11);
 * hand-overs (spec §11, src/handover/records.ts): a parent handed over, a parent ended, a hand-over token used, the sessions a parent's tokens opened, an issuer's list as taken.
 */
export type CatalogKind = 'template' | 'lot' | 'code' | 'owner' | 'keyring' | 'handover-issued' | 'handover-ended' | 'handover-nonce' | 'handover-child' | 'handover-list' | 'app' | 'app-instance' | 'seal-nonce';

/** One catalog record as stored: its id (unique within its kind), its rev (1 when created, one more on every commit) and its value. */
export interface CatalogEntry<T> {
  readonly id: string;
  readonly rev: number;
  readonly value: T;
}

/**
 * What rotor needs from a store. Every backend passes the abstract suite in
 * test/store/suite.ts. All methods may reject with ROTOR_E_UNAVAILABLE when the backend is
 * down; none may hang.
 */
export interface Store {
  /** 'memory', 'lmdb', 'redis', … */
  readonly kind: string;

  /** Insert a new session (rev 0). Rejects if the id exists. */
  createSession(state: SessionState): Promise<void>;
  loadSession(id: string): Promise<SessionState | undefined>;
  /**
   * loadSession answered at once, for a backend that has the session at hand (memory, LMDB's
   * memory map): an exchange then takes no turn of the event loop to read it. The same results
   * and the same errors (thrown, not rejected).
   */
  loadSessionNow?(id: string): SessionState | undefined;
  /**
   * Compare-and-set: if the stored session's rev is `expectedRev`, store `next` with rev
   * `expectedRev + 1` and, in the same atomic step, add `released` to the task queue. Returns
   * false (and changes nothing) if the rev differs or the session is gone.
   */
  commitSession(next: SessionState, expectedRev: number, released: readonly TaskRecord[]): Promise<boolean>;

  /**
   * Claim up to `max` runnable tasks for `worker`: released ones, and running ones whose lease
   * ran out (their node died). Each is marked running with a lease until `now + leaseMs` and
   * its `attempt` one more than before (1 on the first claim), in one atomic step.
   */
  claimTasks(worker: string, max: number, now: number, leaseMs: number): Promise<TaskRecord[]>;
  /**
   * Record a claimed task's outcome, atomically with the check that `claim` is its current
   * claim (same worker, same attempt). Returns false, changing nothing, if the task is unknown,
   * not running, or claimed again since (a stale claim never overwrites a newer one).
   */
  finishTask(id: string, claim: TaskClaim, outcome: TaskOutcome, now: number): Promise<boolean>;
  loadTask(id: string): Promise<TaskRecord | undefined>;

  putUser(user: UserRecord): Promise<void>;
  loadUser(name: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;
  removeUser(name: string): Promise<boolean>;
  /** Atomically accept TOTP time step `step` for `name` if it is newer than the last one accepted. */
  acceptTotpStep(name: string, step: number): Promise<boolean>;

  /** Seat pools (spec §9), kept like users: every node on the store sees the same ones. */
  putPool(pool: PoolRecord): Promise<void>;
  loadPool(name: string): Promise<PoolRecord | undefined>;
  listPools(): Promise<PoolRecord[]>;
  /** Forget a pool and who holds its seats. */
  removePool(name: string): Promise<boolean>;
  /** Who holds the pool's seats and who waits; undefined for a pool nobody has asked yet (rev 0). */
  loadSeats(pool: string): Promise<PoolSeats | undefined>;
  /**
   * Compare-and-set: if the pool's seats record is at `expectedRev` (0: none stored yet), store
   * `next` at `expectedRev + 1`. Returns false, changing nothing, if it is not.
   */
  commitSeats(next: PoolSeats, expectedRev: number): Promise<boolean>;

  // The catalog: versioned records of plain JSON-able values, one namespace per kind. A value
  // given back is equal to the one stored and the caller's own: changing it changes nothing stored.
  /** A catalog record (quota templates, lots, access codes, a user's codes: spec §10) and its rev; undefined when there is none. */
  loadRecord<T>(kind: CatalogKind, id: string): Promise<CatalogEntry<T> | undefined>;
  /** Every record of a kind, sorted by id (by UTF-16 code unit, as Array.prototype.sort compares strings). */
  listRecords<T>(kind: CatalogKind): Promise<CatalogEntry<T>[]>;
  /** Compare-and-set: store `value` at rev expectedRev + 1 if the record is at expectedRev (0: it must not exist). False, changing nothing, otherwise. */
  commitRecord<T>(kind: CatalogKind, id: string, value: T, expectedRev: number): Promise<boolean>;
  /**
   * Create many records (each at rev 1) in one atomic step: false, writing none, if any of the ids
   * exists (or an id repeats); true for no entries. Must handle 10,000 entries in one call.
   */
  createRecords<T>(kind: CatalogKind, entries: readonly { id: string; value: T }[]): Promise<boolean>;
  /** Forget a record; false when there was none. */
  removeRecord(kind: CatalogKind, id: string): Promise<boolean>;

  /**
   * OPTIONAL. Every session the store holds (live, expired but not yet purged, revoked), in no
   * particular order; what changes during the walk may or may not be seen. Only the token API's
   * `HEAD /dump` uses it; a store that cannot walk its sessions leaves it out and the dump says so.
   */
  listSessions?(): AsyncIterable<SessionState>;

  /**
   * OPTIONAL. Resolves when the backend answers a cheap request (readiness: `GET /readyz`),
   * rejects (ROTOR_E_UNAVAILABLE) when it does not; bounded by the backend's own timeout. A store
   * without it is taken to be ready whenever rotor is.
   */
  ping?(): Promise<void>;

  /**
   * Login-failure counters (spec §3 Logins: login throttling), one per key (rotor's keys name a
   * source address, a user name as typed, or the two together). Every node on the store counts
   * into the same counters.
   *
   * recordLoginFailure adds one failure at `now` to each key, atomically per call (concurrent
   * calls, on any node, lose no count): a key with no counter, or whose counter expired
   * (`expiresAt` <= now), starts again from 1. Each key's counter then expires at `now + windowMs`
   * (a quiet window: every failure renews it). Returns each key's counter after the call, in the
   * order of `keys`.
   */
  recordLoginFailure(keys: readonly string[], now: number, windowMs: number): Promise<LoginFailures[]>;
  /** The counters of `keys` at `now`, in their order; a key without a live counter has { count: 0, lastAt: 0 }. */
  loginFailures(keys: readonly string[], now: number): Promise<LoginFailures[]>;
  /** Forget the counter of `key` (a login that succeeded). */
  clearLoginFailures(key: string): Promise<void>;

  /** Forget sessions and finished tasks whose expiresAt has passed (and expired login-failure counters, not counted); returns how many. */
  purgeExpired(now: number): Promise<number>;
  close(): Promise<void>;
}

/** One login-failure counter: failures counted within its quiet window, and when the last one was. */
export interface LoginFailures {
  readonly count: number;
  readonly lastAt: number;
}

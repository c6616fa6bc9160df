import type { SessionState, TaskSpec } from '../session/types.ts';

export type TaskStatus = 'released' | 'running' | 'done' | 'failed';

/** A released task: it belongs to a session, runs once on some node, keeps its result a while. */
export interface TaskRecord extends TaskSpec {
  readonly sessionId: string;
  readonly user: string;
  readonly status: TaskStatus;
  readonly releasedAt: number;
  /** While running: the node that claimed it and until when its claim holds. */
  readonly worker?: string;
  readonly leaseUntil?: number;
  readonly finishedAt?: number;
  /** The handler's result bytes (done) and their content type. */
  readonly result?: Buffer;
  readonly contentType?: string;
  /** The failure message (failed). */
  readonly error?: string;
  /** When the store may forget the task (set when it finishes). */
  readonly expiresAt: number | null;
}

export interface TaskOutcome {
  status: 'done' | 'failed';
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
   * Compare-and-set: if the stored session's rev is `expectedRev`, store `next` with rev
   * `expectedRev + 1` and, in the same atomic step, add `released` to the task queue. Returns
   * false (and changes nothing) if the rev differs or the session is gone.
   */
  commitSession(next: SessionState, expectedRev: number, released: readonly TaskRecord[]): Promise<boolean>;

  /**
   * Claim up to `max` runnable tasks for `worker`: released ones, and running ones whose lease
   * ran out (their node died). Each is marked running with a lease until `now + leaseMs`.
   */
  claimTasks(worker: string, max: number, now: number, leaseMs: number): Promise<TaskRecord[]>;
  /** Record a claimed task's outcome. Returns false if the task is unknown or not running. */
  finishTask(id: string, worker: string, outcome: TaskOutcome, now: number): Promise<boolean>;
  loadTask(id: string): Promise<TaskRecord | undefined>;

  putUser(user: UserRecord): Promise<void>;
  loadUser(name: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;
  removeUser(name: string): Promise<boolean>;
  /** Atomically accept TOTP time step `step` for `name` if it is newer than the last one accepted. */
  acceptTotpStep(name: string, step: number): Promise<boolean>;

  /**
   * OPTIONAL. Every session the store holds (live, expired but not yet purged, revoked), in no
   * particular order; what changes during the walk may or may not be seen. Only the token API's
   * `HEAD /dump` uses it; a store that cannot walk its sessions leaves it out and the dump says so.
   */
  listSessions?(): AsyncIterable<SessionState>;

  /** Forget sessions and finished tasks whose expiresAt has passed; returns how many. */
  purgeExpired(now: number): Promise<number>;
  close(): Promise<void>;
}

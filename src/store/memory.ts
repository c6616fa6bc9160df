import { RotorError } from '../errors.ts';
import type { PoolRecord, PoolSeats } from '../seats/types.ts';
import type { SessionState } from '../session/types.ts';
import { sessionWith } from '../session/state.ts';
import { byId, claimedTask, finishedTask, holdsClaim, repeatsId } from './records.ts';
import type { CatalogEntry, CatalogKind, LoginFailures, Store, TaskClaim, TaskOutcome, TaskRecord, UserRecord } from './types.ts';

interface CatalogRecord {
  readonly rev: number;
  readonly value: unknown;
}

/**
 * Everything in Maps: fast, and gone with the process. For tests, benchmarks and throwaway
 * servers (`rotor serve --store memory`). Methods resolve at once; no await inside keeps each
 * one atomic on the event loop.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly sessions = new Map<string, SessionState>();
  private readonly tasks = new Map<string, TaskRecord>();
  /** Ids of tasks waiting to be claimed, in release order. */
  private readonly queue = new Set<string>();
  private readonly users = new Map<string, UserRecord>();
  private readonly pools = new Map<string, PoolRecord>();
  private readonly seats = new Map<string, PoolSeats>();
  /** Catalog records by kind, then id: each value a copy of its own, copied again on the way out. */
  private readonly catalog = new Map<CatalogKind, Map<string, CatalogRecord>>();
  /** Login-failure counters by key, each until its expiresAt. */
  private readonly loginCounters = new Map<string, { count: number; lastAt: number; expiresAt: number }>();
  private closed = false;

  async createSession(state: SessionState): Promise<void> {
    this.check();
    if (this.sessions.has(state.id)) throw new Error(`session ${state.id} exists`);
    this.sessions.set(state.id, sessionWith(state, { rev: 0 }));
  }

  async loadSession(id: string): Promise<SessionState | undefined> {
    this.check();
    return this.sessions.get(id);
  }

  loadSessionNow(id: string): SessionState | undefined {
    this.check();
    return this.sessions.get(id);
  }

  async commitSession(next: SessionState, expectedRev: number, released: readonly TaskRecord[]): Promise<boolean> {
    this.check();
    const current = this.sessions.get(next.id);
    if (!current || current.rev !== expectedRev) return false;
    this.sessions.set(next.id, sessionWith(next, { rev: expectedRev + 1 }));
    for (const task of released) {
      this.tasks.set(task.id, task);
      this.queue.add(task.id);
    }
    return true;
  }

  async claimTasks(worker: string, max: number, now: number, leaseMs: number): Promise<TaskRecord[]> {
    this.check();
    const claimed: TaskRecord[] = [];
    for (const id of this.queue) {
      if (claimed.length >= max) break;
      const task = this.tasks.get(id);
      this.queue.delete(id);
      if (!task) continue;
      const running = claimedTask(task, worker, now + leaseMs);
      this.tasks.set(id, running);
      claimed.push(running);
    }
    if (claimed.length < max) {
      for (const task of this.tasks.values()) {
        if (claimed.length >= max) break;
        if (task.status === 'running' && (task.leaseUntil ?? 0) < now) {
          const running = claimedTask(task, worker, now + leaseMs);
          this.tasks.set(task.id, running);
          claimed.push(running);
        }
      }
    }
    return claimed;
  }

  async finishTask(id: string, claim: TaskClaim, outcome: TaskOutcome, now: number): Promise<boolean> {
    this.check();
    const task = this.tasks.get(id);
    if (!holdsClaim(task, claim)) return false;
    this.tasks.set(id, finishedTask(task, outcome, now));
    return true;
  }

  async loadTask(id: string): Promise<TaskRecord | undefined> {
    this.check();
    return this.tasks.get(id);
  }

  async putUser(user: UserRecord): Promise<void> {
    this.check();
    this.users.set(user.name, user);
  }

  async loadUser(name: string): Promise<UserRecord | undefined> {
    this.check();
    return this.users.get(name);
  }

  async listUsers(): Promise<UserRecord[]> {
    this.check();
    return [...this.users.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async removeUser(name: string): Promise<boolean> {
    this.check();
    return this.users.delete(name);
  }

  async acceptTotpStep(name: string, step: number): Promise<boolean> {
    this.check();
    const user = this.users.get(name);
    if (!user || (user.lastTotpStep !== undefined && user.lastTotpStep >= step)) return false;
    this.users.set(name, { ...user, lastTotpStep: step });
    return true;
  }
  async putPool(pool: PoolRecord): Promise<void> {
    this.check();
    this.pools.set(pool.name, pool);
  }

  async loadPool(name: string): Promise<PoolRecord | undefined> {
    this.check();
    return this.pools.get(name);
  }

  async listPools(): Promise<PoolRecord[]> {
    this.check();
    return [...this.pools.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async removePool(name: string): Promise<boolean> {
    this.check();
    this.seats.delete(name);
    return this.pools.delete(name);
  }

  async loadSeats(pool: string): Promise<PoolSeats | undefined> {
    this.check();
    return this.seats.get(pool);
  }

  async commitSeats(next: PoolSeats, expectedRev: number): Promise<boolean> {
    this.check();
    if ((this.seats.get(next.pool)?.rev ?? 0) !== expectedRev) return false;
    this.seats.set(next.pool, { ...next, rev: expectedRev + 1 });
    return true;
  }

  // --- the catalog (spec §10) ---

  async loadRecord<T>(kind: CatalogKind, id: string): Promise<CatalogEntry<T> | undefined> {
    this.check();
    const record = this.records(kind).get(id);
    return record && { id, rev: record.rev, value: structuredClone(record.value) as T };
  }

  async listRecords<T>(kind: CatalogKind): Promise<CatalogEntry<T>[]> {
    this.check();
    return Array.from(this.records(kind), ([id, { rev, value }]) => ({ id, rev, value: structuredClone(value) as T })).sort(byId);
  }

  async commitRecord<T>(kind: CatalogKind, id: string, value: T, expectedRev: number): Promise<boolean> {
    this.check();
    const records = this.records(kind);
    if ((records.get(id)?.rev ?? 0) !== expectedRev) return false;
    records.set(id, { rev: expectedRev + 1, value: structuredClone(value) });
    return true;
  }

  async createRecords<T>(kind: CatalogKind, entries: readonly { id: string; value: T }[]): Promise<boolean> {
    this.check();
    const records = this.records(kind);
    if (repeatsId(entries) || entries.some(({ id }) => records.has(id))) return false;
    for (const { id, value } of entries) records.set(id, { rev: 1, value: structuredClone(value) });
    return true;
  }

  async removeRecord(kind: CatalogKind, id: string): Promise<boolean> {
    this.check();
    return this.records(kind).delete(id);
  }

  private records(kind: CatalogKind): Map<string, CatalogRecord> {
    let records = this.catalog.get(kind);
    if (!records) this.catalog.set(kind, (records = new Map()));
    return records;
  }

  // --- login-failure counters (login throttling) ---

  async recordLoginFailure(keys: readonly string[], now: number, windowMs: number): Promise<LoginFailures[]> {
    this.check();
    return keys.map((key) => {
      const live = this.liveCounter(key, now);
      const next = { count: (live?.count ?? 0) + 1, lastAt: now, expiresAt: now + windowMs };
      this.loginCounters.set(key, next);
      return { count: next.count, lastAt: now };
    });
  }

  async loginFailures(keys: readonly string[], now: number): Promise<LoginFailures[]> {
    this.check();
    return keys.map((key) => {
      const live = this.liveCounter(key, now);
      return live ? { count: live.count, lastAt: live.lastAt } : { count: 0, lastAt: 0 };
    });
  }

  async clearLoginFailures(key: string): Promise<void> {
    this.check();
    this.loginCounters.delete(key);
  }

  private liveCounter(key: string, now: number): { count: number; lastAt: number } | undefined {
    const counter = this.loginCounters.get(key);
    return counter && counter.expiresAt > now ? counter : undefined;
  }


  async *listSessions(): AsyncIterable<SessionState> {
    this.check();
    // A snapshot: sessions are immutable values, so the walk cannot see one half-written.
    for (const session of [...this.sessions.values()]) yield session;
  }

  async purgeExpired(now: number): Promise<number> {
    this.check();
    let purged = 0;
    for (const [id, session] of this.sessions) {
      if (session.expiresAt !== null && session.expiresAt <= now) {
        this.sessions.delete(id);
        purged++;
      }
    }
    for (const [id, task] of this.tasks) {
      if (task.expiresAt !== null && task.expiresAt <= now) {
        this.tasks.delete(id);
        this.queue.delete(id);
        purged++;
      }
    }
    for (const [key, counter] of this.loginCounters) if (counter.expiresAt <= now) this.loginCounters.delete(key);
    return purged;
  }

  async ping(): Promise<void> {
    this.check();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private check(): void {
    if (this.closed) throw new RotorError('ROTOR_E_UNAVAILABLE', 'store is closed');
  }
}

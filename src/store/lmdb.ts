/**
 * The embedded durable store: LMDB (lmdb-js) in one directory. LMDB is the only copy of the
 * data — nothing is cached in this process — so after a crash, or with a second process on
 * the same directory (`rotor user add` next to a running server), everything committed is
 * there and nothing else is.
 *
 * Writes: lmdb-js queues every write of one event turn into one LMDB transaction, committed on
 * its writer thread (group commit). No method awaits anything before queueing its write, so
 * concurrent commits share transactions instead of waiting for each other; each promise
 * resolves once its transaction is committed.
 *
 * Durability: by default a commit is durable against a killed process — LMDB has written it to
 * the file, the OS page cache holds it — but not against an OS crash or a power loss, which
 * may lose recent commits or, LMDB warns, damage the file (`noSync`). With `fsync: true` each
 * transaction is fsynced before its writes resolve: safe against power loss, and still one
 * fsync per group of concurrent commits, not per commit.
 *
 * Atomicity: a session's rev is its LMDB entry version, and commitSession is a conditional
 * write (`ifVersion`) checked by LMDB inside the write transaction, together with the released
 * tasks — atomic across processes too. Claims, finishes, TOTP steps and purges read and write
 * inside one transaction (`transaction`), which holds LMDB's single write lock.
 *
 * Layout (sub-databases of one environment; values msgpack with shared structures):
 *   sessions  id → SessionState                 (entry version = rev; expiresAt stored first)
 *   tasks     id → TaskRecord
 *   queue     [releasedAt, id]                  released tasks, oldest first
 *   leases    [leaseUntil, id]                  running tasks, earliest lease first
 *   expiry    [at, kind, id]                    what purgeExpired may forget, soonest first
 *   users     name → UserRecord
 *   pools     name → PoolRecord                 seat pools (spec §9)
 *   seats     pool name → PoolSeats             (entry version = rev) who holds and who waits
 *   logins    key → { count, lastAt, expiresAt }  login-failure counters (login throttling)
 *   loginExpiry [expiresAt, key]                 a lower bound of each counter's expiry, as `expiry`'s
 *   catalog   <kind> NUL <id> → the value       (entry version = rev; keys raw bytes) quota templates,
 *                                               lots, access codes, a user's codes (spec §10)
 *
 * The expiry index is a lower bound, not a mirror: every record with an expiresAt has an entry
 * at an `at` no later than its expiresAt (and may have stale ones). A rotation moves expiresAt
 * later, which keeps that true, so it writes no index entry; only a commit that moves a record's
 * expiry earlier (a revocation, a shorter token lifetime, null → a time) adds one. purgeExpired
 * takes the entries with `at` <= now and checks each record's own expiresAt: expired, it is
 * deleted; still live, its entry moves on to its current expiresAt (once per token lifetime for
 * a session in use); gone or never-expiring, the entry is dropped. So purge deletes exactly the
 * records whose expiresAt <= now, no earlier and no later than the index of exact expiries did.
 * To learn the old expiry, commitSession reads the record's bytes and decodes only its first
 * field: session records are written with expiresAt first. Records written before (expiresAt
 * later in the record) still load; their first commit just adds an index entry.
 * Stores written by earlier versions (an exact entry per record) satisfy the same rule.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { getLastVersion, open, type Database, type RootDatabase } from 'lmdb';
import type { PoolRecord, PoolSeats } from '../seats/types.ts';
import type { SessionState } from '../session/types.ts';
import { sessionWith } from '../session/state.ts';
import { byId, claimedTask, finishedTask, hasEnded, holdsClaim, repeatsId, storeCall, storeCallNow, unavailable } from './records.ts';
import type { CatalogEntry, CatalogKind, LoginFailures, Store, TaskClaim, TaskOutcome, TaskRecord, UserRecord } from './types.ts';

export interface LmdbStoreOptions {
  /** fsync each commit before it resolves (power-loss safe, slower). Default false. */
  fsync?: boolean | undefined;
}

type Key = (string | number)[];
const SESSION = 0;
const TASK = 1;
/** Expiry entries handled per purge transaction, so a big purge never holds the write lock long. */
const PURGE_CHUNK = 1000;
const STRUCTURES = Symbol.for('rotor.structures');
/** Sessions listSessions reads per read. */
const LIST_BATCH = 1000;

export class LmdbStore implements Store {
  readonly kind = 'lmdb';
  private closed = false;

  private constructor(
    private readonly root: RootDatabase,
    private readonly sessions: Database<SessionState, string>,
    private readonly tasks: Database<TaskRecord, string>,
    private readonly queue: Database<true, Key>,
    private readonly leases: Database<true, Key>,
    private readonly expiry: Database<true, Key>,
    private readonly users: Database<UserRecord, string>,
    private readonly pools: Database<PoolRecord, string>,
    /** pool name → PoolSeats (entry version = rev). */
    private readonly seats: Database<PoolSeats, string>,
    /** Login-failure counters, and the lower-bound index purgeExpired forgets them by. */
    private readonly logins: Database<LoginCounter, string>,
    private readonly loginExpiry: Database<true, Key>,
    /** `<kind>\0<id>` as raw bytes → the record's value (entry version = rev). */
    private readonly catalog: Database<unknown, Buffer>,
  ) {}

  static async open(dir: string, options: LmdbStoreOptions = {}): Promise<LmdbStore> {
    try {
      // Password hashes and TOTP secrets live here: a directory rotor creates is its owner's
      // alone, and so are the files, whatever the umask (chmod: a umask may take too much).
      if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
      const root = open({
        path: dir,
        // Always a directory: lmdb-js would otherwise take a path with a dot in its last part
        // (`rotor.d`, a mkdtemp name) for a single file.
        noSubdir: false,
        maxDbs: 16,
        // Default: no fsync at all. A committed transaction is in the file (the OS page cache),
        // which a killed process cannot lose. fsync: every transaction is synced before its
        // writes resolve. (lmdb-js's overlappingSync, a middle way, measured here: 118 rotations/s
        // one at a time against noSync's 3,000+, 6 k/s with 64 in flight against 11–41 k/s.)
        noSync: !options.fsync,
        overlappingSync: false,
        ...{ permissionsMode: 0o600 }, // lmdb-js's mode for new files (src/env.cpp), not in its types
      });
      // Files an older rotor made 0644 are tightened too.
      for (const file of ['data.mdb', 'lock.mdb']) if ((statSync(join(dir, file)).mode & 0o777) !== 0o600) chmodSync(join(dir, file), 0o600);
      const records = { sharedStructuresKey: STRUCTURES };
      return new LmdbStore(
        root,
        root.openDB<SessionState, string>({ name: 'sessions', useVersions: true, ...records }),
        root.openDB<TaskRecord, string>({ name: 'tasks', ...records }),
        root.openDB<true, Key>({ name: 'queue' }),
        root.openDB<true, Key>({ name: 'leases' }),
        root.openDB<true, Key>({ name: 'expiry' }),
        root.openDB<UserRecord, string>({ name: 'users', ...records }),
        root.openDB<PoolRecord, string>({ name: 'pools', ...records }),
        root.openDB<PoolSeats, string>({ name: 'seats', useVersions: true, ...records }),
        root.openDB<LoginCounter, string>({ name: 'logins' }),
        root.openDB<true, Key>({ name: 'loginExpiry' }),
        // Raw keys: its shared structures under a key no record's can be (each starts with its kind).
        root.openDB<unknown, Buffer>({ name: 'catalog', useVersions: true, keyEncoding: 'binary', sharedStructuresKey: Buffer.from([0xff]) }),
      );
    } catch (err) {
      throw unavailable(err, `lmdb ${dir}`);
    }
  }

  async createSession(state: SessionState): Promise<void> {
    const created = await this.run(() =>
      this.sessions.ifNoExists(state.id, () => {
        this.sessions.put(state.id, stored(state, 0), 0);
        if (state.expiresAt !== null) this.expiry.put([state.expiresAt, SESSION, state.id], true);
      }),
    );
    if (!created) throw new Error(`session ${state.id} exists`);
  }

  loadSession(id: string): Promise<SessionState | undefined> {
    return this.run(() => loaded(this.sessions.get(id)));
  }

  loadSessionNow(id: string): SessionState | undefined {
    return storeCallNow(this.closed, 'lmdb', () => loaded(this.sessions.get(id)));
  }

  commitSession(next: SessionState, expectedRev: number, released: readonly TaskRecord[]): Promise<boolean> {
    return this.run(() => {
      const id = next.id;
      const expiresAt = next.expiresAt;
      // The index needs an entry only if the expiry moves earlier (see the header). The old
      // expiry, read here outside the write, is the one the conditional write replaces: it is
      // used only if it is the record at version expectedRev, the write's own condition.
      const indexed = expiresAt !== null && !(this.storedExpiry(id, expectedRev) <= expiresAt);
      return this.sessions.ifVersion(id, expectedRev, () => {
        this.sessions.put(id, stored(next, expectedRev + 1), expectedRev + 1);
        if (indexed) this.expiry.put([expiresAt, SESSION, id], true);
        for (const task of released) {
          this.tasks.put(task.id, task);
          this.queue.put([task.releasedAt, task.id], true);
        }
      });
    });
  }

  claimTasks(worker: string, max: number, now: number, leaseMs: number): Promise<TaskRecord[]> {
    return this.run(() =>
      this.root.transaction(() => {
        const claimed: TaskRecord[] = [];
        const leaseUntil = now + leaseMs;
        const claim = (task: TaskRecord) => {
          const running = claimedTask(task, worker, leaseUntil);
          this.tasks.put(task.id, running);
          this.leases.put([leaseUntil, task.id], true);
          claimed.push(running);
        };
        for (const key of Array.from(this.queue.getKeys({ limit: max }))) {
          this.queue.remove(key);
          const task = this.tasks.get(key[1] as string);
          if (task?.status === 'released') claim(task);
        }
        // Then running tasks whose lease ran out: their node died or hung.
        for (const key of Array.from(this.leases.getKeys({ end: [now], limit: max - claimed.length }))) {
          this.leases.remove(key);
          const task = this.tasks.get(key[1] as string);
          if (task?.status === 'running' && task.leaseUntil === key[0]) claim(task);
        }
        return claimed;
      }),
    );
  }

  finishTask(id: string, claim: TaskClaim, outcome: TaskOutcome, now: number): Promise<boolean> {
    return this.run(() =>
      // The claim check and the write in one transaction: a claim in between cannot slip through.
      this.root.transaction(() => {
        const task = this.tasks.get(id);
        if (!holdsClaim(task, claim)) return false;
        this.leases.remove([task.leaseUntil!, id]);
        this.tasks.put(id, finishedTask(task, outcome, now));
        if (outcome.expiresAt !== null) this.expiry.put([outcome.expiresAt, TASK, id], true);
        return true;
      }),
    );
  }

  loadTask(id: string): Promise<TaskRecord | undefined> {
    return this.run(() => withBufferResult(this.tasks.get(id)));
  }

  putUser(user: UserRecord): Promise<void> {
    return this.run(async () => {
      await this.users.put(user.name, user);
    });
  }

  loadUser(name: string): Promise<UserRecord | undefined> {
    return this.run(() => this.users.get(name));
  }

  listUsers(): Promise<UserRecord[]> {
    return this.run(() => Array.from(this.users.getRange(), ({ value }) => value).sort((a, b) => a.name.localeCompare(b.name)));
  }

  removeUser(name: string): Promise<boolean> {
    return this.run(() => this.removeIfThere(this.users, name));
  }

  acceptTotpStep(name: string, step: number): Promise<boolean> {
    return this.run(() =>
      this.root.transaction(() => {
        const user = this.users.get(name);
        if (!user || (user.lastTotpStep !== undefined && user.lastTotpStep >= step)) return false;
        this.users.put(name, { ...user, lastTotpStep: step });
        return true;
      }),
    );
  }
  putPool(pool: PoolRecord): Promise<void> {
    return this.run(async () => {
      await this.pools.put(pool.name, pool);
    });
  }

  loadPool(name: string): Promise<PoolRecord | undefined> {
    return this.run(() => this.pools.get(name));
  }

  listPools(): Promise<PoolRecord[]> {
    return this.run(() => Array.from(this.pools.getRange(), ({ value }) => value).sort((a, b) => a.name.localeCompare(b.name)));
  }

  removePool(name: string): Promise<boolean> {
    return this.run(() =>
      this.root.transaction(() => {
        this.seats.remove(name);
        if (!this.pools.doesExist(name)) return false;
        this.pools.remove(name);
        return true;
      }),
    );
  }

  loadSeats(pool: string): Promise<PoolSeats | undefined> {
    return this.run(() => {
      const entry = this.seats.getEntry(pool);
      return entry === undefined ? undefined : { ...entry.value, rev: entry.version ?? 0 };
    });
  }

  /** A conditional write on the entry version, as commitSession's: LMDB checks it inside the write transaction, across processes too. */
  commitSeats(next: PoolSeats, expectedRev: number): Promise<boolean> {
    return this.run(() => {
      const write = () => this.seats.put(next.pool, { ...next, rev: expectedRev + 1 }, expectedRev + 1);
      return expectedRev === 0 ? this.seats.ifNoExists(next.pool, write) : this.seats.ifVersion(next.pool, expectedRev, write);
    });
  }

  // --- the catalog (spec §10) ---

  loadRecord<T>(kind: CatalogKind, id: string): Promise<CatalogEntry<T> | undefined> {
    return this.run(() => {
      const entry = this.catalog.getEntry(catalogKey(kind, id));
      return entry && { id, rev: entry.version ?? 0, value: entry.value as T };
    });
  }

  /** One range of keys, `<kind>\0` up to `<kind>\x01`: exactly the kind's records, whatever bytes their ids hold. */
  listRecords<T>(kind: CatalogKind): Promise<CatalogEntry<T>[]> {
    const start = catalogKey(kind, '');
    return this.run(() =>
      Array.from(this.catalog.getRange({ start, end: Buffer.from(`${kind}\x01`), versions: true }), ({ key, value, version }) => ({
        id: Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('utf8', start.length),
        rev: version ?? 0,
        value: value as T,
      })).sort(byId),
    );
  }

  /** A conditional write on the entry version, as commitSeats'. */
  commitRecord<T>(kind: CatalogKind, id: string, value: T, expectedRev: number): Promise<boolean> {
    return this.run(() => {
      const key = catalogKey(kind, id);
      const write = () => this.catalog.put(key, value, expectedRev + 1);
      return expectedRev === 0 ? this.catalog.ifNoExists(key, write) : this.catalog.ifVersion(key, expectedRev, write);
    });
  }

  /** The checks and the writes in one transaction: all of them or none, across processes too. */
  createRecords<T>(kind: CatalogKind, entries: readonly { id: string; value: T }[]): Promise<boolean> {
    return this.run(() => {
      if (repeatsId(entries)) return false;
      const keyed = entries.map(({ id, value }) => ({ key: catalogKey(kind, id), value }));
      return this.root.transaction(() => {
        if (keyed.some(({ key }) => this.catalog.doesExist(key))) return false;
        for (const { key, value } of keyed) this.catalog.put(key, value, 1);
        return true;
      });
    });
  }

  removeRecord(kind: CatalogKind, id: string): Promise<boolean> {
    return this.run(() => this.removeIfThere(this.catalog, catalogKey(kind, id)));
  }

  // --- login-failure counters (login throttling) ---

  /**
   * Read and write in one transaction (LMDB's one write lock, across processes too): concurrent
   * failures lose no count. A counter's expiry only moves later while it lives, so the index gets
   * an entry only when a counter starts (the lower bound purgeExpired relies on, as for sessions).
   */
  recordLoginFailure(keys: readonly string[], now: number, windowMs: number): Promise<LoginFailures[]> {
    return this.run(() =>
      this.root.transaction(() =>
        keys.map((key) => {
          const live = liveCounter(this.logins.get(key), now);
          const next: LoginCounter = { count: (live?.count ?? 0) + 1, lastAt: now, expiresAt: now + windowMs };
          this.logins.put(key, next);
          if (!live) this.loginExpiry.put([next.expiresAt, key], true);
          return { count: next.count, lastAt: now };
        }),
      ),
    );
  }

  loginFailures(keys: readonly string[], now: number): Promise<LoginFailures[]> {
    return this.run(() =>
      keys.map((key) => {
        const live = liveCounter(this.logins.get(key), now);
        return live ? { count: live.count, lastAt: live.lastAt } : { count: 0, lastAt: 0 };
      }),
    );
  }

  clearLoginFailures(key: string): Promise<void> {
    return this.run(async () => {
      // Its index entry stays: purgeExpired drops an entry whose counter is gone.
      await this.logins.remove(key);
    });
  }

  /** Forget the counters whose expiry has passed; an index entry of a live counter moves on to its expiry. */
  private purgeLoginCounters(now: number): Promise<void> {
    return this.run(async () => {
      for (;;) {
        const chunk = await this.root.transaction(() => {
          const keys = Array.from(this.loginExpiry.getKeys({ limit: PURGE_CHUNK })).filter((key) => (key[0] as number) <= now);
          for (const entry of keys) {
            this.loginExpiry.remove(entry);
            const key = entry[1] as string;
            const counter = this.logins.get(key);
            if (!counter) continue;
            if (counter.expiresAt > now) this.loginExpiry.put([counter.expiresAt, key], true);
            else this.logins.remove(key);
          }
          return keys.length;
        });
        if (chunk < PURGE_CHUNK) return;
      }
    });
  }


  /** In batches read at once, so no read transaction stays open across the consumer's awaits. */
  async *listSessions(): AsyncIterable<SessionState> {
    let after: string | undefined;
    for (;;) {
      // (An explicit `start: undefined` would begin at the shared-structures entry, a symbol key.)
      const range = after === undefined ? { limit: LIST_BATCH } : { start: after, limit: LIST_BATCH + 1 };
      const read = await this.run(() => Array.from(this.sessions.getRange(range)));
      // `start` is inclusive: drop the entry the last batch ended on (unless it is gone meanwhile).
      const batch = after !== undefined && read[0]?.key === after ? read.slice(1) : read.slice(0, LIST_BATCH);
      for (const { value } of batch) yield loaded(value)!;
      if (batch.length < LIST_BATCH) return;
      after = batch[batch.length - 1].key;
    }
  }

  purgeExpired(now: number): Promise<number> {
    return this.run(async () => {
      let purged = 0;
      for (;;) {
        const chunk = await this.root.transaction(() => {
          // [now, 2] sorts after every [now, kind, id]: all entries with `at` <= now.
          const keys = Array.from(this.expiry.getKeys({ end: [now, 2], limit: PURGE_CHUNK }));
          for (const key of keys) {
            this.expiry.remove(key);
            const [, kind, id] = key as [number, number, string];
            const db: Database<SessionState | TaskRecord, string> = kind === SESSION ? this.sessions : this.tasks;
            const record = db.get(id);
            // The entry may be stale (the record is gone, or never expires now) or early: the
            // record was rotated to a later expiry, where its entry moves (past `now`: not in this purge).
            if (!record || record.expiresAt === null) continue;
            if (record.expiresAt > now) {
              this.expiry.put([record.expiresAt, kind, id], true);
              continue;
            }
            if (kind === TASK && !hasEnded((record as TaskRecord).status)) continue;
            db.remove(id);
            purged++;
          }
          return keys.length;
        });
        if (chunk < PURGE_CHUNK) break;
      }
      await this.purgeLoginCounters(now);
      return purged;
    });
  }

  /** One read (of a key no session id can be: base64url has no colon), through the same path as every call. */
  async ping(): Promise<void> {
    await this.run(() => void this.sessions.get('rotor:ping'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.close();
  }

  /**
   * Write a snapshot of the whole store to `dir`/data.mdb (`dir` exists and is empty) while the
   * store stays in use, here and in any other process: LMDB copies from one read transaction,
   * so the copy holds every commit before it began and none after. (lmdb-backup.ts makes a
   * backup file of it.)
   */
  snapshotTo(dir: string, options: { compact?: boolean | undefined } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    return this.root.backup(dir, options.compact ?? false);
  }

  /**
   * The expiresAt of session `id` as stored at version `rev`, decoding only that field: Infinity
   * for never (null), NaN when it cannot tell (no such record or another version, or a record written
   * before expiresAt came first). Nothing is decoded but one number, nothing is allocated.
   */
  private storedExpiry(id: string, rev: number): number {
    const bytes = this.sessions.getBinaryFast(id);
    if (bytes === undefined || getLastVersion() !== rev) return NaN;
    // A record of a shared structure starts with its id, 0x40–0x5f (msgpackr, as lmdb-js sets
    // it up: 32 shared structures, one-byte ids); its first field follows. Any other start (a
    // structure defined in the record itself) is not read here.
    const structure = bytes[0] - 0x40;
    if (!(structure >= 0 && structure < 0x20)) return NaN;
    const keys = (this.sessions as { decoder?: { structures?: (string[] | undefined)[] } }).decoder?.structures?.[structure];
    if (keys?.[0] !== 'expiresAt') return NaN;
    const type = bytes[1];
    if (type === 0xc0) return Infinity; // nil: never
    if (type === 0xcb && bytes.length >= 10) return bytes.readDoubleBE(2); // how msgpackr writes a millisecond time
    if (type === 0xce && bytes.length >= 6) return bytes.readUInt32BE(2);
    if (type < 0x40) return type; // positive fixint (0x40–0x7f are record ids)
    return NaN;
  }

  /** Remove `key` from `db` if it is there, the check and the remove in one transaction; whether it was. */
  private removeIfThere<K extends string | Buffer>(db: Database<unknown, K>, key: K): Promise<boolean> {
    return this.root.transaction(() => {
      if (!db.doesExist(key)) return false;
      db.remove(key);
      return true;
    });
  }

  private run<T>(work: () => T | Promise<T>): Promise<T> {
    return storeCall(this.closed, 'lmdb', work);
  }
}

/**
 * msgpack gives bytes back as a Buffer or, for values LMDB hands over from its map, as a plain
 * Uint8Array (a copy either way): callers get a Buffer, without another copy.
 */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A session as written: expiresAt first, where commitSession reads it without decoding the rest. */
function stored(state: SessionState, rev: number): SessionState {
  return {
    expiresAt: state.expiresAt,
    id: state.id,
    user: state.user,
    rev,
    gen: state.gen,
    tokenHash: state.tokenHash,
    acked: state.acked,
    prev: state.prev,
    held: state.held,
    meta: state.meta,
    createdAt: state.createdAt,
    revoked: state.revoked,
    quota: state.quota,
    seal: state.seal,
  };
}

const AS_IS = {};
/** For a session written before SessionState had a quota, or a seal. */
const NO_QUOTA = { quota: null, seal: null };
const NO_SEAL = { seal: null };

/**
 * A catalog record's key: its kind, a NUL (no kind holds one), its id in UTF-8, as raw bytes. Not
 * lmdb-js's own key encoding of a string or of [kind, id]: an id holding a NUL (a user name may)
 * can come back from a range as another id there.
 */
function catalogKey(kind: CatalogKind, id: string): Buffer {
  return Buffer.from(`${kind}\0${id}`);
}

interface LoginCounter {
  count: number;
  lastAt: number;
  expiresAt: number;
}

function liveCounter(counter: LoginCounter | undefined, now: number): LoginCounter | undefined {
  return counter !== undefined && counter.expiresAt > now ? counter : undefined;
}

/**
 * A session as read, in the shape every SessionState has (sessionWith's field order, not the
 * stored one), with its reply a Buffer and quota null if it was written before sessions had one.
 * The decoded record is this call's own: its prev is given the Buffer in place.
 */
function loaded(state: SessionState | undefined): SessionState | undefined {
  if (state === undefined) return undefined;
  const prev = state.prev as { hash: string; reply: Buffer } | null;
  if (prev !== null && !Buffer.isBuffer(prev.reply)) prev.reply = asBuffer(prev.reply);
  return sessionWith(state, state.quota === undefined ? NO_QUOTA : state.seal === undefined ? NO_SEAL : AS_IS);
}

function withBufferResult(task: TaskRecord | undefined): TaskRecord | undefined {
  if (!task?.result || Buffer.isBuffer(task.result)) return task;
  return { ...task, result: asBuffer(task.result) };
}

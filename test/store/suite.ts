/**
 * The abstract store suite: every backend runs it (test/store/*.test.ts). It checks the
 * Store contract of src/store/types.ts, method by method, and — for backends that keep data
 * across a restart — that everything comes back after one.
 */
import type tap from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { isRotorError } from '../../src/errors.ts';
import type { SessionQuota } from '../../src/quotas/types.ts';
import type { PoolRecord, PoolSeats } from '../../src/seats/types.ts';
import type { SessionState, TaskSpec } from '../../src/session/types.ts';
import type { CatalogKind, Store, TaskClaim, TaskRecord, UserRecord } from '../../src/store/types.ts';

export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0];

export interface StoreFactory {
  /** A store with no data in it. */
  open(): Promise<Store>;
  /** A new store instance on the data of the store opened last (closed first): a restart. */
  reopen?(): Promise<Store>;
  cleanup?(): Promise<void>;
  /**
   * The backend forgets expired records by itself (Redis TTLs), so purgeExpired may find
   * nothing left to count. What is expired must be gone all the same.
   */
  expiresByItself?: boolean;
}

const HOUR = 3_600_000;
let counter = 0;
/** Ids unique across runs, so backends that share a server never see each other's data. */
export const uid = (kind: string): string => `${kind}-${process.pid}-${++counter}-${randomBytes(4).toString('hex')}`;
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function session(over: Partial<SessionState> = {}): SessionState {
  const now = Date.now();
  return {
    id: uid('s'),
    user: 'alice',
    rev: 0,
    gen: 1,
    tokenHash: 'hash-1',
    acked: false,
    prev: null,
    held: [],
    meta: {},
    createdAt: now,
    expiresAt: now + HOUR,
    revoked: null,
    quota: null,
    seal: null,
    ...over,
  };
}

/** `state` after one more exchange: a new newest token, its reply kept for replay. */
export function rotated(state: SessionState, reply: Buffer = Buffer.from(`reply to gen ${state.gen}`), held: TaskSpec[] = []): SessionState {
  return {
    ...state,
    gen: state.gen + 1,
    tokenHash: `hash-${state.gen + 1}`,
    acked: false,
    prev: { hash: state.tokenHash, reply },
    held,
    expiresAt: Date.now() + HOUR,
  };
}

/** The claim `worker` holds by its `attempt`-th claim of a task: what finishTask must present. */
export const claim = (worker: string, attempt = 1): TaskClaim => ({ worker, attempt });

export function task(sessionId: string, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id: uid('t'),
    name: 'mail',
    payload: { to: 'bob@example.com', n: 1 },
    sessionId,
    user: 'alice',
    status: 'released',
    releasedAt: Date.now(),
    expiresAt: null,
    ...over,
  };
}

function user(name: string, over: Partial<UserRecord> = {}): UserRecord {
  return { name, passwordHash: `scrypt$16384$8$1$c2FsdA==$${name}`, createdAt: Date.now(), ...over };
}

/** Records without their undefined fields: a backend need not keep a key whose value is undefined. */
export function plain<T extends object>(value: T | undefined): Partial<T> | undefined {
  if (value === undefined) return undefined;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Every byte value, some random bytes and a long run: what a stored reply must give back. */
export function awkwardBytes(size = 70_000): Buffer {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return Buffer.concat([all, randomBytes(size), Buffer.alloc(300, 0), all]);
}

export const awkwardMeta = {
  name: 'Zoë 🚀 «quoted» "and" \\ back\nslash',
  empty: '',
  n: 42,
  neg: -7,
  float: 3.25,
  big: Number.MAX_SAFE_INTEGER,
  time: 1_767_225_600_000,
  yes: true,
  no: false,
  nothing: null,
  list: [1, 'two', { three: 3 }, [], {}],
  nested: { a: { b: { c: ['deep'] } } },
  emptyObject: {},
  emptyList: [],
};

/**
 * What a session opened with an access code carries: every kind of field, nulls among them.
 * Not checked against SessionQuota field by field (cast): a store keeps whatever plain data it
 * is given, so the suite need not follow every change of that type.
 */
export function quota(over: Record<string, unknown> = {}): SessionQuota {
  const value: Record<string, unknown> = {
    code: 'c0ffee'.repeat(10) + 'beef',
    template: 'day-pass.v2',
    maxBytesIn: 10_000_000,
    maxBytesOut: null,
    maxBytesTotal: 25_000_000_000,
    maxUsageMs: 3_600_000,
    deadline: 1_767_225_600_000,
    deadlineLimit: 'wall-time',
    codeEndsAt: 1_767_312_000_000,
    idleGapMs: 30_000,
    bytesIn: 0,
    bytesOut: 1234.5,
    usageMs: 17,
    lastAt: 1_767_225_000_000,
    tokenExpiresAt: null,
    endedBy: null,
    ...over,
  };
  return value as unknown as SessionQuota;
}

/**
 * Deep strict equality where bytes compare by type, length and digest: a mismatch in a 70 KB
 * reply reads as one line instead of a hex dump, and a Uint8Array is not taken for a Buffer.
 */
export function same(t: TapTest, actual: unknown, expected: unknown, message = 'should be equivalent strictly'): boolean {
  return t.strictSame(digest(actual), digest(expected), message);
}

function digest(value: unknown): unknown {
  if (value instanceof Uint8Array) {
    const kind = Buffer.isBuffer(value) ? 'Buffer' : value.constructor.name;
    return `${kind}(${value.length}) sha256:${createHash('sha256').update(value).digest('hex')}`;
  }
  if (Array.isArray(value)) return value.map(digest);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, digest(v)]));
  return value;
}

/** `promise` rejects with ROTOR_E_UNAVAILABLE; returns how long that took (ms). */
export async function rejectsUnavailable(t: TapTest, promise: Promise<unknown>, what: string): Promise<number> {
  const started = performance.now();
  try {
    await promise;
    t.fail(`${what} resolved; it should have been refused`);
  } catch (err) {
    t.ok(isRotorError(err) && err.code === 'ROTOR_E_UNAVAILABLE', `${what} rejects with ROTOR_E_UNAVAILABLE`, { err });
  }
  return performance.now() - started;
}

/**
 * One call of every kind the store has (sessions, tasks, users, login counters, the catalog,
 * purge, ping, the session walk), named: for the tests of a backend gone away, where each must
 * reject with ROTOR_E_UNAVAILABLE and none may hang.
 */
export function everyCall(t: TapTest, store: Store): [string, () => Promise<unknown>][] {
  const s = session();
  return [
    ['createSession', () => store.createSession(s)],
    ['loadSession', () => store.loadSession(s.id)],
    ['commitSession', () => store.commitSession(rotated(s), 0, [])],
    ['commitSession with tasks', () => store.commitSession(rotated(s), 0, [task(s.id)])],
    ['claimTasks', () => store.claimTasks('w', 5, Date.now(), 1000)],
    ['finishTask', () => store.finishTask('t', claim('w'), { status: 'done', expiresAt: Date.now() }, Date.now())],
    ['loadTask', () => store.loadTask('t')],
    ['putUser', () => store.putUser({ name: 'u', passwordHash: 'x', createdAt: 0 })],
    ['loadUser', () => store.loadUser('u')],
    ['listUsers', () => store.listUsers()],
    ['removeUser', () => store.removeUser('u')],
    ['acceptTotpStep', () => store.acceptTotpStep('u', 1)],
    ['recordLoginFailure', () => store.recordLoginFailure(['k'], Date.now(), 1000)],
    ['listRecords', () => store.listRecords('code')],
    ['purgeExpired', () => store.purgeExpired(Date.now())],
    ...(store.ping ? [['ping', () => store.ping!()] as [string, () => Promise<unknown>]] : []),
    ['listSessions', async () => {
      for await (const _ of store.listSessions!()) t.fail('listed a session while the backend was away');
    }],
  ];
}

/** Every store claims (3 at a time) at once with the others until the queue is drained; returns each one's claims. */
export async function drainConcurrently(stores: Store[], now: number): Promise<TaskRecord[][]> {
  return Promise.all(
    stores.map(async (store, i) => {
      const mine: TaskRecord[] = [];
      for (;;) {
        const got = await store.claimTasks(`worker-${i}`, 3, now, 60_000);
        if (got.length === 0) return mine;
        mine.push(...got);
      }
    }),
  );
}

export function storeSuite(t: TapTest, name: string, factory: StoreFactory): void {
  /** A fresh store for one subtest, closed when it ends. */
  const fresh = async (tt: TapTest): Promise<Store> => {
    const store = await factory.open();
    tt.teardown(() => store.close());
    return store;
  };
  if (factory.cleanup) t.teardown(factory.cleanup);
  /** A fresh store holding one released task, of an acked session. */
  const oneReleased = async (tt: TapTest): Promise<{ store: Store; r: TaskRecord }> => {
    const store = await fresh(tt);
    const s = session();
    await store.createSession(s);
    const r = task(s.id);
    await store.commitSession({ ...s, acked: true }, 0, [r]);
    return { store, r };
  };

  t.test(`${name}: createSession and loadSession`, async (t) => {
    const store = await fresh(t);
    t.type(store.kind, 'string');
    const s = session({ rev: 3, meta: { plan: 'pro' } });
    await store.createSession(s);
    same(t, await store.loadSession(s.id), { ...s, rev: 0 }, 'stored as given, at rev 0');
    t.equal(await store.loadSession(uid('nope')), undefined, 'an unknown id loads as undefined');
  });

  t.test(`${name}: loadSessionNow (optional) answers what loadSession answers, errors included`, async (t) => {
    const store = await fresh(t);
    if (!store.loadSessionNow) {
      t.ok(store.kind === 'redis' || store.kind === 'redis-cluster', 'only a networked store may lack it');
      return;
    }
    const s = session({ meta: { plan: 'pro' } });
    await store.createSession(s);
    await store.commitSession(rotated(s), 0, []);
    same(t, store.loadSessionNow(s.id), await store.loadSession(s.id), 'the same record');
    t.ok(Buffer.isBuffer(store.loadSessionNow(s.id)?.prev?.reply), 'the reply kept for replay as a Buffer');
    t.equal(store.loadSessionNow(uid('nope')), undefined, 'an unknown id: undefined');
    await store.close();
    t.throws(() => store.loadSessionNow!(s.id), { code: 'ROTOR_E_UNAVAILABLE' }, 'closed: the error loadSession rejects with');
    await t.rejects(store.loadSession(s.id), { code: 'ROTOR_E_UNAVAILABLE' });
  });

  t.test(`${name}: createSession of an existing id rejects and changes nothing`, async (t) => {
    const store = await fresh(t);
    const s = session();
    await store.createSession(s);
    await t.rejects(store.createSession({ ...s, user: 'mallory', tokenHash: 'other' }), 'second create rejects');
    same(t, await store.loadSession(s.id), s, 'the first one is kept');
    const committed = rotated(s);
    t.equal(await store.commitSession(committed, 0, []), true);
    await t.rejects(store.createSession(session({ id: s.id })), 'rejects after commits too');
    t.equal((await store.loadSession(s.id))?.rev, 1, 'rev untouched');
  });

  t.test(`${name}: commitSession is a compare-and-set on rev`, async (t) => {
    const store = await fresh(t);
    const s = session();
    await store.createSession(s);
    const next = rotated(s);
    const stray = task(s.id);
    t.equal(await store.commitSession(next, 1, [stray]), false, 'a rev from the future loses');
    t.equal(await store.commitSession(next, -1, [stray]), false, 'a rev from the past loses');
    same(t, await store.loadSession(s.id), s, 'a lost commit changes nothing');
    t.equal(await store.loadTask(stray.id), undefined, 'a lost commit enqueues nothing');
    same(t, await store.claimTasks('w', 10, Date.now(), 1000), [], 'nothing to claim');

    t.equal(await store.commitSession(next, 0, []), true, 'the right rev wins');
    same(t, await store.loadSession(s.id), { ...next, rev: 1 }, 'stored at rev + 1');
    t.equal(await store.commitSession(rotated(next), 0, []), false, 'the same rev cannot win twice');
    const third = rotated(next);
    t.equal(await store.commitSession({ ...third, rev: 99 }, 1, []), true, 'the rev inside `next` is ignored');
    same(t, await store.loadSession(s.id), { ...third, rev: 2 });
    t.equal(await store.commitSession(session(), 0, []), false, 'an unknown session cannot be committed');
  });

  t.test(`${name}: released tasks are enqueued with the commit`, async (t) => {
    const store = await fresh(t);
    const s = session();
    await store.createSession(s);
    const released = [task(s.id, { payload: { list: [1, 2], deep: { x: 'y' } } }), task(s.id, { name: 'sms', payload: 'text' })];
    t.equal(await store.commitSession({ ...s, acked: true }, 0, released), true);
    for (const r of released) same(t, plain(await store.loadTask(r.id)), plain(r), `${r.name} stored as released`);
    const now = Date.now();
    const claimed = await store.claimTasks('w1', 10, now, 5_000);
    same(t, claimed.map((c) => c.id).sort(), released.map((r) => r.id).sort(), 'both claimable');
    for (const c of claimed) {
      const original = released.find((r) => r.id === c.id)!;
      same(t, plain(c), plain({ ...original, status: 'running', worker: 'w1', leaseUntil: now + 5_000, attempt: 1 }), 'claimed: running, its lease, attempt 1');
    }
  });

  t.test(`${name}: concurrent commits of one rev: exactly one wins, with its tasks only`, async (t) => {
    const store = await fresh(t);
    const s = session();
    await store.createSession(s);
    const attempts = Array.from({ length: 8 }, (_, i) => ({
      next: { ...rotated(s), tokenHash: `contender-${i}` },
      tasks: [task(s.id, { payload: { contender: i } })],
    }));
    const results = await Promise.all(attempts.map((a) => store.commitSession(a.next, 0, a.tasks)));
    t.equal(results.filter(Boolean).length, 1, 'one winner');
    const winner = attempts[results.indexOf(true)];
    same(t, await store.loadSession(s.id), { ...winner.next, rev: 1 }, 'the winner is stored');
    const claimed = await store.claimTasks('w', 100, Date.now(), 1000);
    same(t, claimed.map((c) => c.id), [winner.tasks[0].id], "only the winner's task was enqueued");
  });

  t.test(`${name}: prev.reply bytes, held tasks and meta round-trip exactly`, async (t) => {
    const store = await fresh(t);
    const s = session({ meta: awkwardMeta });
    await store.createSession(s);
    same(t, await store.loadSession(s.id), s, 'meta round-trips through create');
    const reply = awkwardBytes();
    const held: TaskSpec[] = [
      { id: uid('t'), name: 'mail', payload: awkwardMeta },
      { id: uid('t'), name: 'noop', payload: null },
    ];
    const next = rotated({ ...s, acked: true }, reply, held);
    t.equal(await store.commitSession(next, 0, []), true);
    const loaded = await store.loadSession(s.id);
    t.ok(loaded?.prev && Buffer.isBuffer(loaded.prev.reply), 'reply comes back as a Buffer');
    t.ok(loaded?.prev?.reply.equals(reply), 'byte for byte');
    same(t, loaded, { ...next, rev: 1 }, 'the whole state round-trips');

    const empty = rotated({ ...next, acked: true }, Buffer.alloc(0));
    t.equal(await store.commitSession(empty, 1, []), true);
    const reloaded = await store.loadSession(s.id);
    t.ok(Buffer.isBuffer(reloaded?.prev?.reply) && reloaded?.prev?.reply.length === 0, 'an empty reply stays an empty Buffer');

    const acked = { ...empty, acked: true, prev: null, held: [] };
    t.equal(await store.commitSession(acked, 2, []), true);
    same(t, await store.loadSession(s.id), { ...acked, rev: 3 }, 'prev goes back to null');
  });

  t.test(`${name}: a session's quota round-trips exactly, and null stays null`, async (t) => {
    const store = await fresh(t);
    const now = (id: string) => store.loadSessionNow?.(id);
    const metered = session({ quota: quota() });
    await store.createSession(metered);
    same(t, await store.loadSession(metered.id), metered, 'through createSession');
    if (store.loadSessionNow) same(t, now(metered.id), metered, 'loadSessionNow too');
    const spent = rotated({ ...metered, acked: true, quota: quota({ bytesIn: 4096, usageMs: 61_000, lastAt: 1_767_225_061_000, tokenExpiresAt: 1_767_225_200_000 }) });
    t.equal(await store.commitSession(spent, 0, []), true);
    same(t, await store.loadSession(metered.id), { ...spent, rev: 1 }, 'through commitSession');
    const ended = { ...rotated({ ...spent, acked: true }), quota: quota({ endedBy: 'bytes-in', deadline: null, deadlineLimit: null }), revoked: { at: 1, reason: 'quota' as const } };
    t.equal(await store.commitSession(ended, 1, []), true);
    same(t, await store.loadSession(metered.id), { ...ended, rev: 2 }, 'a quota that ended the session');
    if (store.loadSessionNow) same(t, now(metered.id), { ...ended, rev: 2 }, 'loadSessionNow too');

    const plainSession = session();
    await store.createSession(plainSession);
    t.equal((await store.loadSession(plainSession.id))?.quota, null, 'a session without a code: null');
    if (store.loadSessionNow) t.equal(now(plainSession.id)?.quota, null, 'loadSessionNow too');
    t.equal(await store.commitSession({ ...spent, id: plainSession.id }, 0, []), true, 'a quota added by a commit');
    same(t, (await store.loadSession(plainSession.id))?.quota, spent.quota);
    t.equal(await store.commitSession({ ...rotated(plainSession), quota: null }, 1, []), true, 'and taken away again');
    t.equal((await store.loadSession(plainSession.id))?.quota, null, 'null after a commit');
    if (store.loadSessionNow) t.equal(now(plainSession.id)?.quota, null, 'loadSessionNow too');
  });

  t.test(`${name}: a sealed session's seal round-trips exactly, and null stays null`, async (t) => {
    const store = await fresh(t);
    const seal = { app: 'AAAAAAAAAAAAAAAA', instance: 'host-1.example:8080', key: 'k1.c2VhbGVkIGtleSBieXRlcw==', seen: '', from: 1 };
    const sealed = session({ seal });
    await store.createSession(sealed);
    same(t, await store.loadSession(sealed.id), sealed, 'through createSession');
    if (store.loadSessionNow) same(t, store.loadSessionNow(sealed.id), sealed, 'loadSessionNow too');
    const later = { ...rotated({ ...sealed, acked: true }), seal: { ...seal, key: 'k2.b3RoZXI=', seen: ' 1.AAAAAAAAAAAAAAAAAAAAAA 2.BBBBBBBBBBBBBBBBBBBBBB', from: 1 } };
    t.equal(await store.commitSession(later, 0, []), true);
    same(t, await store.loadSession(sealed.id), { ...later, rev: 1 }, 'through commitSession: seen proofs and a key wrapped again');
    const plainSession = session();
    await store.createSession(plainSession);
    t.equal((await store.loadSession(plainSession.id))?.seal, null, 'a session not sealed: null');
  });

  t.test(`${name}: expiresAt null is kept and never purged`, async (t) => {
    const store = await fresh(t);
    const s = session({ expiresAt: null });
    await store.createSession(s);
    t.equal((await store.loadSession(s.id))?.expiresAt, null);
    const next = { ...rotated(s), expiresAt: null };
    t.equal(await store.commitSession(next, 0, []), true);
    t.equal((await store.loadSession(s.id))?.expiresAt, null, 'after a commit too');
    await store.purgeExpired(Date.now() + 1000 * HOUR);
    same(t, await store.loadSession(s.id), { ...next, rev: 1 }, 'a purge far in the future keeps it');

    const timed = session();
    await store.createSession(timed);
    const forever = { ...rotated(timed), expiresAt: null };
    t.equal(await store.commitSession(forever, 0, []), true);
    await sleep(5);
    await store.purgeExpired(Date.now() + 2 * HOUR);
    t.ok(await store.loadSession(timed.id), 'a session made never-expiring by a commit is not purged');
  });

  t.test(`${name}: claimTasks claims each task once, even with concurrent claimers`, async (t) => {
    const store = await fresh(t);
    const s = session();
    await store.createSession(s);
    let rev = 0;
    const all: TaskRecord[] = [];
    for (let i = 0; i < 5; i++) {
      const batch = Array.from({ length: 5 }, (_, j) => task(s.id, { payload: { i, j } }));
      all.push(...batch);
      t.equal(await store.commitSession({ ...s, gen: s.gen + i }, rev++, batch), true);
    }
    const limited = await store.claimTasks('solo', 2, Date.now(), 60_000);
    t.equal(limited.length, 2, 'max is respected');
    const claims = await drainConcurrently([store, store, store, store], Date.now());
    const ids = [...limited, ...claims.flat()].map((c) => c.id);
    t.equal(ids.length, all.length, 'no task claimed twice');
    same(t, [...ids].sort(), all.map((a) => a.id).sort(), 'every task claimed');
    for (const [i, mine] of claims.entries()) {
      for (const c of mine) t.equal(c.worker, `worker-${i}`, 'marked with its claimer');
    }
    same(t, await store.claimTasks('late', 10, Date.now(), 60_000), [], 'nothing left while leases hold');
    const reloaded = await store.loadTask(limited[0].id);
    t.equal(reloaded?.status, 'running');
    t.equal(reloaded?.worker, 'solo');
  });

  t.test(`${name}: a running task whose lease ran out is claimable again`, async (t) => {
    const { store, r } = await oneReleased(t);
    const t0 = Date.now();
    const [first] = await store.claimTasks('dead-node', 5, t0, 1_000);
    t.equal(first?.id, r.id);
    t.equal(first?.attempt, 1, 'the first claim is attempt 1');
    same(t, await store.claimTasks('other', 5, t0 + 999, 1_000), [], 'not while the lease holds');
    const [again] = await store.claimTasks('other', 5, t0 + 1_001, 1_000);
    t.equal(again?.id, r.id, 'claimable once the lease ran out');
    t.equal(again?.status, 'running');
    t.equal(again?.worker, 'other');
    t.equal(again?.leaseUntil, t0 + 2_001, 'with a new lease');
    t.equal(again?.attempt, 2, 'and the next attempt number');
    t.equal((await store.loadTask(r.id))?.attempt, 2, 'stored with the claim');
    same(t, await store.claimTasks('third', 5, t0 + 1_500, 1_000), [], 'the new lease holds');
    const outcome = { status: 'done' as const, result: Buffer.from('ok'), expiresAt: t0 + HOUR };
    t.equal(await store.finishTask(r.id, claim('dead-node', 1), outcome, t0 + 1_600), false, 'the old claimer cannot finish it');
    t.equal(await store.finishTask(r.id, claim('other', 1), outcome, t0 + 1_600), false, 'nor the new worker with the old attempt');
    t.equal(await store.finishTask(r.id, claim('other', 2), outcome, t0 + 1_600), true, 'the new claim can');
    t.equal((await store.loadTask(r.id))?.attempt, 2, 'a finished task keeps the attempt that finished it');
    same(t, await store.claimTasks('fourth', 5, t0 + 10 * HOUR, 1_000), [], 'a finished task is never claimed');
  });

  t.test(`${name}: a stale claim cannot finish a task claimed again, even by the same worker`, async (t) => {
    const { store, r } = await oneReleased(t);
    const t0 = Date.now();
    // One node claims, stalls past its lease, and claims the task again itself.
    t.equal((await store.claimTasks('node', 5, t0, 1_000))[0]?.attempt, 1);
    const [again] = await store.claimTasks('node', 5, t0 + 1_001, 1_000);
    t.equal(again?.attempt, 2, 'the same worker, a new attempt');
    const stale = { status: 'done' as const, result: Buffer.from('stale'), expiresAt: t0 + HOUR };
    const current = { status: 'done' as const, result: Buffer.from('fresh'), expiresAt: t0 + HOUR };
    t.equal(await store.finishTask(r.id, claim('node', 1), stale, t0 + 1_100), false, 'the first attempt is refused');
    same(t, plain(await store.loadTask(r.id)), plain(again), 'and changed nothing');
    t.equal(await store.finishTask(r.id, claim('node', 3), stale, t0 + 1_100), false, 'an attempt not made yet is refused');
    // The stale and the current claim finish at the same moment: only the current one lands.
    const raced = await Promise.all([
      store.finishTask(r.id, claim('node', 1), stale, t0 + 1_200),
      store.finishTask(r.id, claim('node', 2), current, t0 + 1_200),
      store.finishTask(r.id, claim('node', 1), stale, t0 + 1_200),
    ]);
    same(t, raced, [false, true, false], 'only the current claim finishes it');
    t.equal(await store.finishTask(r.id, claim('node', 1), stale, t0 + 1_300), false, 'nor afterwards');
    const done = await store.loadTask(r.id);
    t.match(done, { status: 'done', attempt: 2, finishedAt: t0 + 1_200 });
    t.equal(done?.result?.toString(), 'fresh', "the current claim's outcome stands");
  });

  t.test(`${name}: a timed-out outcome is stored, kept and never claimed again`, async (t) => {
    const { store, r } = await oneReleased(t);
    const now = Date.now();
    await store.claimTasks('w', 5, now, 1_000);
    const outcome = { status: 'timed_out' as const, error: 'told to stop after 60000 ms', expiresAt: now + HOUR };
    t.equal(await store.finishTask(r.id, claim('w'), outcome, now + 10), true);
    const loaded = await store.loadTask(r.id);
    t.match(loaded, { status: 'timed_out', error: 'told to stop after 60000 ms', finishedAt: now + 10, attempt: 1, expiresAt: now + HOUR });
    t.equal(loaded?.leaseUntil, undefined, 'it holds no lease');
    same(t, await store.claimTasks('w2', 5, now + 10 * HOUR, 1_000), [], 'it is never claimed again');
    t.equal(await store.finishTask(r.id, claim('w'), { status: 'done', expiresAt: now + HOUR }, now + 20), false, 'nor finished again');
  });

  t.test(`${name}: finishTask and loadTask`, async (t) => {
    const store = await fresh(t);
    const s = session();
    await store.createSession(s);
    const [a, b, c] = [task(s.id), task(s.id, { name: 'fails' }), task(s.id)];
    await store.commitSession({ ...s, acked: true }, 0, [a, b]);
    const now = Date.now();
    const result = awkwardBytes(1000);
    const done = { status: 'done' as const, result, contentType: 'application/octet-stream', expiresAt: now + HOUR };
    t.equal(await store.finishTask(a.id, claim('w'), done, now), false, 'a released (unclaimed) task cannot be finished');
    t.equal(await store.finishTask(uid('t'), claim('w'), done, now), false, 'an unknown task cannot be finished');
    await store.claimTasks('w', 10, now, 60_000);
    t.equal(await store.finishTask(a.id, claim('intruder'), done, now + 1), false, 'wrong worker');
    t.equal((await store.loadTask(a.id))?.status, 'running', 'wrong worker changed nothing');
    t.equal(await store.finishTask(a.id, claim('w'), done, now + 1), true, 'its claimer finishes it');
    const loaded = await store.loadTask(a.id);
    t.match(loaded, { id: a.id, sessionId: s.id, user: 'alice', name: 'mail', status: 'done', finishedAt: now + 1, contentType: 'application/octet-stream', expiresAt: now + HOUR });
    same(t, loaded?.payload, a.payload);
    t.ok(Buffer.isBuffer(loaded?.result) && loaded.result.equals(result), 'result bytes round-trip');
    t.equal(loaded?.leaseUntil, undefined, 'a finished task holds no lease');
    t.equal(await store.finishTask(a.id, claim('w'), done, now + 2), false, 'a finished task cannot be finished again');
    t.equal((await store.loadTask(a.id))?.finishedAt, now + 1, 'and stays as it was');

    t.equal(await store.finishTask(b.id, claim('w'), { status: 'failed', error: 'boom: ünïcode', expiresAt: now + HOUR }, now + 3), true);
    t.match(await store.loadTask(b.id), { status: 'failed', error: 'boom: ünïcode', finishedAt: now + 3 });
    t.equal((await store.loadTask(b.id))?.result, undefined, 'a failed task has no result');

    await store.commitSession({ ...s, acked: true, gen: 2 }, 1, [c]);
    await store.claimTasks('w', 10, now, 60_000);
    t.equal(await store.finishTask(c.id, claim('w'), { status: 'done', result: Buffer.alloc(0), expiresAt: now + HOUR }, now), true);
    const empty = await store.loadTask(c.id);
    t.ok(Buffer.isBuffer(empty?.result) && empty.result.length === 0, 'an empty result stays an empty Buffer');
    t.equal(await store.loadTask(uid('t')), undefined, 'an unknown task loads as undefined');
  });

  t.test(`${name}: users`, async (t) => {
    const store = await fresh(t);
    same(t, await store.listUsers(), [], 'none at first');
    const names = ['mallory', 'alice', 'Bob', 'carol.o@example.com', 'zoë'];
    for (const n of names) await store.putUser(user(n));
    const alice = user('alice', { totpSecret: 'JBSWY3DPEHPK3PXP', lastTotpStep: 57_000_000 });
    await store.putUser(alice);
    same(t, plain(await store.loadUser('alice')), plain(alice), 'putUser replaces a user, all fields round-trip');
    t.equal(await store.loadUser('nobody'), undefined);
    const listed = await store.listUsers();
    same(t, listed.map((u) => u.name), [...names].sort((a, b) => a.localeCompare(b)), 'listed once each, sorted by name');
    same(t, plain(listed.find((u) => u.name === 'alice')), plain(alice));
    t.equal(await store.removeUser('mallory'), true, 'remove says it removed');
    t.equal(await store.removeUser('mallory'), false, 'and not twice');
    t.equal(await store.loadUser('mallory'), undefined);
    t.equal((await store.listUsers()).length, names.length - 1);
  });

  t.test(`${name}: seat pools are kept like users`, async (t) => {
    const store = await fresh(t);
    const pool = (name: string, seats = 2): PoolRecord => ({ name, seats, perUser: 1, heartbeatMs: 300_000, maxHoldMs: null, queueLimit: 100, perUserQueueLimit: 10, createdAt: 5 });
    const a = uid('pool');
    const b = uid('pool');
    await store.putPool(pool(b));
    await store.putPool(pool(a, 3));
    same(t, await store.loadPool(a), pool(a, 3), 'every field round-trips');
    t.equal(await store.loadPool(uid('none')), undefined);
    const listed = (await store.listPools()).map((p) => p.name).filter((n) => n === a || n === b);
    same(t, listed, [a, b].sort((x, y) => x.localeCompare(y)), 'listed once each, sorted by name');
    await store.putPool({ ...pool(a), seats: 9, maxHoldMs: 60_000 });
    same(t, await store.loadPool(a), { ...pool(a), seats: 9, maxHoldMs: 60_000 }, 'put replaces');
    t.equal(await store.removePool(a), true);
    t.equal(await store.removePool(a), false, 'not twice');
    t.equal(await store.loadPool(a), undefined);
  });

  t.test(`${name}: a pool's seats record is a compare-and-set on rev, and one of concurrent commits wins`, async (t) => {
    const store = await fresh(t);
    const pool = uid('pool');
    t.equal(await store.loadSeats(pool), undefined, 'nobody asked yet');
    const holder = { session: uid('s'), user: 'alice', since: 10, seenAt: 20 };
    const first: PoolSeats = { pool, rev: 0, holders: [holder], queue: [], holdsEnded: 0, heldMsTotal: 0 };
    t.equal(await store.commitSeats(first, 1), false, 'a record that does not exist is not at rev 1');
    t.equal(await store.commitSeats(first, 0), true, 'created at rev 1');
    same(t, await store.loadSeats(pool), { ...first, rev: 1 });
    t.equal(await store.commitSeats({ ...first, holders: [] }, 0), false, 'a stale rev loses');
    same(t, (await store.loadSeats(pool))?.holders, [holder], 'and changes nothing');
    const waiter = { session: uid('s'), user: 'bob', since: 30, seenAt: 30 };
    const racers = Array.from({ length: 8 }, (_, i) => ({ ...first, rev: 1, queue: [{ ...waiter, since: i }], holdsEnded: i }));
    const won = await Promise.all(racers.map((r) => store.commitSeats(r, 1)));
    t.equal(won.filter(Boolean).length, 1, 'eight commits of one rev: one wins');
    const stored = (await store.loadSeats(pool))!;
    t.equal(stored.rev, 2);
    t.equal(stored.holdsEnded, won.indexOf(true), 'the winner is what is stored');
    await store.putPool({ name: pool, seats: 1, perUser: 0, heartbeatMs: 1000, maxHoldMs: null, queueLimit: 1, perUserQueueLimit: 1, createdAt: 0 });
    t.equal(await store.removePool(pool), true);
    t.equal(await store.loadSeats(pool), undefined, 'removing the pool forgets its seats');
  });

  t.test(`${name}: acceptTotpStep accepts only strictly newer steps, atomically`, async (t) => {
    const store = await fresh(t);
    t.equal(await store.acceptTotpStep('nobody', 1), false, 'unknown user');
    await store.putUser(user('alice', { totpSecret: 'JBSWY3DPEHPK3PXP' }));
    t.equal(await store.acceptTotpStep('alice', 100), true, 'the first step');
    t.equal(await store.acceptTotpStep('alice', 100), false, 'the same step again');
    t.equal(await store.acceptTotpStep('alice', 99), false, 'an older step');
    t.equal(await store.acceptTotpStep('alice', 101), true, 'a newer step');
    t.equal((await store.loadUser('alice'))?.lastTotpStep, 101, 'remembered on the user');
    t.equal((await store.loadUser('alice'))?.totpSecret, 'JBSWY3DPEHPK3PXP', 'the rest of the user kept');

    const same = await Promise.all(Array.from({ length: 16 }, () => store.acceptTotpStep('alice', 200)));
    t.equal(same.filter(Boolean).length, 1, 'one code presented 16 times at once is accepted once');
    const mixed = await Promise.all([203, 201, 202, 201, 203].map((step) => store.acceptTotpStep('alice', step)));
    t.ok(mixed.filter(Boolean).length >= 1, 'some newer step accepted');
    t.equal(mixed.filter((ok, i) => ok && [203, 201, 202, 201, 203][i] === 203).length, 1, '203 accepted exactly once');
    t.equal((await store.loadUser('alice'))?.lastTotpStep, 203, 'the newest step wins');
    await store.putUser(user('bob'));
    t.equal(await store.acceptTotpStep('bob', 5), true, 'a user without a previous step');
  });

  t.test(`${name}: purgeExpired forgets expired sessions and finished tasks only`, async (t) => {
    const store = await fresh(t);
    const soon = Date.now() + 150;
    const expired = session({ expiresAt: soon });
    const live = session();
    const forever = session({ expiresAt: null });
    for (const s of [expired, live, forever]) await store.createSession(s);
    const [finishedOld, timedOutOld, finishedNew, running, released] = [task(live.id), task(live.id), task(live.id), task(live.id), task(live.id)];
    await store.commitSession({ ...live, acked: true }, 0, [finishedOld, timedOutOld, finishedNew, running]);
    const now = Date.now();
    t.equal((await store.claimTasks('w', 4, now, 1_000)).length, 4);
    await store.finishTask(finishedOld.id, claim('w'), { status: 'done', result: Buffer.from('x'), expiresAt: soon }, now);
    await store.finishTask(timedOutOld.id, claim('w'), { status: 'timed_out', error: 'told to stop', expiresAt: soon }, now);
    await store.finishTask(finishedNew.id, claim('w'), { status: 'failed', error: 'e', expiresAt: now + HOUR }, now);
    await store.commitSession({ ...live, acked: true, gen: 2 }, 1, [released]);

    t.equal(await store.purgeExpired(Date.now()), 0, 'nothing has expired yet');
    t.ok(await store.loadSession(expired.id), 'not before its time');
    await sleep(soon - Date.now() + 30);
    const purged = await store.purgeExpired(Date.now());
    if (factory.expiresByItself) t.ok(purged >= 0 && purged <= 3, 'counts at most what expired');
    else t.equal(purged, 3, 'one session and two tasks');
    t.equal(await store.loadSession(expired.id), undefined, 'the expired session is gone');
    t.equal(await store.loadTask(finishedOld.id), undefined, 'the expired result is gone');
    t.equal(await store.loadTask(timedOutOld.id), undefined, 'and the expired timed-out outcome');
    t.ok(await store.loadSession(live.id), 'a live session stays');
    t.ok(await store.loadSession(forever.id), 'a never-expiring session stays');
    t.equal((await store.loadTask(finishedNew.id))?.status, 'failed', 'a result still within its time stays');
    t.equal((await store.loadTask(running.id))?.status, 'running', 'a running task stays');
    t.equal((await store.loadTask(released.id))?.status, 'released', 'a released task stays');
    const late = await store.claimTasks('w2', 10, now + 2_000, 1_000);
    same(t, late.map((c) => c.id).sort(), [running.id, released.id].sort(), 'both still claimable after the purge');
    t.equal(await store.purgeExpired(Date.now()), 0, 'a second purge finds nothing');
  });

  t.test(`${name}: listSessions (optional) walks every session once, as stored`, async (t) => {
    const store = await fresh(t);
    if (!store.listSessions) {
      t.pass('this store does not list its sessions (the method is optional)');
      return;
    }
    const created = Array.from({ length: 2_345 }, (_, i) => session({ meta: { i } }));
    for (let i = 0; i < created.length; i += 250) await Promise.all(created.slice(i, i + 250).map((s) => store.createSession(s)));
    const changed = rotated(created[7], awkwardBytes(100));
    await store.commitSession(changed, 0, []);
    const revoked = { ...created[8], revoked: { at: Date.now(), reason: 'logout' as const } };
    await store.commitSession(revoked, 0, []);
    const seen = new Map<string, SessionState>();
    let visits = 0;
    for await (const s of store.listSessions()) {
      visits++;
      seen.set(s.id, s);
      if (visits % 500 === 0) await sleep(1); // a slow consumer: the walk must survive awaits
    }
    t.equal(visits, created.length, 'each session once');
    same(t, [...seen.keys()].sort(), created.map((s) => s.id).sort(), 'every session');
    same(t, seen.get(changed.id), { ...changed, rev: 1 }, 'as last committed, reply bytes included');
    same(t, seen.get(revoked.id), { ...revoked, rev: 1 }, 'revoked ones too');
    same(t, seen.get(created[0].id), created[0]);
  });

  t.test(`${name}: close`, async (t) => {
    const store = await factory.open();
    const s = session();
    await store.createSession(s);
    await store.close();
    await store.close();
    t.pass('close twice is fine');
    await rejectsUnavailable(t, store.loadSession(s.id), 'loadSession');
    await rejectsUnavailable(t, store.createSession(session()), 'createSession');
    await rejectsUnavailable(t, store.commitSession(rotated(s), 0, []), 'commitSession');
    await rejectsUnavailable(t, store.claimTasks('w', 1, Date.now(), 1000), 'claimTasks');
    await rejectsUnavailable(t, store.listUsers(), 'listUsers');
  });

  loginFailureSuite(t, name, factory, fresh);
  catalogSuite(t, name, fresh);

  if (factory.reopen) {
    const reopen = factory.reopen.bind(factory);
    t.test(`${name}: everything survives a restart`, async (t) => {
      const store = await fresh(t);
      const now = Date.now();
      // A session waiting for its ack: the reply kept for replay, tasks held, a code's quota.
      const pending = session({ meta: awkwardMeta, quota: quota() });
      await store.createSession(pending);
      const pendingNext = rotated({ ...pending, acked: true }, awkwardBytes(), [{ id: uid('t'), name: 'mail', payload: { held: true } }]);
      await store.commitSession(pendingNext, 0, []);
      // A session rotated a few times, its acks released tasks in every state.
      const busy = session({ expiresAt: null });
      await store.createSession(busy);
      const [done, failed, running, released] = [task(busy.id), task(busy.id), task(busy.id), task(busy.id)];
      await store.commitSession({ ...busy, acked: true }, 0, [done, failed, running]);
      await store.claimTasks('node-1', 3, now, 60_000);
      const doneResult = awkwardBytes(500);
      await store.finishTask(done.id, claim('node-1'), { status: 'done', result: doneResult, contentType: 'text/x', expiresAt: now + HOUR }, now);
      await store.finishTask(failed.id, claim('node-1'), { status: 'failed', error: 'nope', expiresAt: now + HOUR }, now);
      const busyLast = { ...rotated({ ...busy, acked: true, gen: 5 }), expiresAt: null };
      await store.commitSession(busyLast, 1, [released]);
      const revoked = session();
      await store.createSession(revoked);
      const revokedState = { ...revoked, revoked: { at: now, reason: 'reuse' as const }, expiresAt: now + HOUR };
      await store.commitSession(revokedState, 0, []);
      const alice = user('alice', { totpSecret: 'JBSWY3DPEHPK3PXP' });
      await store.putUser(alice);
      await store.putUser(user('bob'));
      await store.acceptTotpStep('alice', 777);
      await store.createRecords('code', [{ id: 'c1', value: catalogValue('c1') }, { id: 'c2', value: catalogValue('c2') }]);
      await store.commitRecord('code', 'c2', { ...catalogValue('c2'), status: 'active' }, 1);
      await store.commitRecord('template', 't1', catalogValue('t1'), 0);
      const before = {
        sessions: await Promise.all([pending, busy, revoked].map((s) => store.loadSession(s.id))),
        tasks: await Promise.all([done, failed, running, released].map(async (r) => plain(await store.loadTask(r.id)))),
        users: (await store.listUsers()).map((u) => plain(u)),
      };
      await store.close();

      const again = await reopen();
      t.teardown(() => again.close());
      same(t, await again.loadSession(pending.id), { ...pendingNext, rev: 1 }, 'a session with a pending reply');
      t.ok((await again.loadSession(pending.id))?.prev?.reply.equals(pendingNext.prev!.reply), 'its reply byte for byte');
      same(t, await again.loadSession(busy.id), { ...busyLast, rev: 2 }, 'a rotated, never-expiring session');
      same(t, await again.loadSession(revoked.id), { ...revokedState, rev: 1 }, 'a revoked session');
      same(
        t,
        await Promise.all([pending, busy, revoked].map((s) => again.loadSession(s.id))),
        before.sessions,
        'sessions as they were',
      );
      same(
        t,
        await Promise.all([done, failed, running, released].map(async (r) => plain(await again.loadTask(r.id)))),
        before.tasks,
        'tasks as they were',
      );
      t.ok((await again.loadTask(done.id))?.result?.equals(doneResult), 'a result byte for byte');
      same(t, (await again.listUsers()).map((u) => plain(u)), before.users, 'users as they were');
      t.equal((await again.loadUser('alice'))?.lastTotpStep, 777, 'the last TOTP step too');
      t.equal(await again.acceptTotpStep('alice', 777), false, 'so a used code stays used');
      same(
        t,
        await again.listRecords('code'),
        [{ id: 'c1', rev: 1, value: catalogValue('c1') }, { id: 'c2', rev: 2, value: { ...catalogValue('c2'), status: 'active' } }],
        'catalog records and their revs',
      );
      same(t, await again.loadRecord('template', 't1'), { id: 't1', rev: 1, value: catalogValue('t1') });
      t.equal(await again.commitRecord('code', 'c2', catalogValue('c2'), 1), false, 'a rev from before the restart is stale');
      t.equal(await again.commitRecord('code', 'c2', catalogValue('c2'), 2), true, 'commits continue from the stored rev');

      const claimed = await again.claimTasks('node-2', 10, now + 30_000, 60_000);
      same(t, claimed.map((c) => c.id), [released.id], 'the released task is still queued, the running one still leased');
      const reclaimed = await again.claimTasks('node-2', 10, now + 61_000, 60_000);
      same(t, reclaimed.map((c) => c.id), [running.id], "the dead node's task is claimable after its lease");
      t.equal(reclaimed[0]?.attempt, 2, 'as attempt 2: the claim made before the restart counts');
      t.equal(await again.finishTask(running.id, claim('node-2', 2), { status: 'done', expiresAt: now + HOUR }, now + 61_001), true);
      t.equal(await again.commitSession(rotated({ ...pendingNext, acked: true }), 1, []), true, 'commits continue from the stored rev');
    });
  }
}

/** The login-failure counters (login throttling): counted exactly, also when failures race, and forgotten after their window. */
function loginFailureSuite(t: TapTest, name: string, factory: StoreFactory, fresh: (tt: TapTest) => Promise<Store>): void {
  // Keys as rotor makes them: a NUL between the parts, a user name as typed (any UTF-8).
  const key = (part: string) => `p\0${uid('addr')}\0${part}`;

  t.test(`${name}: login failures are counted per key, expire after their quiet window, and clear`, async (t) => {
    const store = await fresh(t);
    const now = Date.now();
    const [a, b, c] = [key('ällice'), key('bob'), key('carol')];
    same(t, await store.recordLoginFailure([a, b], now, HOUR), [{ count: 1, lastAt: now }, { count: 1, lastAt: now }], 'a first failure counts 1 in each key');
    same(t, await store.recordLoginFailure([a], now + 10, HOUR), [{ count: 2, lastAt: now + 10 }], 'the next one adds to it');
    same(
      t,
      await store.loginFailures([a, b, c], now + 20),
      [{ count: 2, lastAt: now + 10 }, { count: 1, lastAt: now }, { count: 0, lastAt: 0 }],
      'read in the order asked; a key never failed reads 0',
    );
    same(t, await store.loginFailures([a, b], now + HOUR), [{ count: 2, lastAt: now + 10 }, { count: 0, lastAt: 0 }], 'a counter expires a window after its last failure');
    same(t, await store.recordLoginFailure([b], now + HOUR, HOUR), [{ count: 1, lastAt: now + HOUR }], 'an expired counter starts again from 1');
    same(t, await store.loginFailures([a], now + 10 + HOUR), [{ count: 0, lastAt: 0 }], 'the renewed window of the other ran out too');
    await store.clearLoginFailures(b);
    await store.clearLoginFailures(c);
    same(t, await store.loginFailures([a, b], now + 20), [{ count: 2, lastAt: now + 10 }, { count: 0, lastAt: 0 }], 'clear forgets one counter (a never-counted key is fine too)');
    same(t, await store.recordLoginFailure([], now, HOUR), [], 'no keys, no counts');
    same(t, await store.loginFailures([], now), []);
  });

  t.test(`${name}: concurrent login failures are counted exactly`, async (t) => {
    const store = await fresh(t);
    const now = Date.now();
    const [pair, address] = [key('alice'), key('any')];
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => store.recordLoginFailure([pair, address], now + (i % 3), HOUR)));
    same(t, results.map((r) => r[0].count).sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i + 1), 'each failure got its own count: 1 to 60, none lost or doubled');
    same(t, results.map((r) => r[1].count).sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i + 1), 'in every key of the call');
    t.same((await store.loginFailures([pair, address], now + 5)).map((f) => f.count), [60, 60], '60 stored');
  });

  t.test(`${name}: expired login-failure counters are gone from the store (purgeExpired${factory.expiresByItself ? ', or its own TTL' : ''})`, async (t) => {
    const store = await fresh(t);
    const now = Date.now();
    const [short, long] = [key('short'), key('long')];
    await store.recordLoginFailure([short], now, 50);
    await store.recordLoginFailure([long], now, HOUR);
    if (factory.expiresByItself) await sleep(150);
    await store.purgeExpired(now + 100);
    // Read as of `now`, when both were live: only what the store still holds can answer.
    t.same((await store.loginFailures([short, long], now)).map((f) => f.count), [0, 1], 'the expired counter is gone, the live one kept');
  });
}

/** A catalog value as rotor keeps them: nested objects and lists, nulls, numbers, unicode. */
function catalogValue(id: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    lot: 'lot-2026-01',
    issuer: 'Zoë 🚀 «ops»',
    status: 'unused',
    firstUsedAt: null,
    used: { bytesIn: 0, bytesOut: 12.5, usageMs: Number.MAX_SAFE_INTEGER },
    nodes: ['eu-1', 'eu-2'],
    lastEnd: null,
    reusable: false,
    ...over,
  };
}

/** The catalog (spec §10): versioned records per kind, compare-and-set, batches all or nothing. */
function catalogSuite(t: TapTest, name: string, fresh: (tt: TapTest) => Promise<Store>): void {
  t.test(`${name}: catalog records are created, loaded, listed by id and removed`, async (t) => {
    const store = await fresh(t);
    same(t, await store.listRecords('template'), [], 'none at first');
    t.equal(await store.loadRecord('template', 'day'), undefined, 'an unknown id: undefined');
    const ids = ['week', 'day', 'Day', 'a.b-c_d', 'zoë', 'hour'];
    for (const id of ids) t.equal(await store.commitRecord('template', id, catalogValue(id), 0), true, `${id} created`);
    same(t, await store.loadRecord('template', 'day'), { id: 'day', rev: 1, value: catalogValue('day') }, 'every field round-trips, at rev 1');
    same(t, await store.listRecords('template'), [...ids].sort().map((id) => ({ id, rev: 1, value: catalogValue(id) })), 'listed once each, sorted by id');
    t.equal(await store.removeRecord('template', 'day'), true, 'remove says it removed');
    t.equal(await store.removeRecord('template', 'day'), false, 'and not twice');
    t.equal(await store.removeRecord('template', uid('none')), false, 'nor what never was');
    t.equal(await store.loadRecord('template', 'day'), undefined);
    same(t, (await store.listRecords('template')).map((r) => r.id), ids.filter((id) => id !== 'day').sort());
    t.equal(await store.commitRecord('template', 'day', catalogValue('day', { again: true }), 0), true, 'a removed id can be created again');
    same(t, await store.loadRecord('template', 'day'), { id: 'day', rev: 1, value: catalogValue('day', { again: true }) }, 'at rev 1');
  });

  t.test(`${name}: a catalog id is any string a user name can be`, async (t) => {
    const store = await fresh(t);
    // Owner records are keyed by user name, as typed: any UTF-8, a NUL or a long run included.
    const ids = ['ällice', 'a\0b', `${'x'.repeat(64)}\0y`, '🚀 rocket', '\uffff', 'b\x01', 'sp ace', ':{catalog}:'];
    t.equal(await store.createRecords('owner', ids.map((id) => ({ id, value: { codes: [id] } }))), true);
    same(t, await store.listRecords('owner'), [...ids].sort().map((id) => ({ id, rev: 1, value: { codes: [id] } })), 'each listed under its own id, sorted');
    for (const id of ids) same(t, await store.loadRecord('owner', id), { id, rev: 1, value: { codes: [id] } }, `${JSON.stringify(id)} loads`);
    t.equal(await store.removeRecord('owner', 'a\0b'), true);
    same(t, (await store.listRecords('owner')).map((r) => r.id), ids.filter((id) => id !== 'a\0b').sort(), 'and is removed alone');
  });

  t.test(`${name}: commitRecord is a compare-and-set on rev, and one of concurrent commits wins`, async (t) => {
    const store = await fresh(t);
    const id = uid('code');
    t.equal(await store.commitRecord('code', id, catalogValue(id), 1), false, 'a record that does not exist is not at rev 1');
    t.equal(await store.loadRecord('code', id), undefined, 'and nothing was written');
    t.equal(await store.commitRecord('code', id, catalogValue(id), 0), true, '0: created');
    t.equal(await store.commitRecord('code', id, catalogValue(id, { status: 'stolen' }), 0), false, '0 again: it exists');
    for (const rev of [2, -1, 7]) t.equal(await store.commitRecord('code', id, catalogValue(id, { status: 'stolen' }), rev), false, `rev ${rev} loses`);
    same(t, await store.loadRecord('code', id), { id, rev: 1, value: catalogValue(id) }, 'lost commits changed nothing');
    t.equal(await store.commitRecord('code', id, catalogValue(id, { status: 'active' }), 1), true, 'the right rev wins');
    same(t, await store.loadRecord('code', id), { id, rev: 2, value: catalogValue(id, { status: 'active' }) }, 'stored at rev + 1');
    const racers = Array.from({ length: 8 }, (_, i) => catalogValue(id, { status: 'exhausted', racer: i }));
    const won = await Promise.all(racers.map((value) => store.commitRecord('code', id, value, 2)));
    t.equal(won.filter(Boolean).length, 1, 'eight commits of one rev: one wins');
    same(t, await store.loadRecord('code', id), { id, rev: 3, value: racers[won.indexOf(true)] }, 'the winner is what is stored');
    await store.removeRecord('code', id);
    t.equal(await store.commitRecord('code', id, catalogValue(id), 3), false, 'a removed record is at no rev but 0');
  });

  t.test(`${name}: createRecords writes all or nothing`, async (t) => {
    const store = await fresh(t);
    t.equal(await store.createRecords('code', []), true, 'no entries: nothing to refuse');
    t.equal(await store.commitRecord('code', 'taken', catalogValue('taken'), 0), true);
    await store.commitRecord('code', 'taken', catalogValue('taken', { status: 'active' }), 1);
    const batch = ['n1', 'n2', 'n3'].map((id) => ({ id, value: catalogValue(id) }));
    t.equal(await store.createRecords('code', [...batch, { id: 'taken', value: catalogValue('taken') }]), false, 'one id exists: refused');
    same(t, (await store.listRecords('code')).map((r) => r.id), ['taken'], 'none of the others written');
    same(t, await store.loadRecord('code', 'taken'), { id: 'taken', rev: 2, value: catalogValue('taken', { status: 'active' }) }, 'the existing one untouched');
    t.equal(await store.createRecords('code', [...batch, { id: 'n2', value: catalogValue('n2', { twice: true }) }]), false, 'an id repeats: refused');
    same(t, (await store.listRecords('code')).map((r) => r.id), ['taken'], 'nothing written');
    t.equal(await store.createRecords('code', batch), true, 'new ids: created');
    same(t, await store.listRecords('code'), [...batch.map(({ id, value }) => ({ id, rev: 1, value })), { id: 'taken', rev: 2, value: catalogValue('taken', { status: 'active' }) }], 'each at rev 1');
    t.equal(await store.commitRecord('code', 'n1', catalogValue('n1', { status: 'active' }), 1), true, 'and committed from rev 1');
    t.equal(await store.createRecords('code', [{ id: 'n4', value: catalogValue('n4') }, { id: 'n1', value: catalogValue('n1') }]), false, 'a created one counts as existing');
    t.equal(await store.loadRecord('code', 'n4'), undefined);
  });

  t.test(`${name}: createRecords of 10,000 entries in one call`, async (t) => {
    const store = await fresh(t);
    const entries = Array.from({ length: 10_000 }, (_, i) => {
      const id = createHash('sha256').update(`code ${i}`).digest('hex');
      return { id, value: { id, lot: 'big', n: i, used: { bytesIn: i, bytesOut: 0, usageMs: 0 }, session: null } };
    });
    t.equal(await store.createRecords('code', entries), true);
    const listed = await store.listRecords<{ n: number }>('code');
    t.equal(listed.length, 10_000, 'all 10,000 listed');
    same(t, listed.map((r) => r.id), entries.map((e) => e.id).sort(), 'each once, sorted by id');
    t.ok(listed.every((r) => r.rev === 1), 'each at rev 1');
    const byId = new Map(entries.map((e) => [e.id, e.value]));
    t.ok(listed.every((r) => r.value.n === byId.get(r.id)!.n), 'each with its value');
    same(t, await store.loadRecord('code', entries[9_999].id), { id: entries[9_999].id, rev: 1, value: entries[9_999].value });
    const more = Array.from({ length: 10_000 }, (_, i) => ({ id: `more-${i}`, value: { n: i } }));
    t.equal(await store.createRecords('code', [...more, entries[5_000]]), false, '10,000 new ones and one that exists: refused');
    t.equal((await store.listRecords('code')).length, 10_000, 'none of them written');
  });

  t.test(`${name}: catalog kinds are separate namespaces`, async (t) => {
    const store = await fresh(t);
    const kinds: CatalogKind[] = ['template', 'lot', 'code', 'owner', 'keyring'];
    for (const kind of kinds) t.equal(await store.commitRecord(kind, 'same-id', { kind }, 0), true, `${kind}: the id is free`);
    await store.commitRecord('owner', 'same-id', { kind: 'owner', codes: ['a', 'b'] }, 1);
    await store.createRecords('lot', [{ id: 'only-a-lot', value: { kind: 'lot' } }]);
    same(t, await store.loadRecord('template', 'same-id'), { id: 'same-id', rev: 1, value: { kind: 'template' } }, 'a commit to one kind leaves the others');
    same(t, await store.loadRecord('owner', 'same-id'), { id: 'same-id', rev: 2, value: { kind: 'owner', codes: ['a', 'b'] } });
    t.equal(await store.loadRecord('code', 'only-a-lot'), undefined, 'an id of one kind is unknown to another');
    same(t, (await store.listRecords('lot')).map((r) => r.id), ['only-a-lot', 'same-id'], 'a list holds its kind only');
    same(t, (await store.listRecords('code')).map((r) => r.value), [{ kind: 'code' }]);
    t.equal(await store.removeRecord('code', 'same-id'), true);
    for (const kind of ['template', 'lot', 'owner', 'keyring'] as const) t.ok(await store.loadRecord(kind, 'same-id'), `removing from code leaves ${kind}`);
    t.equal(await store.createRecords('template', [{ id: 'only-a-lot', value: {} }]), true, 'createRecords checks its own kind only');
  });

  t.test(`${name}: a catalog value given back or handed in is not the stored one`, async (t) => {
    const store = await fresh(t);
    const value = catalogValue('m');
    await store.commitRecord('lot', 'm', value, 0);
    (value.used as Record<string, unknown>).bytesIn = 666;
    (value.nodes as string[]).push('mallory');
    value.status = 'changed after commitRecord';
    same(t, (await store.loadRecord('lot', 'm'))?.value, catalogValue('m'), 'changing what was committed changes nothing stored');

    const batch = [{ id: 'b', value: catalogValue('b') }];
    await store.createRecords('lot', batch);
    (batch[0].value.nodes as string[]).length = 0;
    batch[0].id = 'renamed';
    same(t, await store.loadRecord('lot', 'b'), { id: 'b', rev: 1, value: catalogValue('b') }, 'nor what createRecords was given');

    const loaded = (await store.loadRecord<Record<string, unknown>>('lot', 'm'))!;
    loaded.value.status = 'changed after loadRecord';
    (loaded.value.used as Record<string, unknown>).usageMs = -1;
    (loaded.value.nodes as string[]).splice(0);
    const listed = await store.listRecords<Record<string, unknown>>('lot');
    for (const entry of listed) {
      entry.value.status = 'changed after listRecords';
      (entry.value.nodes as string[]).push('x');
    }
    same(t, await store.loadRecord('lot', 'm'), { id: 'm', rev: 1, value: catalogValue('m') }, 'changing a loaded or listed value changes nothing stored');
    same(t, (await store.listRecords('lot')).map((r) => r.value), [catalogValue('b'), catalogValue('m')], 'listed as stored');
  });

  t.test(`${name}: catalog calls on a closed store are refused`, async (t) => {
    const store = await fresh(t);
    await store.close();
    await rejectsUnavailable(t, store.loadRecord('code', 'x'), 'loadRecord');
    await rejectsUnavailable(t, store.listRecords('code'), 'listRecords');
    await rejectsUnavailable(t, store.commitRecord('code', 'x', {}, 0), 'commitRecord');
    await rejectsUnavailable(t, store.createRecords('code', [{ id: 'x', value: {} }]), 'createRecords');
    await rejectsUnavailable(t, store.removeRecord('code', 'x'), 'removeRecord');
  });
}

/**
 * The embedded store's expiry index is a lower bound (src/store/lmdb.ts, header): a rotation that
 * pushes a session's expiry later writes no index entry, purgeExpired moves the entry on when it
 * finds the session still live. What must hold whatever the history: a purge at `now` deletes
 * exactly the records whose expiresAt <= now. And stores written before (sessions with expiresAt
 * late in the record, an exact index entry each) open, load, commit and purge the same.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from 'lmdb';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { sessionWith } from '../../src/session/state.ts';
import type { SessionState } from '../../src/session/types.ts';

const base = mkdtempSync(join(tmpdir(), 'rotor-lmdb-expiry-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const open = () => LmdbStore.open(join(base, `db${++n}`));

/** A fixed clock far from today: every time here is T0 + something, and purge is told `now`. */
const T0 = 2_000_000_000_000;
const MIN = 60_000;

type Internals = { sessions: Database<SessionState, string>; expiry: Database<true, (string | number)[]> };
const inside = (store: LmdbStore) => store as unknown as Internals;
const indexOf = (store: LmdbStore, id: string) => Array.from(inside(store).expiry.getKeys()).filter((key) => key[2] === id).map((key) => key[0]);

function session(id: string, expiresAt: number | null): SessionState {
  return { id, user: 'alice', rev: 0, gen: 1, tokenHash: 'hash-1', acked: false, prev: null, held: [], meta: {}, createdAt: T0, expiresAt, revoked: null, quota: null, seal: null };
}

/** One exchange: the stored session, a generation on, expiring at `expiresAt`. */
async function rotate(store: LmdbStore, id: string, expiresAt: number | null, over: Partial<SessionState> = {}): Promise<SessionState> {
  const state = (await store.loadSession(id))!;
  const next = sessionWith(state, { gen: state.gen + 1, tokenHash: `hash-${state.gen + 1}`, prev: { hash: state.tokenHash, reply: Buffer.from(`reply ${state.gen}`) }, expiresAt, ...over });
  t.equal(await store.commitSession(next, state.rev, []), true, `commit of ${id} at rev ${state.rev}`);
  return sessionWith(next, { rev: state.rev + 1 });
}

t.test('a rotation to a later expiry writes no index entry; purge moves it on and deletes the session once it expired', async (t) => {
  const store = await open();
  t.teardown(() => store.close());
  await store.createSession(session('a', T0 + MIN));
  await rotate(store, 'a', T0 + 5 * MIN);
  await rotate(store, 'a', T0 + 7 * MIN);
  t.same(indexOf(store, 'a'), [T0 + MIN], 'still the entry the session was created with');

  t.equal(await store.purgeExpired(T0 + MIN - 1), 0);
  t.equal(await store.purgeExpired(T0 + MIN), 0, 'its first expiry passed, but not its current one');
  t.ok(await store.loadSession('a'), 'kept');
  t.same(indexOf(store, 'a'), [T0 + 7 * MIN], 'the entry moved to the current expiry');

  t.equal(await store.purgeExpired(T0 + 7 * MIN - 1), 0, 'one ms before');
  t.ok(await store.loadSession('a'));
  t.equal(await store.purgeExpired(T0 + 7 * MIN), 1, 'at its expiry');
  t.equal(await store.loadSession('a'), undefined);
  t.same(indexOf(store, 'a'), []);
});

t.test('an expiry moved earlier (a revocation, a shorter lifetime, null → a time) is purged on time', async (t) => {
  const store = await open();
  t.teardown(() => store.close());
  await store.createSession(session('revoked', T0 + 60 * MIN));
  await rotate(store, 'revoked', T0 + 2 * MIN, { revoked: { at: T0, reason: 'logout' } });
  await store.createSession(session('shorter', T0 + 60 * MIN));
  await rotate(store, 'shorter', T0 + 61 * MIN);
  await rotate(store, 'shorter', T0 + 3 * MIN);
  await store.createSession(session('retired', null));
  await rotate(store, 'retired', T0 + 4 * MIN);
  await store.createSession(session('forever', T0 + MIN));
  await rotate(store, 'forever', null);

  t.equal(await store.purgeExpired(T0 + 2 * MIN), 1);
  t.equal(await store.loadSession('revoked'), undefined, 'revoked: gone at its new expiry');
  t.ok(await store.loadSession('shorter'));
  t.equal(await store.purgeExpired(T0 + 3 * MIN), 1);
  t.equal(await store.loadSession('shorter'), undefined, 'shorter lifetime: gone at its new expiry');
  t.equal(await store.purgeExpired(T0 + 4 * MIN), 1);
  t.equal(await store.loadSession('retired'), undefined, 'null → a time: gone at that time');
  t.equal(await store.purgeExpired(T0 + 1000 * MIN), 0, 'the stale later entries delete nothing');
  t.ok(await store.loadSession('forever'), 'a time → null: never purged');
  t.same(Array.from(inside(store).expiry.getKeys()), [], 'and no entry is left behind');
});

t.test('a failed compare-and-set changes neither the session nor the index', async (t) => {
  const store = await open();
  t.teardown(() => store.close());
  await store.createSession(session('c', T0 + 10 * MIN));
  const state = (await store.loadSession('c'))!;
  await rotate(store, 'c', T0 + 20 * MIN);
  t.equal(await store.commitSession(sessionWith(state, { gen: 9, expiresAt: T0 + MIN }), state.rev, []), false, 'rev 0 is gone');
  t.same(indexOf(store, 'c'), [T0 + 10 * MIN]);
  t.equal(await store.purgeExpired(T0 + 10 * MIN), 0);
  t.equal((await store.loadSession('c'))?.gen, 2);
});

t.test('random histories: every purge deletes exactly what expired by its `now`', async (t) => {
  const store = await open();
  t.teardown(() => store.close());
  let seed = 42;
  const random = (below: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % below);
  const expiry = new Map<string, number | null>();
  const pick = (m: number) => (random(10) === 0 ? null : m + random(30 * MIN));
  let now = T0;
  for (let i = 0; i < 200; i++) {
    const id = `r${i}`;
    const at = pick(now);
    await store.createSession(session(id, at));
    expiry.set(id, at);
  }
  for (let round = 0; round < 40; round++) {
    const ids = [...expiry.keys()];
    for (let j = 0; j < 60 && ids.length > 0; j++) {
      const id = ids[random(ids.length)];
      // Mostly later (rotations), sometimes earlier, sometimes null.
      const at = random(5) === 0 ? pick(now - 10 * MIN > T0 ? now - 10 * MIN : now) : pick(now + 5 * MIN);
      const effective = at !== null && at <= now ? now + 1 : at; // a commit never makes a session expired already
      await rotate(store, id, effective);
      expiry.set(id, effective);
    }
    now += random(3 * MIN);
    const due = [...expiry].filter(([, at]) => at !== null && at <= now).map(([id]) => id);
    t.equal(await store.purgeExpired(now), due.length, `round ${round}: purged as many as expired`);
    for (const id of due) expiry.delete(id);
    const left = new Set<string>();
    for await (const s of store.listSessions()) left.add(s.id);
    t.same([...left].sort(), [...expiry.keys()].sort(), `round ${round}: exactly the unexpired ones are left`);
  }
});

t.test('a store written before (expiresAt late in the record, no quota, an exact index entry) loads, commits and purges', async (t) => {
  const dir = join(base, `db${++n}`);
  let store = await LmdbStore.open(dir);
  // Exactly as the code before wrote them: sessionWith's field order, no quota field, an entry at the expiry.
  const { sessions, expiry } = inside(store);
  const old = (id: string, expiresAt: number | null, rev: number, prev: SessionState['prev'] = null) => {
    const { quota: _quota, ...before } = sessionWith(session(id, expiresAt), { rev, gen: rev + 1, prev });
    void sessions.put(id, before as SessionState, rev);
    if (expiresAt !== null) void expiry.put([expiresAt, 0, id], true);
  };
  await sessions.transaction(() => {
    old('o1', T0 + MIN, 0);
    old('o2', T0 + 10 * MIN, 3, { hash: 'hash-3', reply: Buffer.from('the old reply') });
    old('o3', T0 + 2 * MIN, 0);
  });
  await store.close();

  store = await LmdbStore.open(dir);
  t.teardown(() => store.close());
  const loaded = (await store.loadSession('o2'))!;
  t.same(Object.keys(loaded), Object.keys(sessionWith(loaded, {})), 'loaded in the usual shape');
  t.equal(loaded.rev, 3);
  t.ok(Buffer.isBuffer(loaded.prev?.reply) && loaded.prev.reply.equals(Buffer.from('the old reply')), 'its reply, a Buffer');
  t.same(store.loadSessionNow('o1')?.expiresAt, T0 + MIN);
  t.equal(loaded.quota, null, 'a session written before sessions had a quota loads with quota null');
  t.equal(store.loadSessionNow('o1')?.quota, null, 'loadSessionNow too');
  const listed: SessionState[] = [];
  for await (const s of store.listSessions()) listed.push(s);
  t.same(listed.map((s) => s.quota), [null, null, null], 'and listSessions');

  await rotate(store, 'o1', T0 + 5 * MIN);
  await rotate(store, 'o2', T0 + 3 * MIN, { revoked: { at: T0, reason: 'logout' } });
  await rotate(store, 'o2', T0 + 4 * MIN);
  t.equal(await store.purgeExpired(T0 + 2 * MIN), 1, 'o3, never rotated, at its old entry');
  t.equal(await store.loadSession('o3'), undefined);
  t.equal(await store.purgeExpired(T0 + 4 * MIN), 1, 'o2 at its new, earlier expiry');
  t.equal(await store.loadSession('o2'), undefined);
  t.ok(await store.loadSession('o1'));
  t.equal(await store.purgeExpired(T0 + 5 * MIN), 1, 'o1 at its new, later expiry');
  t.equal((await store.purgeExpired(T0 + 100 * MIN)) + indexOf(store, 'o2').length, 0, 'nothing left');
});

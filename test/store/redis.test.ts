import t from 'tap';
import { Redis } from 'ioredis';
import { isRotorError } from '../../src/errors.ts';
import { openStore } from '../../src/store/index.ts';
import { RELAY_GRACE_MS, RedisStore, type RedisStoreOptions } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import { startRedis } from '../helpers/redis.ts';
import { claim, drainConcurrently, everyCall, rejectsUnavailable, rotated, session, sleep, storeSuite, task, uid, type TapTest } from './suite.ts';

// Fails the file, loudly, when redis-server cannot be started: CI must have it.
const server = await startRedis();
t.teardown(() => server.close());

let prefix = '';
storeSuite(t, 'redis', {
  // A fresh prefix is an empty store on the same server.
  open: async () => RedisStore.open(server.url, { prefix: (prefix = uid('rotor')) }),
  reopen: async () => RedisStore.open(server.url, { prefix }),
  expiresByItself: true,
});

/** Two stores (two nodes) on one Redis and one prefix, closed at the end of `t`. */
async function twoNodes(t: TapTest): Promise<[RedisStore, RedisStore]> {
  const shared = uid('rotor');
  const nodes = await Promise.all([RedisStore.open(server.url, { prefix: shared }), RedisStore.open(server.url, { prefix: shared })]);
  t.teardown(() => Promise.all(nodes.map((node) => node.close())));
  return nodes;
}

/** A store on a fresh prefix and a plain client to look at its keys, both closed at the end of `t`. */
async function withRawClient(t: TapTest, options: RedisStoreOptions = {}): Promise<{ store: RedisStore; raw: Redis; prefix: string }> {
  const prefix = uid('rotor');
  const store = await RedisStore.open(server.url, { ...options, prefix });
  const raw = new Redis(server.url);
  t.teardown(async () => {
    await store.close();
    raw.disconnect();
  });
  return { store, raw, prefix };
}

/** Every call the store has, each rejecting within `boundMs`; none hangs. */
async function everyCallUnavailable(t: TapTest, store: Store, boundMs: number): Promise<void> {
  const calls = everyCall(t, store);
  const elapsed = await Promise.all(calls.map(([what, call]) => rejectsUnavailable(t, call(), what)));
  t.ok(Math.max(...elapsed) < boundMs, `all ${calls.length} calls rejected within ${boundMs} ms (slowest ${Math.round(Math.max(...elapsed))} ms)`);
}

/** Retry `work` until it resolves (the store reconnected), for at most `ms`. */
async function eventually<T>(work: () => Promise<T>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await work();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

t.test('redis: Redis going away fails every call fast, and the same store recovers when it is back', async (t) => {
  const store = await RedisStore.open(server.url, { prefix: uid('rotor') });
  t.teardown(() => store.close());
  const before = session();
  await store.createSession(before);

  // Killed with 200 calls in flight: each settles (answered before the kill, or UNAVAILABLE).
  const started = performance.now();
  const inFlight = Promise.allSettled(Array.from({ length: 200 }, () => store.loadSession(before.id)));
  await server.stop('SIGKILL');
  const settled = await inFlight;
  t.ok(performance.now() - started < 5_000, 'calls in flight at the crash settle at once');
  t.ok(
    settled.every((r) => (r.status === 'fulfilled' ? r.value?.id === before.id : isRotorError(r.reason) && r.reason.code === 'ROTOR_E_UNAVAILABLE')),
    'each answered right or rejected as unavailable',
  );
  await everyCallUnavailable(t, store, 5_000);
  const burst = await Promise.allSettled(Array.from({ length: 200 }, () => store.loadSession(before.id)));
  t.ok(burst.every((r) => r.status === 'rejected'), '200 calls at once while it is down: all rejected, nothing queued');

  await server.start();
  const s = session();
  await eventually(() => store.createSession(s), 5_000);
  t.pass('the same store instance works again once Redis is back');
  const released = task(s.id);
  t.equal(await store.commitSession(rotated({ ...s, acked: true }), 0, [released]), true, 'commits work (scripts are loaded again)');
  const claimed = await store.claimTasks('w', 5, Date.now(), 60_000);
  t.strictSame(claimed.map((c) => c.id), [released.id], 'claims work (the consumer group is created again)');
  t.equal(await store.finishTask(released.id, claim('w'), { status: 'done', expiresAt: Date.now() + 60_000 }, Date.now()), true);
});

t.test('redis: a frozen Redis times calls out instead of hanging them, and answers line up after', async (t) => {
  const store = await RedisStore.open(server.url, { prefix: uid('rotor'), commandTimeoutMs: 500 });
  t.teardown(() => store.close());
  const s = session({ meta: { mine: true } });
  await store.createSession(s);
  server.pause();
  t.teardown(() => server.resume());
  await everyCallUnavailable(t, store, 5_000);
  server.resume();
  // The frozen server answers the timed-out commands late; they must not be taken for later ones.
  const other = session({ meta: { other: true } });
  await store.createSession(other);
  t.same((await store.loadSession(s.id))?.meta, { mine: true }, 'each answer goes to its own call');
  t.same((await store.loadSession(other.id))?.meta, { other: true });
  t.equal(await store.commitSession(rotated(s), 0, []), true);
});

t.test('the test helper rejects, with the reason, when redis-server cannot be started', async (t) => {
  await t.rejects(startRedis('/nonexistent/redis-server'), /could not be started.*ENOENT/s);
  await t.rejects(startRedis('false'), /could not be started.*exited \(1\)/s);
});

t.test('redis: openStore takes a redis:// URL', async (t) => {
  const store = await openStore(server.url);
  t.teardown(() => store.close());
  t.equal(store.kind, 'redis');
  t.equal(await store.loadSession(uid('s')), undefined);
});

t.test('redis: opening a store on a server that is not there rejects at once', async (t) => {
  const started = performance.now();
  await t.rejects(RedisStore.open('redis://127.0.0.1:1/0'), { code: 'ROTOR_E_UNAVAILABLE' });
  t.ok(performance.now() - started < 5_000, 'within the connect timeout');
});

t.test('redis: two nodes, one Redis: one commit per rev, one claim per task', async (t) => {
  const [a, b] = await twoNodes(t);
  const s = session();
  await a.createSession(s);
  for (let rev = 0; rev < 10; rev++) {
    const [fromA, fromB] = await Promise.all([
      a.commitSession({ ...rotated({ ...s, gen: rev + 1 }), tokenHash: `a${rev}` }, rev, [task(s.id)]),
      b.commitSession({ ...rotated({ ...s, gen: rev + 1 }), tokenHash: `b${rev}` }, rev, [task(s.id)]),
    ]);
    t.equal(Number(fromA) + Number(fromB), 1, `rev ${rev}: exactly one node wins`);
    t.equal((await b.loadSession(s.id))?.tokenHash, fromA ? `a${rev}` : `b${rev}`, 'and its state is stored');
  }
  for (let i = 0; i < 4; i++) await b.commitSession({ ...s, gen: 20 + i }, 10 + i, Array.from({ length: 10 }, () => task(s.id)));
  const claims = (await drainConcurrently([a, b, a, b], Date.now())).map((mine) => mine.map((c) => c.id));
  const all = claims.flat();
  t.equal(all.length, 50, '10 tasks from the won commits and 40 more, each claimed');
  t.equal(new Set(all).size, all.length, 'none twice');
  t.ok(claims.filter((c) => c.length > 0).length > 1, 'the work was shared');
});

t.test('redis: a node dying between its commit and the relay loses no task', async (t) => {
  const [dying, survivor] = await twoNodes(t);
  const s = session();
  await dying.createSession(s);
  const released = [task(s.id), task(s.id)];
  // The relay (outbox → task stream) is the step after the commit: make it never happen.
  Object.assign(dying, { relay: () => Promise.reject(new Error('node died')) });
  t.equal(await dying.commitSession(rotated({ ...s, acked: true }), 0, released), true, 'the commit stands');
  t.equal(await survivor.loadTask(released[0].id), undefined, 'the tasks are not in the stream yet');
  const now = Date.now();
  t.strictSame(await survivor.claimTasks('w', 10, now, 60_000), [], 'not relayed while the dying node may still do it');
  const late = now + RELAY_GRACE_MS + 1;
  await survivor.claimTasks('w', 10, late, 60_000);
  const claimed = await survivor.claimTasks('w', 10, late, 60_000);
  t.strictSame(claimed.map((c) => c.id).sort(), released.map((r) => r.id).sort(), 'relayed by the next claim, then claimable');
  t.strictSame(await survivor.claimTasks('w2', 10, late, 60_000), [], 'each once');
  t.equal((await survivor.loadSession(s.id))?.rev, 1);
});

t.test('redis: key layout and expiry', async (t) => {
  const { store, raw, prefix } = await withRawClient(t);
  const now = Date.now();
  const s = session({ expiresAt: now + 60_000 });
  await store.createSession(s);
  const sessionKey = `${prefix}:{${s.id}}:s`;
  t.ok(Math.abs((await raw.pttl(sessionKey)) - 60_000) < 5_000, 'a session key expires with the session (PEXPIREAT)');
  t.equal(await store.commitSession({ ...rotated(s), expiresAt: null }, 0, []), true);
  t.equal(await raw.pttl(sessionKey), -1, 'never-expiring: no TTL');
  const r = task(s.id);
  await store.commitSession({ ...s, expiresAt: now + 120_000 }, 1, [r]);
  t.ok(Math.abs((await raw.pttl(sessionKey)) - 120_000) < 5_000, 'a commit moves the TTL');
  t.equal(await raw.exists(`${prefix}:{${s.id}}:o`), 0, 'the outbox is emptied by the relay');
  t.equal(await raw.zcard(`${prefix}:{tasks}:pending`), 0, 'and its pending note removed');
  t.equal(await raw.xlen(`${prefix}:{tasks}:q`), 1, 'the task is in the stream');
  const taskKey = `${prefix}:{tasks}:t:${r.id}`;
  t.equal(await raw.pttl(taskKey), -1, 'a released task does not expire');
  await store.claimTasks('w', 1, now, 60_000);
  t.equal(await raw.zscore(`${prefix}:{tasks}:leases`, r.id), String(now + 60_000), 'its lease is kept in the leases zset');
  await store.finishTask(r.id, claim('w'), { status: 'done', expiresAt: now + 30_000 }, now);
  t.ok(Math.abs((await raw.pttl(taskKey)) - 30_000) < 5_000, 'a finished task expires with its result');
  t.equal(await raw.xlen(`${prefix}:{tasks}:q`), 0, 'and leaves the stream');
  t.equal(await raw.zcard(`${prefix}:{tasks}:leases`), 0, 'and the leases');
  await store.putUser({ name: 'alice', passwordHash: 'x', createdAt: now, lastTotpStep: 3 });
  t.equal(await raw.hexists(`${prefix}:{users}:u`, 'alice'), 1, 'users in one hash');
  t.equal(await raw.hget(`${prefix}:{users}:totp`, 'alice'), '3', 'their TOTP steps beside it');
  t.equal(await raw.pttl(`${prefix}:{users}:u`), -1, 'users do not expire');
});

t.test('redis: purgeExpired drops stream consumers of nodes long gone, not busy ones', async (t) => {
  const { store, raw, prefix } = await withRawClient(t, { consumerIdleMs: 100 });
  const s = session();
  await store.createSession(s);
  const [done, busy] = [task(s.id), task(s.id)];
  await store.commitSession({ ...s, acked: true }, 0, [done]);
  const now = Date.now();
  await store.claimTasks('gone', 1, now, 60_000);
  await store.finishTask(done.id, claim('gone'), { status: 'done', expiresAt: now + 60_000 }, now);
  await store.commitSession({ ...s, acked: true, gen: 2 }, 1, [busy]);
  await store.claimTasks('busy', 1, now, 60_000);
  const consumers = async () => ((await raw.xinfo('CONSUMERS', `${prefix}:{tasks}:q`, 'rotor')) as string[][]).map((c) => c[1]).sort();
  t.strictSame(await consumers(), ['busy', 'gone']);
  await store.purgeExpired(Date.now());
  t.strictSame(await consumers(), ['busy', 'gone'], 'not while they were recently active');
  await sleep(150);
  t.equal(await store.purgeExpired(Date.now()), 0, 'consumers are not counted as purged records');
  t.strictSame(await consumers(), ['busy'], 'the idle one holding nothing is dropped, the one holding a task kept');
  t.equal(await store.finishTask(busy.id, claim('busy'), { status: 'done', expiresAt: now + 60_000 }, now), true, 'and can still finish it');
});

t.test('a Redis URL with a password never shows it in an error', async (t) => {
  const { withoutPassword } = await import('../../src/store/redis.ts');
  t.equal(withoutPassword('redis://:S3cret@127.0.0.1:6379/0'), 'redis://***@127.0.0.1:6379/0');
  t.equal(withoutPassword('redis://user:S3cret@h/0'), 'redis://***@h/0');
  t.equal(withoutPassword('redis://127.0.0.1:6379/0'), 'redis://127.0.0.1:6379/0', 'nothing to mask');
  const err = await RedisStore.open('redis://:S3cretPass@127.0.0.1:1/0', { connectTimeoutMs: 200 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof Error, 'an unreachable Redis fails to open');
  t.notMatch(String((err as Error).message), /S3cretPass/, 'without the password in the message');
});

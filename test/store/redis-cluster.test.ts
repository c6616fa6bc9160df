/**
 * The Redis store on a real Redis Cluster (3 masters, 3 replicas: test/helpers/redis-cluster.ts),
 * in its default safe mode (WAIT 1 after every write): the abstract suite, the hash slots, WAIT
 * on the master of the write's slot, and the whole cluster going away and coming back.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { isRotorError } from '../../src/errors.ts';
import { openStore } from '../../src/store/index.ts';
import { keySlot, parseClusterUrl, takeWaitParams } from '../../src/store/redis-cluster.ts';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';
import { claim, drainConcurrently, everyCall, rejectsUnavailable, rotated, session, sleep, storeSuite, task, uid, type TapTest } from './suite.ts';

// Fails the file, loudly, when the cluster cannot be started: CI must have redis-server and redis-cli.
const cluster = await startRedisCluster();
t.teardown(() => cluster.close());

let prefix = '';
storeSuite(t, 'redis-cluster', {
  open: async () => RedisStore.open(cluster.url, { prefix: (prefix = uid('rotor')) }),
  reopen: async () => RedisStore.open(cluster.url, { prefix }),
  expiresByItself: true,
});

/** A store on a fresh prefix, closed at the end of `t`. */
async function open(t: TapTest, options: RedisStoreOptions = {}, url = cluster.url): Promise<RedisStore> {
  const store = await RedisStore.open(url, { prefix: uid('rotor'), ...options });
  t.teardown(() => store.close());
  return store;
}

/** A plain connection to one node, closed at the end of `t`. */
function nodeClient(t: TapTest, port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port });
  t.teardown(() => redis.disconnect());
  return redis;
}

/** A session whose id hashes to a slot served by the master on `port`. */
async function sessionOn(port: number): Promise<ReturnType<typeof session>> {
  for (;;) {
    const s = session();
    if ((await cluster.masterOf(s.id)) === port) return s;
  }
}

t.test('keySlot is the cluster\'s own hash slot, hash tags included', async (t) => {
  const redis = nodeClient(t, cluster.ports[0]);
  const keys = ['', 'a', 'rotor:{s-1}:s', 'rotor:{tasks}:q', '{}x', 'x{}{y}', '{a}{b}', 'é{ü}', '{user1000}.following', 'p:{pool:a b}:seats', `k${'z'.repeat(300)}`];
  for (const key of keys) t.equal(keySlot(key), Number(await redis.cluster('KEYSLOT', key)), JSON.stringify(key));
});

t.test('redis-cluster URLs: nodes, credentials, TLS and the store\'s own parameters', async (t) => {
  t.strictSame(parseClusterUrl('redis-cluster://a:1,b:2'), { nodes: [{ host: 'a', port: 1 }, { host: 'b', port: 2 }], username: undefined, password: undefined, tls: false });
  t.match(parseClusterUrl('rediss-cluster://u:p%40ss@[::1]:7000/'), { nodes: [{ host: '::1', port: 7000 }], username: 'u', password: 'p@ss', tls: true });
  t.match(parseClusterUrl('redis-cluster://:secret@h'), { nodes: [{ host: 'h', port: 6379 }], username: undefined, password: 'secret' });
  t.throws(() => parseClusterUrl('redis-cluster://h:0'), /bad node "h:0"/);
  t.throws(() => parseClusterUrl('redis-cluster://:secret@h:1/2'), { message: /^(?!.*secret)/ }, 'a bad URL is refused without its password');
  t.strictSame(takeWaitParams('redis-cluster://a:1?wait=2&waitTimeoutMs=100'), { url: 'redis-cluster://a:1', wait: 2, waitTimeoutMs: 100 });
  t.strictSame(takeWaitParams('redis://h:1/0?family=6&wait=0'), { url: 'redis://h:1/0?family=6', wait: 0, waitTimeoutMs: undefined }, "ioredis's own parameters stay");
  t.throws(() => takeWaitParams('redis://h?wait=yes'), /bad wait=yes/);
  await t.rejects(RedisStore.open(`${cluster.url}?wait=1&waitTimeoutMs=3000`), /waitTimeoutMs \(3000\) must be below commandTimeoutMs \(2000\)/);
  const err = await RedisStore.open('redis-cluster://:S3cretPass@127.0.0.1:1', { connectTimeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
  t.ok(isRotorError(err) && err.code === 'ROTOR_E_UNAVAILABLE', 'a cluster that is not there fails to open as unavailable');
  t.notMatch(String((err as Error).message), /S3cretPass/, 'without the password in the message');
});

t.test('openStore takes a redis-cluster:// URL; the sessions spread over every master', async (t) => {
  const store = await openStore(cluster.url);
  t.teardown(() => store.close());
  t.equal(store.kind, 'redis-cluster');
  const mine = uid('spread');
  const masters = [...new Set(await Promise.all(cluster.ports.map(async (p) => (await cluster.topology()).find((n) => n.port === p && n.role === 'master')?.port)))].filter((p) => p !== undefined);
  t.equal(masters.length, 3, '3 masters');
  const sessions = Array.from({ length: 60 }, () => session({ id: uid(mine) }));
  await Promise.all(sessions.map((s) => store.createSession(s)));
  const perMaster = await Promise.all(masters.map(async (port) => (await nodeClient(t, port).keys(`rotor:{${mine}*}:s`)).length));
  t.ok(perMaster.every((n) => n > 0), `each master holds some (${perMaster.join(', ')})`);
  t.equal(perMaster.reduce((a, b) => a + b, 0), 60, 'all 60, each once');
  let listed = 0;
  for await (const s of store.listSessions!()) if (s.id.startsWith(mine)) listed++;
  t.equal(listed, 60, 'listSessions walks every master');
});

t.test('redis-cluster: two stores (two nodes): one commit per rev, one claim per task', async (t) => {
  const shared = uid('rotor');
  const a = await RedisStore.open(cluster.url, { prefix: shared });
  const b = await RedisStore.open(cluster.url, { prefix: shared });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const s = session();
  await a.createSession(s);
  for (let rev = 0; rev < 10; rev++) {
    const [fromA, fromB] = await Promise.all([
      a.commitSession({ ...rotated({ ...s, gen: rev + 1 }), tokenHash: `a${rev}` }, rev, [task(s.id)]),
      b.commitSession({ ...rotated({ ...s, gen: rev + 1 }), tokenHash: `b${rev}` }, rev, [task(s.id)]),
    ]);
    t.equal(Number(fromA) + Number(fromB), 1, `rev ${rev}: exactly one node wins`);
  }
  const others = Array.from({ length: 6 }, () => session());
  for (const o of others) {
    await b.createSession(o);
    await b.commitSession({ ...o, acked: true }, 0, [task(o.id), task(o.id)]);
  }
  const all = (await drainConcurrently([a, b, a, b], Date.now())).flat().map((c) => c.id);
  t.equal(all.length, 22, 'every task of the won commits, from sessions on every master');
  t.equal(new Set(all).size, all.length, 'none twice');
});

t.test('the safe mode: WAIT goes to the master of the written slot, and a write its replica does not confirm is refused', async (t) => {
  const topology = (await cluster.topology()).filter((n) => n.role === 'master' && n.slots.length > 0);
  const [stuck, fine] = [topology[0].port, topology[1].port];
  const [replica] = await cluster.replicasOf(stuck);
  const shared = uid('rotor');
  const store = await open(t, { prefix: shared, waitTimeoutMs: 300 });
  const fast = await open(t, { prefix: shared }, `${cluster.url}?wait=0`);
  const [onStuck, onFine] = [await sessionOn(stuck), await sessionOn(fine)];
  await store.createSession(onStuck);
  await store.createSession(onFine);

  cluster.node(replica).pause();
  t.teardown(() => cluster.node(replica).resume());
  const [refused, passed] = await Promise.allSettled([store.commitSession(rotated(onStuck), 0, []), store.commitSession(rotated(onFine), 0, [])]);
  t.ok(refused.status === 'rejected' && isRotorError(refused.reason) && refused.reason.code === 'ROTOR_E_UNAVAILABLE', 'a commit whose master\'s replica is frozen is refused', { refused });
  t.match(refused.status === 'rejected' ? String(refused.reason.message) : '', /WAIT 1: 0 replica/, 'because WAIT counted no replica');
  t.same(passed, { status: 'fulfilled', value: true }, 'a commit on another master, at the same time, is not held up');
  t.equal((await store.loadSession(onStuck.id))?.rev, 1, 'the refused write stands on its master (as after a lost reply)');
  t.equal(await fast.commitSession(rotated({ ...onStuck, gen: 5 }), 1, []), true, 'with ?wait=0 the same master takes writes at once');
  cluster.node(replica).resume();
  t.equal(await store.commitSession(rotated({ ...onStuck, gen: 9 }), 2, []), true, 'the replica back, the safe mode writes again');
});

/** Every call the store has, each rejecting; none waited for a timeout. */
async function everyCallRefusedAtOnce(t: TapTest, store: Store): Promise<void> {
  const calls = everyCall(t, store);
  const errors = await Promise.all(calls.map(([, call]) => call().then(() => undefined, (err: unknown) => err)));
  calls.forEach(([what], i) => t.ok(isRotorError(errors[i]) && errors[i].code === 'ROTOR_E_UNAVAILABLE', `${what} rejects with ROTOR_E_UNAVAILABLE`, { err: errors[i] }));
  const timedOut = errors.filter((err) => /timed out/i.test(String((err as Error)?.message)));
  t.same(timedOut, [], `none of the ${calls.length} waited for its command timeout: refused by a client that knows the cluster is gone`);
}

// Last: it takes the whole cluster down (and it comes back empty).
t.test('redis-cluster: the cluster unreachable fails every call at once, and the same store recovers when it is back', async (t) => {
  const store = await open(t);
  const before = session();
  await store.createSession(before);
  const inFlight = Promise.allSettled(Array.from({ length: 200 }, () => store.loadSession(before.id)));
  await cluster.stopAll('SIGKILL');
  const settled = await inFlight;
  t.ok(
    settled.every((r) => (r.status === 'fulfilled' ? r.value?.id === before.id : isRotorError(r.reason) && r.reason.code === 'ROTOR_E_UNAVAILABLE')),
    '200 calls in flight at the crash: each answered right or rejected as unavailable',
  );
  // The client learns the nodes are gone from their closed connections; then nothing is even sent.
  for (let i = 0; i < 100 && (await store.loadSession(before.id).then(() => 'answered', (err: Error) => err.message)).includes('Connection is closed'); i++) await sleep(20);
  await everyCallRefusedAtOnce(t, store);
  const burst = await Promise.allSettled(Array.from({ length: 500 }, () => store.loadSession(before.id)));
  t.equal(burst.filter((r) => r.status === 'rejected' && isRotorError(r.reason) && r.reason.code === 'ROTOR_E_UNAVAILABLE').length, 500, '500 calls at once while it is down: all refused, nothing queued');
  await rejectsUnavailable(t, RedisStore.open(cluster.url, { connectTimeoutMs: 500 }), 'opening another store');

  await cluster.startAll();
  await cluster.waitUntilOk();
  const s = session();
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await store.createSession(s);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
  t.pass('the same store instance works again once the nodes are back (on their ports, with their nodes.conf)');
  const released = task(s.id);
  t.equal(await store.commitSession(rotated({ ...s, acked: true }), 0, [released]), true, 'commits work (scripts are loaded again)');
  const claimed = await store.claimTasks('w', 5, Date.now(), 60_000);
  t.strictSame(claimed.map((c) => c.id), [released.id], 'claims work (the consumer group is created again)');
  t.equal(await store.finishTask(released.id, claim('w'), { status: 'done', expiresAt: Date.now() + 60_000 }, Date.now()), true);
  await store.ping!();
});

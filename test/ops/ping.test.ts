import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import { startRedis } from '../helpers/redis.ts';

/** Each store's ping answers while it is open and rejects as unavailable once it is closed. */
async function checkPing(t: Test, store: Store): Promise<void> {
  t.ok(store.ping, `${store.kind} has ping`);
  await t.resolves(store.ping!(), `${store.kind}: ping resolves while open`);
  await store.close();
  await t.rejects(store.ping!(), { code: 'ROTOR_E_UNAVAILABLE' }, `${store.kind}: ping rejects once closed`);
}

t.test('memory', async (t) => checkPing(t, new MemoryStore()));

t.test('lmdb', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-ping-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await checkPing(t, await LmdbStore.open(dir));
});

t.test('redis', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const store = await RedisStore.open(redis.url, { commandTimeoutMs: 500, connectTimeoutMs: 500 });
  await t.resolves(store.ping!(), 'ping resolves while Redis answers');
  await redis.stop();
  await t.rejects(store.ping!(), { code: 'ROTOR_E_UNAVAILABLE' }, 'and rejects, at once or by the command timeout, once it is gone');
  await redis.start();
  await pingUntilAnswered(store);
  t.pass('and answers again once Redis is back');
  await store.close();
  await t.rejects(store.ping!(), { code: 'ROTOR_E_UNAVAILABLE' }, 'rejects once closed');
});

/** ioredis reconnects on its own (a try at least every second): ping until it answers, at most 50 tries. */
async function pingUntilAnswered(store: Store): Promise<void> {
  for (let tries = 0; tries < 50; tries++) {
    try {
      return await store.ping!();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error('no PONG after Redis came back');
}

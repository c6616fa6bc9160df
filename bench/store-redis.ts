/**
 * Rotations/s of the Redis store: `npx tsx bench/store-redis.ts [sessions] [seconds] [redis-url]`.
 * Without a URL it starts a throwaway redis-server (no persistence) on a free port.
 */
import { RedisStore } from '../src/store/redis.ts';
import { startRedis } from '../src/bench/redis-server.ts';
import { createSessions, formatRotation, rotate } from './store-rotations.ts';

const sessions = Number(process.argv[2] ?? 100_000);
const seconds = Number(process.argv[3] ?? 3);
const server = process.argv[4] ? undefined : await startRedis();
const url = process.argv[4] ?? server!.url;
try {
  const store = await RedisStore.open(url, { prefix: `bench-${process.pid}` });
  const { ids, perSecond } = await createSessions(store, sessions);
  console.log(`${'redis'.padEnd(22)} created ${sessions.toLocaleString('en')} sessions: ${Math.round(perSecond).toLocaleString('en')}/s`);
  for (const inFlight of [1, 64, 1024]) console.log(formatRotation('redis', await rotate(store, ids, inFlight, seconds)));
  await store.close();
} finally {
  await server?.close();
}

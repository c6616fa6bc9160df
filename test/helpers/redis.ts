/** The tests' throwaway redis-server is the benchmark's: one helper for both. */
export { startRedis, type RedisServer } from '../../src/bench/redis-server.ts';

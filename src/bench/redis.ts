/**
 * Redis for the benchmark: a throwaway redis-server on loopback, and the baseline a Redis
 * store is measured against — Redis doing the rotation alone (check the presented hash, store
 * the next one and the reply copy) as one Lua script by EVALSHA, at the same concurrency.
 */
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { LatencyRecorder } from './histogram.ts';

export { startRedis, type RedisServer } from './redis-server.ts';

/** Same check-and-set as a rotation: refuse a stale hash, else store the next hash and the reply copy. */
const ROTATE_LUA = `
local current = redis.call('HGET', KEYS[1], 'h')
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'h', ARGV[2], 'r', ARGV[3], 'g', ARGV[4])
return 1
`;

export interface RedisRotateOptions {
  port: number;
  connections: number;
  pipeline: number;
  warmupMs: number;
  durationMs: number;
}

export interface RedisRotateResult {
  ok: number;
  errors: Record<string, number>;
  durationMs: number;
  latency: LatencyRecorder;
  loadCpu: number;
}

type RotatingRedis = Redis & { rotate(key: string, current: string, next: string, reply: string, gen: number): Promise<number> };

/** C ioredis connections × P lanes, each lane one key rotating as fast as Redis answers. */
export async function redisRotate(options: RedisRotateOptions): Promise<RedisRotateResult> {
  const clients: RotatingRedis[] = [];
  for (let c = 0; c < options.connections; c++) {
    const client = new Redis({ host: '127.0.0.1', port: options.port, lazyConnect: true, maxRetriesPerRequest: 1, commandTimeout: 10_000 }) as RotatingRedis;
    client.defineCommand('rotate', { numberOfKeys: 1, lua: ROTATE_LUA });
    await client.connect();
    clients.push(client);
  }
  // A reply copy of the size rotor keeps (a /hello answer with its token).
  const reply = 'x'.repeat(160);
  const latency = new LatencyRecorder();
  const errors: Record<string, number> = {};
  let ok = 0;
  const start = performance.now();
  const measureStart = start + options.warmupMs;
  const measureEnd = measureStart + options.durationMs;
  let cpuStart: NodeJS.CpuUsage | undefined;
  let cpuMicros = 0;
  const lanes: Promise<void>[] = [];
  for (let c = 0; c < options.connections; c++) {
    for (let p = 0; p < options.pipeline; p++) {
      const client = clients[c];
      const key = `bench:s:${c}:${p}`;
      lanes.push(
        (async () => {
          let gen = 1;
          let current = `h${key}:${gen}`;
          await client.hset(key, 'h', current, 'r', reply, 'g', String(gen));
          for (;;) {
            const sent = performance.now();
            if (sent >= measureEnd) return;
            const next = `h${key}:${gen + 1}`;
            let done: number;
            try {
              done = await client.rotate(key, current, next, reply, gen + 1);
            } catch (err) {
              if (sent >= measureStart) errors.REDIS_ERROR = (errors.REDIS_ERROR ?? 0) + 1;
              if (/closed|timeout/i.test((err as Error).message)) return;
              continue;
            }
            if (done === 1) {
              gen++;
              current = next;
            }
            if (sent >= measureStart) {
              cpuStart ??= process.cpuUsage();
              latency.record((performance.now() - sent) * 1000);
              if (done === 1) ok++;
              else errors.STALE = (errors.STALE ?? 0) + 1;
            }
          }
        })(),
      );
    }
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, measureEnd - performance.now())));
  const usage = process.cpuUsage(cpuStart);
  cpuMicros = usage.user + usage.system;
  await Promise.all(lanes);
  for (const client of clients) client.disconnect();
  return { ok, errors, durationMs: options.durationMs, latency, loadCpu: cpuMicros / 1000 / options.durationMs };
}

/** The stores rotor can keep its sessions, tasks and users in, and how a command line names them. */
import { LmdbStore } from './lmdb.ts';
import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { Store } from './types.ts';

export type { Store, TaskClaim, TaskEnding, TaskOutcome, TaskRecord, TaskStatus, UserRecord } from './types.ts';
export { MemoryStore } from './memory.ts';
export { LmdbStore, type LmdbStoreOptions } from './lmdb.ts';
export { RedisStore, type RedisStoreOptions } from './redis.ts';

export interface OpenStoreOptions {
  /** Directory of the embedded store (default ./rotor-data). */
  dataDir?: string | undefined;
  /** Embedded store: fsync every commit before it resolves. */
  fsync?: boolean | undefined;
}

export const DEFAULT_DATA_DIR = './rotor-data';

/**
 * `memory`, `lmdb` (the default: durable, in `dataDir`), `redis://host:port/db` (`rediss://` for
 * TLS) or a Redis Cluster, `redis-cluster://host:port,host:port,…` (`rediss-cluster://`); a
 * Redis URL may end in `?wait=<replicas>` (the safe mode: src/store/redis.ts).
 */
export async function openStore(spec = 'lmdb', options: OpenStoreOptions = {}): Promise<Store> {
  if (spec === 'memory') return new MemoryStore();
  if (spec === 'lmdb' || spec === '') return LmdbStore.open(options.dataDir ?? DEFAULT_DATA_DIR, { fsync: options.fsync });
  if (/^rediss?(-cluster)?:\/\//.test(spec)) return RedisStore.open(spec);
  throw new Error(`unknown store "${spec}": use memory, lmdb, redis://host:port/db or redis-cluster://host:port,host:port,…`);
}

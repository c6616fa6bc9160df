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

/** `memory`, `lmdb` (the default: durable, in `dataDir`) or `redis://host:port/db` (`rediss://` for TLS). */
export async function openStore(spec = 'lmdb', options: OpenStoreOptions = {}): Promise<Store> {
  if (spec === 'memory') return new MemoryStore();
  if (spec === 'lmdb' || spec === '') return LmdbStore.open(options.dataDir ?? DEFAULT_DATA_DIR, { fsync: options.fsync });
  if (spec.startsWith('redis://') || spec.startsWith('rediss://')) return RedisStore.open(spec);
  throw new Error(`unknown store "${spec}": use memory, lmdb or redis://host:port/db`);
}

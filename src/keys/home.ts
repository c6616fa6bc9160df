/**
 * Where a key ring is kept: one catalog record of the store (kind `keyring`, id `mac`), changed
 * by compare-and-set only, its secrets wrapped (src/keys/wrap.ts) — or, for a server without a
 * key file, only in the process.
 */
import type { Store } from '../store/types.ts';
import { checkRing, type KeyState, type Ring } from './ring.ts';

/** The record as stored: plain JSON, every secret wrapped. */
export interface KeyRingRecord {
  readonly format: 1;
  readonly keys: ReadonlyArray<{
    readonly id: string;
    readonly state: KeyState;
    readonly createdAt: number;
    readonly since: number;
    readonly retireAt: number | null;
    /** base64 of IV ‖ AES-256-GCM ciphertext ‖ tag. */
    readonly wrapped: string;
  }>;
}

/** A ring as read, with the rev its next change must name. */
export interface HeldRing {
  readonly ring: Ring<string>;
  readonly rev: number;
}

export interface RingHome {
  /** For messages: `the redis store`, `this process`. */
  readonly where: string;
  load(): Promise<HeldRing | undefined>;
  /** Compare-and-set: false, changing nothing, when the ring is no longer at `rev` (0: when there is one). */
  commit(ring: Ring<string>, rev: number): Promise<boolean>;
}

export const MAC_RING_ID = 'mac';

/** The ring in `store`'s catalog. */
export function storeHome(store: Store, id = MAC_RING_ID): RingHome {
  return {
    where: `the ${store.kind} store`,
    async load() {
      const entry = await store.loadRecord<KeyRingRecord>('keyring', id);
      return entry && { ring: fromRecord(entry.value), rev: entry.rev };
    },
    commit: (ring, rev) => store.commitRecord<KeyRingRecord>('keyring', id, toRecord(ring), rev),
  };
}

/** A ring kept in this process only: a server whose sessions end with it (memory store, no key file). */
export function processHome(): RingHome {
  let held: HeldRing | undefined;
  return {
    where: 'this process',
    load: async () => held,
    async commit(ring, rev) {
      if ((held?.rev ?? 0) !== rev) return false;
      held = { ring, rev: rev + 1 };
      return true;
    },
  };
}

/**
 * Read the ring and change it with `change` (given undefined when there is none), by
 * compare-and-set: read again and change again while another writer got there first. `change`
 * returning the ring it was given changes nothing. The ring as it stands afterwards.
 */
export async function changeRing(home: RingHome, change: (found: Ring<string> | undefined) => Ring<string>, tries = 16): Promise<HeldRing & { changed: boolean }> {
  for (let attempt = 0; attempt < tries; attempt++) {
    const held = await home.load();
    const next = change(held?.ring);
    if (held && next === held.ring) return { ...held, changed: false };
    const rev = held?.rev ?? 0;
    if (await home.commit(next, rev)) return { ring: next, rev: rev + 1, changed: true };
  }
  throw new Error(`the key ring in ${home.where} kept changing under ${tries} attempts to change it`);
}

export function toRecord(ring: Ring<string>): KeyRingRecord {
  return { format: 1, keys: ring.keys.map(({ secret, ...key }) => ({ ...key, wrapped: secret })) };
}

/** A stored record as a ring; throws for one that breaks the ring's rule. */
export function fromRecord(record: KeyRingRecord): Ring<string> {
  if (record?.format !== 1 || !Array.isArray(record.keys)) throw new Error(`a key ring record of an unknown format (${JSON.stringify(record?.format)})`);
  const ring = { keys: record.keys.map(({ wrapped, ...key }) => ({ ...key, secret: wrapped })) };
  checkRing(ring);
  return ring;
}

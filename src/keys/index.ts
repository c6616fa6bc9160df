/**
 * Server keys that rotate (spec §11): the ring's pure state machine (ring.ts), wrapping secrets
 * for the store (wrap.ts), where a ring is kept (home.ts), the node's key file (file.ts), and the
 * source that keeps a node's live KeyRing in step with the store's ring (source.ts).
 */
export * from './ring.ts';
export { UnwrapError, unwrapSecret, wrapSecret, WRAP_KEY_BYTES } from './wrap.ts';
export { changeRing, fromRecord, MAC_RING_ID, processHome, storeHome, toRecord, type HeldRing, type KeyRingRecord, type RingHome } from './home.ts';
export { legacyWrapKey, loadOrCreateKeyFile, readKeyFile, type KeyMaterial } from './file.ts';
export { KeyRingError, KeyRingSource, openKeyRingSource, type KeyRingSourceOptions } from './source.ts';

/** What sealed application sessions keep (spec §12). */

/**
 * A sealed session's part of its record. `key`: the session key, wrapped (`<MAC key id>.<base64>`,
 * src/seal/keys.ts); `seen`: every proof rotor accepted for the newest generations, as
 * `<generation>.<mac>` entries, each after a space — one string, searched for a MAC in one call
 * (a MAC is 22 base64url characters: it matches no other part of the string); `from`: the oldest
 * generation whose proofs are all in `seen`.
 */
export interface SessionSeal {
  readonly app: string;
  readonly instance: string;
  readonly key: string;
  readonly seen: string;
  readonly from: number;
}

/** Which instances of an app may open: any its key signs for (registered at first open), or only those the operator listed. */
export type InstancePolicy = 'open' | 'listed';

/** An app as the catalog keeps it (kind `app`, id = app id): a public key, nothing secret. */
export interface AppRecord {
  readonly name: string;
  /** base64url of the raw 32-byte Ed25519 public key. */
  readonly publicKey: string;
  readonly instances: InstancePolicy;
  readonly createdAt: number;
}

/** An instance of an app (kind `app-instance`, id = `<app id>/<instance id>`). */
export interface InstanceRecord {
  /** Added by the operator (`rotor app instance add`), as a `listed` app needs. */
  readonly listed: boolean;
  /** Its first open: when, and from which source address (undefined: none yet, or no address). */
  readonly firstOpenAt?: number | undefined;
  readonly firstAddress?: string | undefined;
  readonly addedAt: number;
}

/** A used open nonce (kind `seal-nonce`, id = the nonce's random part), forgotten by the sweep once it has expired. */
export interface UsedNonceRecord {
  readonly expiresAt: number;
}

export const APP = 'app';
export const APP_INSTANCE = 'app-instance';
export const SEAL_NONCE = 'seal-nonce';

export const instanceRecordId = (app: string, instance: string): string => `${app}/${instance}`;

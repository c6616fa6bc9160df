/**
 * What the hand-over keeps in the store's catalog (src/store/types.ts CatalogKind), one kind per
 * question, so every node on one store answers it alike:
 *
 *   handover-issued  <parent>           { at }            the issuer: this session was handed over
 *   handover-ended   <parent>           { endedAt }       the issuer: it ended; listed for 15 min
 *   handover-nonce   <issuer>:<nonce>   { expiresAt }     the peer: this token was used (single use)
 *   handover-child   <issuer>:<parent>  { children, at }  the peer: the sessions that parent's tokens opened
 *   handover-list    <issuer>           { body, signature, takenAt }  the peer: the issuer's list it took last, as signed
 *
 * The catalog has no expiry: the background sweep (service.ts) forgets what can no longer matter —
 * ended parents after their 15 minutes, used tokens after their expiry, children records once
 * every session in them has ended, issued records once their session has.
 */
export const ISSUED = 'handover-issued';
export const ENDED = 'handover-ended';
export const NONCE = 'handover-nonce';
export const CHILD = 'handover-child';
export const LIST = 'handover-list';

/** How long an ended parent stays in the revocation list: as long as any hand-over token of it can live. */
export const LISTED_MS = 15 * 60_000;

export interface IssuedRecord {
  readonly at: number;
}
export interface EndedRecord {
  readonly endedAt: number;
}
export interface NonceRecord {
  readonly expiresAt: number;
}
export interface ChildRecord {
  readonly children: readonly string[];
  /** When a child was last added. */
  readonly at: number;
}

/** An issuer's list as a peer took it: the signed bytes, so a restart checks them again rather than trust the store. */
export interface ListRecord {
  readonly body: string;
  readonly signature: string;
  readonly issued: number;
  readonly takenAt: number;
}

export const childId = (issuer: string, parent: string): string => `${issuer}:${parent}`;
export const nonceId = (issuer: string, nonce: string): string => `${issuer}:${nonce}`;

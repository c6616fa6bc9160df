import type { ErrorCode } from '../errors.ts';
import type { SessionQuota } from '../quotas/types.ts';
import type { SessionSeal } from '../seal/types.ts';

/** Work a message asks for, as data: a registered task handler runs it after the ack. */
export interface TaskSpec {
  readonly id: string;
  readonly name: string;
  readonly payload: unknown;
}

/** `quota`: a limit of its access code ended it (spec §10); `replaced`: a new login with the same code, after its token had expired; `unregistered`: its app or instance was removed (spec §12). */
export type RevokeReason = 'logout' | 'reuse' | 'deleted' | 'quota' | 'replaced' | 'unregistered';

/**
 * One session as stored. Plain data (JSON-able apart from the reply bytes) so that any store
 * can keep it and a restart can bring it back unchanged.
 */
export interface SessionState {
  readonly id: string;
  /** User name, or '' for a metadata-only token created without a login. */
  readonly user: string;
  /** Bumped by the store on every write; the compare-and-set key. */
  readonly rev: number;
  /** Generation of the newest token. */
  readonly gen: number;
  /** Hash of the newest token (the store never sees a token itself). */
  readonly tokenHash: string;
  /** Whether the newest token has been presented back (used, or a bare ACK). */
  readonly acked: boolean;
  /**
   * Until the ack: the token before the newest one and the exact reply it was given, so a
   * client that lost that reply gets it again, byte for byte, with the same next token. The
   * reply is kept without its token's MAC (session/replay.ts): no usable token at rest. A
   * session's first token has no predecessor: then `prev` may hold the login reply with an
   * empty hash, for a TOTP login sent again (its code works once).
   */
  readonly prev: { readonly hash: string; readonly reply: Buffer } | null;
  /** Tasks the newest exchange deferred; released by the ack, cancelled by a revocation. */
  readonly held: readonly TaskSpec[];
  readonly meta: Readonly<Record<string, unknown>>;
  readonly createdAt: number;
  /** When the newest token expires (ms), or null for never; also when the store may forget it. */
  readonly expiresAt: number | null;
  readonly revoked: { readonly at: number; readonly reason: RevokeReason } | null;
  /** A session opened with an access code: its limits and counters (spec §10); null for every other session. */
  readonly quota: SessionQuota | null;
  /** A sealed application session (spec §12): its app, instance, wrapped session key and the proofs it accepted; null for every other session. */
  readonly seal: SessionSeal | null;
}

/** A presented token, after its MAC and expiry were checked: which generation, and its hash. */
export interface PresentedToken {
  readonly gen: number;
  readonly hash: string;
}

export type Effect =
  | { readonly type: 'release'; readonly tasks: readonly TaskSpec[] }
  | { readonly type: 'cancel'; readonly tasks: readonly TaskSpec[] }
  | { readonly type: 'revoked'; readonly reason: RevokeReason };

export type Admission =
  /** Process the request. `state` may differ from the input: the token acked its predecessor. */
  | { readonly verdict: 'proceed'; readonly state: SessionState; readonly effects: readonly Effect[] }
  /** Send these bytes again; nothing is processed and nothing changes. */
  | { readonly verdict: 'replay'; readonly reply: Buffer }
  /** Refuse. When `state` is set it must be stored (a reuse revoked the session). */
  | { readonly verdict: 'reject'; readonly code: ErrorCode; readonly state?: SessionState; readonly effects: readonly Effect[] };

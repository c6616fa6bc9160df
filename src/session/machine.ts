/**
 * The rotation state machine: pure and synchronous. `(state, event, now) → (state, effects)`.
 * No I/O, no clock, no randomness: the driver mints tokens and stores states; this decides.
 *
 * The rules (spec.md, "The session machine"):
 *  - newest token, not yet acked → ack: the previous token dies, held tasks are released;
 *    then the request proceeds;
 *  - newest token, acked → proceed;
 *  - the token before it, while the newest is not acked → replay the stored reply (a logout or
 *    delete instead ends the session, cancelling the held tasks);
 *  - any older token → reuse: the whole session is revoked, held tasks are cancelled;
 *  - a revoked session refuses everything.
 */
import { sessionWith } from './state.ts';
import { keepUntil } from '../quotas/machine.ts';
import type { SessionQuota } from '../quotas/types.ts';
import type { SessionSeal } from '../seal/types.ts';
import type { Admission, Effect, PresentedToken, RevokeReason, SessionState, TaskSpec } from './types.ts';

const NO_TASKS: readonly TaskSpec[] = Object.freeze([]);
/** The metadata of every session that has none: one shared frozen object instead of an empty one per session (≈ 56 B each). */
const NO_META: Readonly<Record<string, unknown>> = Object.freeze({});

function isEmpty(meta: Readonly<Record<string, unknown>>): boolean {
  for (const _ in meta) return false;
  return true;
}

export interface NewSession {
  id: string;
  user: string;
  tokenHash: string;
  expiresAt: number | null;
  meta: Record<string, unknown>;
  now: number;
  /** The login reply as a store may keep it, when the same login may be sent again (TOTP, access codes). */
  loginReply?: Buffer;
  quota?: SessionQuota;
  seal?: SessionSeal;
}

/** The state of a session just created by a login: its first token, nothing to ack yet. */
export function createSession(init: NewSession): SessionState {
  return {
    id: init.id,
    user: init.user,
    rev: 0,
    gen: 1,
    tokenHash: init.tokenHash,
    acked: false,
    // No token comes before the first, so no presented token can match this empty hash.
    prev: init.loginReply ? { hash: '', reply: init.loginReply } : null,
    held: NO_TASKS,
    meta: isEmpty(init.meta) ? NO_META : init.meta,
    createdAt: init.now,
    expiresAt: init.expiresAt,
    revoked: null,
    quota: init.quota ?? null,
    seal: init.seal ?? null,
  };
}

export function isExpired(state: SessionState, now: number): boolean {
  return state.expiresAt !== null && now >= state.expiresAt;
}

/**
 * Decide what a request carrying `token` may do to `state`. `ending`: the request ends the
 * session (logout, delete). With the token before the newest, an ending request proceeds on the
 * state as it is instead of being answered with the replay: the client lost the last reply and
 * wants out, and replaying a reply about something else would leave the session live. Its held
 * work was never acknowledged, so ending it cancels that work; nothing is released.
 */
export function admit(state: SessionState, token: PresentedToken, now: number, revokedUntil: number, ending = false): Admission {
  if (state.revoked) return { verdict: 'reject', code: 'ROTOR_E_SESSION_REVOKED', effects: [] };
  if (token.gen === state.gen) {
    if (token.hash !== state.tokenHash) return { verdict: 'reject', code: 'ROTOR_E_TOKEN_INVALID', effects: [] };
    if (isExpired(state, now)) return { verdict: 'reject', code: 'ROTOR_E_TOKEN_EXPIRED', effects: [] };
    if (state.acked) return { verdict: 'proceed', state, effects: [] };
    const effects: Effect[] = state.held.length > 0 ? [{ type: 'release', tasks: state.held }] : [];
    return { verdict: 'proceed', state: sessionWith(state, { acked: true, prev: null, held: NO_TASKS }), effects };
  }
  if (token.gen === state.gen - 1 && state.prev !== null && !state.acked) {
    if (token.hash !== state.prev.hash) return { verdict: 'reject', code: 'ROTOR_E_TOKEN_INVALID', effects: [] };
    if (ending) return { verdict: 'proceed', state, effects: [] };
    return { verdict: 'replay', reply: state.prev.reply };
  }
  if (token.gen < state.gen) {
    const revoked = revoke(state, 'reuse', now, revokedUntil);
    return { verdict: 'reject', code: 'ROTOR_E_TOKEN_REUSED', state: revoked.state, effects: revoked.effects };
  }
  // A genuine token newer than anything stored: the store lost the session's later writes.
  return { verdict: 'reject', code: 'ROTOR_E_SESSION_UNKNOWN', effects: [] };
}

export interface Rotation {
  /** Hash of the token minted for this exchange (generation state.gen + 1). */
  nextHash: string;
  nextExpiresAt: number | null;
  /**
   * The reply sent back, kept for replay until the next token is acked — as a store may hold it:
   * with the MAC cut from its token (session/replay.ts), which the driver puts back at replay.
   */
  reply: Buffer;
  /** Tasks this exchange defers until the ack. */
  tasks: readonly TaskSpec[];
  meta: Readonly<Record<string, unknown>>;
  /** A metered session's counters after this exchange (spec §10); left out: as they were. */
  quota?: SessionQuota | null;
  /** A sealed session's seal after this exchange (spec §12); left out: as it was. */
  seal?: SessionSeal | null;
}

/** Record a processed exchange: a new newest token, its reply kept for replay. */
export function rotate(state: SessionState, rotation: Rotation): SessionState {
  if (!state.acked || state.revoked) throw new Error('rotate() needs an admitted, live session');
  return sessionWith(state, {
    gen: state.gen + 1,
    tokenHash: rotation.nextHash,
    acked: false,
    prev: { hash: state.tokenHash, reply: rotation.reply },
    held: rotation.tasks,
    meta: rotation.meta,
    expiresAt: rotation.nextExpiresAt,
    quota: rotation.quota,
    seal: rotation.seal,
  });
}

/** End a session for good: every token of it is refused from now on, held tasks never run. */
export function revoke(
  state: SessionState,
  reason: RevokeReason,
  now: number,
  revokedUntil: number,
): { state: SessionState; effects: Effect[] } {
  if (state.revoked) return { state, effects: [] };
  const effects: Effect[] = [];
  if (state.held.length > 0) effects.push({ type: 'cancel', tasks: state.held });
  effects.push({ type: 'revoked', reason });
  return {
    // A metered session's counters are its code's until they are folded into it (spec §10): the
    // fold shortens this to revokedUntil; unfolded, it is kept while its code can still be used.
    state: sessionWith(state, { revoked: { at: now, reason }, prev: null, held: NO_TASKS, expiresAt: state.quota === null ? revokedUntil : keptRevoked(state.quota, now, revokedUntil) }),
    effects,
  };
}

function keptRevoked(quota: SessionQuota, now: number, revokedUntil: number): number | null {
  const kept = keepUntil(quota, revokedUntil - now);
  return kept === null ? null : Math.max(kept, revokedUntil);
}

export function releasedTasks(effects: readonly Effect[]): TaskSpec[] {
  const out: TaskSpec[] = [];
  for (const effect of effects) if (effect.type === 'release') out.push(...effect.tasks);
  return out;
}

import type { SessionState } from './types.ts';

type Changes = { -readonly [K in keyof SessionState]?: SessionState[K] };

/**
 * A copy of `state` with `changes`, built field by field. Not `{ ...state, ...changes }`: on the
 * rotate path V8 took its slow path for that spread (≈ 0.6 µs a copy, three copies an exchange,
 * ≈ 7 % of the dispatcher's CPU in a profile); this is ≈ 15 ns and gives every session record
 * one shape. Every field of SessionState is listed here: a new one must be added.
 */
export function sessionWith(state: SessionState, changes: Changes): SessionState {
  return {
    id: state.id,
    user: state.user,
    rev: changes.rev ?? state.rev,
    gen: changes.gen ?? state.gen,
    tokenHash: changes.tokenHash ?? state.tokenHash,
    acked: changes.acked ?? state.acked,
    prev: changes.prev !== undefined ? changes.prev : state.prev,
    held: changes.held ?? state.held,
    meta: changes.meta ?? state.meta,
    createdAt: state.createdAt,
    expiresAt: changes.expiresAt !== undefined ? changes.expiresAt : state.expiresAt,
    revoked: changes.revoked !== undefined ? changes.revoked : state.revoked,
    quota: changes.quota !== undefined ? changes.quota : state.quota,
    seal: changes.seal !== undefined ? changes.seal : state.seal,
  };
}

/**
 * Sealing on a running server (spec §12): checks the proof of each request of a sealed session,
 * keeps its seal up to date as the session rotates, and forgets used open nonces. The exchange
 * (src/server/exchange.ts) calls it for sealed sessions only: a plain session's exchange does
 * one null check more.
 */
import type { ErrorCode } from '../errors.ts';
import type { KeyRing } from '../session/token.ts';
import { mac } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { getHeader, type RequestFrame } from '../wire/index.ts';
import { SessionKeys } from './keys.ts';
import { remembered, type PresentedProof } from './machine.ts';
import { bodyDigest, proofShape, proofText } from './proof.ts';
import { SEAL_NONCE, type SessionSeal, type UsedNonceRecord } from './types.ts';

export class Seals {
  readonly keys: SessionKeys;
  constructor(
    ring: KeyRing,
    random: RandomSource,
    private readonly store: Store,
    /** seal.rememberGenerations */
    private readonly window: number,
  ) {
    this.keys = new SessionKeys(ring, random);
  }

  /**
   * The proof of `frame`, a request presenting generation `gen` of sealed session `session`,
   * whose token's nonce (its at-rest hash, spec §12) is `nonce`: the checked proof, or the code
   * the request is refused with before admission.
   */
  check(session: string, seal: SessionSeal, frame: RequestFrame, nonce: string, gen: number, ack: boolean): PresentedProof | ErrorCode {
    const value = getHeader(frame, 'Seal-Proof');
    if (value === undefined) return 'ROTOR_E_SEAL_PROOF_MISSING';
    // Compared in place, part by part, without cutting the value up.
    const dot = proofShape(value);
    if (dot === undefined) return 'ROTOR_E_SEAL_PROOF_WRONG';
    if (dot !== nonce.length || !value.startsWith(nonce)) return 'ROTOR_E_SEAL_NONCE_WRONG';
    const digest = bodyDigest(frame.body);
    if (!value.startsWith(digest, dot + 1)) return 'ROTOR_E_SEAL_BODY_CHANGED';
    const key = this.keys.unwrap(session, seal.key);
    // Its MAC key retired: the session's newest token expired long ago.
    if (key === undefined) return 'ROTOR_E_TOKEN_EXPIRED';
    const expected = mac(key, proofText(nonce, frame.verb, frame.path, digest));
    if (!sameTextAt(value, dot + 45, expected)) return 'ROTOR_E_SEAL_PROOF_WRONG';
    return { gen, mac: expected, ack };
  }

  /** `seal` after an exchange that accepted `proof` (`fresh`: surely a new one), the session's newest generation then being `newest`; its key wrapped under the signing key. */
  after(session: string, seal: SessionSeal, proof: PresentedProof, newest: number, fresh = false): SessionSeal {
    const kept = remembered(seal, proof, newest, this.window, fresh);
    const wrapped = this.keys.current(session, kept.key) ?? kept.key;
    return wrapped === kept.key ? kept : { ...kept, key: wrapped };
  }

  /** Forget the open nonces that have expired (the background sweep). */
  async sweep(now: number): Promise<void> {
    for (const used of await this.store.listRecords<UsedNonceRecord>(SEAL_NONCE)) {
      if (used.value.expiresAt <= now) await this.store.removeRecord(SEAL_NONCE, used.id);
    }
  }
}

/** Whether `text` from `start` on is `expected` (a MAC), compared without an early exit. */
function sameTextAt(text: string, start: number, expected: string): boolean {
  if (text.length - start !== expected.length) return false;
  let difference = 0;
  for (let i = 0; i < expected.length; i++) difference |= text.charCodeAt(start + i) ^ expected.charCodeAt(i);
  return difference === 0;
}

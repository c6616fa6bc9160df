/**
 * Sealing on a running server (spec §12): checks the proof of each request of a sealed session,
 * keeps its seal up to date as the session rotates, and forgets used open nonces. The exchange
 * (src/server/exchange.ts) calls it for sealed sessions only: a plain session's exchange does
 * one null check more.
 */
import type { ErrorCode } from '../errors.ts';
import type { KeyRing } from '../session/token.ts';
import { mac, sameText } from '../session/token.ts';
import type { RandomSource } from '../session/random.ts';
import type { Store } from '../store/types.ts';
import { getHeader, type RequestFrame } from '../wire/index.ts';
import { SessionKeys } from './keys.ts';
import { remembered, type PresentedProof } from './machine.ts';
import { bodyDigest, coveredHeaders, proofShape, proofText } from './proof.ts';
import { APP_INSTANCE, instanceRecordId, SEAL_NONCE, type SessionSeal, type UsedNonceRecord } from './types.ts';
import { loadApp } from './apps.ts';

/** Apps and instances a node has looked up lately, by `<app>/<instance>`, at most this many. */
const REGISTRATIONS_HELD = 65_536;

export class Seals {
  readonly keys: SessionKeys;
  /** Until when an instance is known to be registered. Only that is held: a refusal ends its session, and an instance listed again opens at once. */
  private readonly registrations = new Map<string, number>();
  constructor(
    ring: KeyRing,
    random: RandomSource,
    private readonly store: Store,
    /** seal.rememberGenerations */
    private readonly window: number,
    /** seal.registeredSeconds, in ms */
    private readonly registeredMs: number,
  ) {
    this.keys = new SessionKeys(ring, random);
  }

  /**
   * Whether the seal's app — and, for a listed app, its instance — is still registered (spec
   * §12): undefined if so, else the code its session ends with. Found registered, it is taken as
   * such for seal.registeredSeconds without reading the store again.
   */
  registered(seal: SessionSeal, now: number): ErrorCode | undefined | Promise<ErrorCode | undefined> {
    const id = instanceRecordId(seal.app, seal.instance);
    const until = this.registrations.get(id);
    if (until !== undefined && until > now) return undefined;
    return this.lookUp(seal, id, now);
  }

  private async lookUp(seal: SessionSeal, id: string, now: number): Promise<ErrorCode | undefined> {
    const app = await loadApp(this.store, seal.app);
    let refusal: ErrorCode | undefined;
    if (app === undefined) refusal = 'ROTOR_E_APP_UNKNOWN';
    else if (app.instances === 'listed' && (await this.store.loadRecord(APP_INSTANCE, id)) === undefined) refusal = 'ROTOR_E_INSTANCE_UNKNOWN';
    if (refusal !== undefined) return refusal;
    if (this.registrations.size >= REGISTRATIONS_HELD) this.registrations.delete(this.registrations.keys().next().value!);
    this.registrations.set(id, now + this.registeredMs);
    return undefined;
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
    const listed = getHeader(frame, 'Seal-Headers');
    const covered = listed === undefined ? undefined : coveredHeaders(frame.headers, listed);
    if (listed !== undefined && covered === undefined) return 'ROTOR_E_SEAL_PROOF_WRONG';
    const expected = mac(key, proofText(nonce, frame.verb, frame.path, digest, covered));
    if (!sameText(value, dot + 45, expected)) return 'ROTOR_E_SEAL_PROOF_WRONG';
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

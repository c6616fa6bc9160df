/**
 * A sealed session's memory of the proofs it accepted (spec §12), as pure functions: which
 * proofs to keep, and what a proven request under a spent token is. The driver
 * (src/server/exchange.ts) checks the MAC; these decide.
 */
import type { SessionSeal } from './types.ts';

/** A proof the server checked, and what it came with. */
export interface PresentedProof {
  /** The generation of the token it presents. */
  readonly gen: number;
  readonly mac: string;
  /** It is an ack: it changes nothing but the ack, so a spent one never ends a session. */
  readonly ack: boolean;
}

const entry = (gen: number, mac: string): string => `${gen}.${mac}`;
const generationOf = (seen: string): number => Number.parseInt(seen, 10);

/** Whether this proof was accepted before. */
export function hasSeen(seal: SessionSeal, proof: PresentedProof): boolean {
  return seal.seen.includes(entry(proof.gen, proof.mac));
}

/**
 * `seal` once `proof` is accepted, with `newest` the session's newest generation afterwards:
 * the proofs of the newest `window` generations are kept, at most `4 × window` of them (a key
 * holder sending many different requests under one token forgets the oldest generations first).
 * The same object when nothing changes.
 */
export function remembered(seal: SessionSeal, proof: PresentedProof, newest: number, window: number): SessionSeal {
  let from = Math.max(seal.from, newest - window + 1);
  const known = hasSeen(seal, proof);
  if (known && from === seal.from) return seal;
  let seen = seal.seen.filter((kept) => generationOf(kept) >= from);
  if (!known && proof.gen >= from) seen.push(entry(proof.gen, proof.mac));
  const cap = 4 * window;
  while (seen.length > cap) {
    from = Math.min(...seen.map(generationOf)) + 1;
    seen = seen.filter((kept) => generationOf(kept) >= from);
  }
  return { app: seal.app, instance: seal.instance, key: seal.key, seen, from };
}

/**
 * A proven request whose token the session machine calls a reuse: `replayed` — a proof accepted
 * before, an ack, or a generation too old to tell — is refused and changes nothing; `reuse` — a
 * proof never seen, for a generation remembered: a second holder of the session key made a new
 * request under a spent token — revokes, as any reuse does.
 */
export function staleVerdict(seal: SessionSeal, proof: PresentedProof): 'replayed' | 'reuse' {
  if (proof.ack || proof.gen < seal.from || hasSeen(seal, proof)) return 'replayed';
  return 'reuse';
}

/** The seal of a session just opened: nothing seen yet, every generation from the first remembered. */
export function freshSeal(app: string, instance: string, key: string): SessionSeal {
  return { app, instance, key, seen: [], from: 1 };
}

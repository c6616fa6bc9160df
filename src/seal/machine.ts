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

/** Whether this proof was accepted before. */
export function hasSeen(seal: SessionSeal, proof: PresentedProof): boolean {
  return seal.seen.includes(proof.mac);
}

/** What a kept entry takes at most in `seen` (a space, a generation below 10^10, a dot, a MAC): the trims count by length, not by entries. */
const ENTRY_CHARS = 34;

/**
 * `seal` once `proof` is accepted, with `newest` the session's newest generation afterwards.
 * `fresh`: the caller knows the proof is new (the first use of the newest token: nothing was
 * accepted under it yet), which spares the search. The proofs of at least the newest `window`
 * generations are kept: once about `2 × window` are, those of older generations are dropped (and
 * `from` moves past them) — a trim every few rotations, not a copy of the list on every one. At
 * most about `8 × window` are kept: past that (a key holder sending one different request after
 * another under one token) a proof is not remembered. The same object when nothing changes.
 */
export function remembered(seal: SessionSeal, proof: PresentedProof, newest: number, window: number, fresh = false): SessionSeal {
  if (!fresh && hasSeen(seal, proof)) return seal;
  let { seen, from } = seal;
  if (seen.length >= 2 * window * ENTRY_CHARS) {
    from = Math.max(from, newest - window + 1);
    seen = seen.slice(firstEntryFrom(seen, from));
  }
  if (proof.gen >= from && seen.length < 8 * window * ENTRY_CHARS) seen = `${seen} ${proof.gen}.${proof.mac}`;
  return seen === seal.seen && from === seal.from ? seal : { app: seal.app, instance: seal.instance, key: seal.key, seen, from };
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
  return { app, instance, key, seen: '', from: 1 };
}

/**
 * Where the first entry of generation `from` or later starts (the length when there is none).
 * Entries come mostly in generation order; one of an older generation after the cut (a retry
 * remembered late) is kept a while longer — keeping more is safe, dropping one of `from` on is not.
 */
function firstEntryFrom(seen: string, from: number): number {
  for (let at = seen.indexOf(' '); at !== -1; at = seen.indexOf(' ', at + 1)) {
    let gen = 0;
    for (let i = at + 1, digit = seen.charCodeAt(i) - 48; digit >= 0 && digit <= 9; digit = seen.charCodeAt(++i) - 48) gen = gen * 10 + digit;
    if (gen >= from) return at;
  }
  return seen.length;
}

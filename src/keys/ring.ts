/**
 * The key ring's state machine (spec §11 "Server keys"), pure: a ring and an event in, the next
 * ring out, or a RingRefusal saying why not. No clock, no randomness, no store: the time and any
 * new key's secret come with the event, so every node (and the CLI) decides the same from the
 * same ring, and many nodes changing one record by compare-and-set change it once.
 *
 * The secret's type is the caller's: a Buffer in a node's memory, the wrapped text in the store
 * (the machine never looks at it), so `rotor keys promote` needs no wrapping key.
 */
import type { RotorConfig } from '../config/settings.ts';

/** `next`: accepted, not signing yet; `signing`: the one key that signs; `retiring`: accepted until its retireAt. */
export type KeyState = 'next' | 'signing' | 'retiring';

export interface RingKey<S> {
  /** `[a-z0-9]{1,16}`; rotor names its own keys `k` + unix seconds in base 36. */
  readonly id: string;
  readonly state: KeyState;
  /** When the key was added (ms). */
  readonly createdAt: number;
  /** When it entered its state (ms): a `next` key's wait, the signing key's age, when a retiring key stopped signing. */
  readonly since: number;
  /** A retiring key's drop time (ms); null for the others, and for a retiring key kept until the operator drops it (never-expiring tokens allowed). */
  readonly retireAt: number | null;
  readonly secret: S;
}

export interface Ring<S> {
  /** Exactly one `signing` key; ids unique. */
  readonly keys: readonly RingKey<S>[];
}

/** What the machine needs of the settings, in ms. */
export interface RingPolicy {
  /** The longest token lifetime; null when never-expiring tokens are allowed (a retiring key is then kept until dropped by hand). */
  readonly tokenLifeMs: number | null;
  readonly skewMs: number;
  /** How long a key stays `next` before it may sign: twice keys.reloadSeconds, so every node has read it. */
  readonly settleMs: number;
  /** Automatic rotation: the signing key's age that calls for a successor; 0 = off. */
  readonly rotationMs: number;
}

export function ringPolicy(config: Pick<RotorConfig, 'session' | 'keys'>): RingPolicy {
  const { session, keys } = config;
  return {
    tokenLifeMs: session.allowNeverExpiring ? null : session.tokenTtlMinutes * 60_000,
    skewMs: keys.skewSeconds * 1000,
    settleMs: 2 * keys.reloadSeconds * 1000,
    rotationMs: keys.rotationHours * 3_600_000,
  };
}

/** An operator's change the ring does not take (an unknown key, promoting too early, retiring the signing key…). */
export class RingRefusal extends Error {
  override name = 'RingRefusal';
}

export type RingEvent<S> =
  /** A fresh `next` key. */
  | { readonly type: 'add'; readonly id: string; readonly secret: S }
  /** `id` signs; the signing key retires. `force`: even if `id` has been `next` for less than policy.settleMs (one node only). */
  | { readonly type: 'promote'; readonly id: string; readonly force?: boolean | undefined }
  /** A `next` key is dropped; a retiring one at its retireAt, or at once with `immediately`. */
  | { readonly type: 'retire'; readonly id: string; readonly immediately?: boolean | undefined }
  /** Keys past their retireAt are dropped; a retiring key without one (never-expiring tokens no longer allowed) gets it. */
  | { readonly type: 'tidy' };

export const KEY_ID = /^[a-z0-9]{1,16}$/;

/** A ring of one signing key, as a store without a ring gets. */
export function freshRing<S>(id: string, secret: S, at: number): Ring<S> {
  return checked({ keys: [{ id, state: 'signing', createdAt: at, since: at, retireAt: null, secret }] });
}

/**
 * A ring from keys of the 0.1 key file (`[{id, secret}]`, the signing key first): the first signs,
 * the others retire from `at` (0.1 accepted them: tokens of theirs may still be alive).
 */
export function seededRing<S>(keys: readonly { id: string; secret: S }[], at: number, policy: RingPolicy): Ring<S> {
  if (keys.length === 0) throw new RingRefusal('a key ring needs at least one key');
  return checked({
    keys: keys.map(({ id, secret }, i) =>
      i === 0 ? { id, state: 'signing', createdAt: at, since: at, retireAt: null, secret } : { id, state: 'retiring', createdAt: at, since: at, retireAt: retireAtFrom(at, policy), secret },
    ),
  });
}

/** The ring after `event` at `at` (ms); throws RingRefusal when the event does not apply. */
export function applyEvent<S>(ring: Ring<S>, event: RingEvent<S>, at: number, policy: RingPolicy): Ring<S> {
  switch (event.type) {
    case 'add':
      return addKey(ring, event.id, event.secret, at);
    case 'promote':
      return promote(ring, event.id, at, policy, event.force === true);
    case 'retire':
      return retire(ring, event.id, at, policy, event.immediately === true);
    case 'tidy':
      return tidy(ring, at, policy);
  }
}

export function addKey<S>(ring: Ring<S>, id: string, secret: S, at: number): Ring<S> {
  if (!KEY_ID.test(id)) throw new RingRefusal(`bad key id ${JSON.stringify(id)}: 1–16 of a–z 0–9`);
  if (ring.keys.some((key) => key.id === id)) throw new RingRefusal(`there is a key ${id} already`);
  return checked({ keys: [...ring.keys, { id, state: 'next', createdAt: at, since: at, retireAt: null, secret }] });
}

export function promote<S>(ring: Ring<S>, id: string, at: number, policy: RingPolicy, force = false): Ring<S> {
  const key = keyOf(ring, id);
  if (key.state === 'signing') throw new RingRefusal(`${id} signs already`);
  if (key.state === 'retiring') throw new RingRefusal(`${id} is retiring: only a next key can be promoted (add a new one)`);
  const waited = at - key.since;
  if (!force && waited < policy.settleMs) {
    throw new RingRefusal(
      `${id} has been next for ${seconds(waited)} s, less than ${seconds(policy.settleMs)} s (twice keys.reloadSeconds): a node that has not read it yet would refuse its tokens. Wait, or --now with one node`,
    );
  }
  return checked({
    keys: ring.keys.map((other) =>
      other.id === id
        ? { ...other, state: 'signing', since: at, retireAt: null }
        : other.state === 'signing'
          ? { ...other, state: 'retiring', since: at, retireAt: retireAtFrom(at, policy) }
          : other,
    ),
  });
}

export function retire<S>(ring: Ring<S>, id: string, at: number, policy: RingPolicy, immediately = false): Ring<S> {
  const key = keyOf(ring, id);
  if (key.state === 'signing') throw new RingRefusal(`${id} is the signing key: promote another first`);
  // A next key has signed nothing: nothing of it can still be valid.
  if (key.state === 'next' || immediately) return checked({ keys: ring.keys.filter((other) => other.id !== id) });
  if (key.retireAt !== null) return ring;
  const retireAt = retireAtFrom(key.since, policy);
  if (retireAt === null) throw new RingRefusal(`${id}'s tokens may never expire (session.allowNeverExpiring): drop it with --now, which refuses them`);
  return checked({ keys: ring.keys.map((other) => (other.id === id ? { ...other, retireAt } : other)) });
}

/**
 * Drop the keys past their retireAt. With never-expiring tokens allowed nothing is dropped: the
 * operator does it. Without, a retiring key with no retireAt (kept while they were allowed) gets
 * the one the rule gives, counted from when it stopped signing.
 */
export function tidy<S>(ring: Ring<S>, at: number, policy: RingPolicy): Ring<S> {
  if (policy.tokenLifeMs === null) return ring;
  let changed = false;
  const keys: RingKey<S>[] = [];
  for (const key of ring.keys) {
    if (key.state !== 'retiring') keys.push(key);
    else {
      const retireAt = key.retireAt ?? retireAtFrom(key.since, policy)!;
      if (retireAt !== key.retireAt || retireAt <= at) changed = true;
      if (retireAt > at) keys.push(retireAt === key.retireAt ? key : { ...key, retireAt });
    }
  }
  return changed ? checked({ keys }) : ring;
}

/** What automatic rotation does next: add a key, promote one, or nothing (rotation off, or nothing due). */
export type RotationStep = { readonly type: 'add' } | { readonly type: 'promote'; readonly id: string } | undefined;

/**
 * Automatic rotation (keys.rotationHours): once the signing key has signed for the period, a
 * `next` key is added; once a `next` key has waited policy.settleMs, it is promoted (the one that
 * has waited longest). Nothing while a `next` key is still waiting: one successor at a time.
 */
export function rotationStep<S>(ring: Ring<S>, at: number, policy: RingPolicy): RotationStep {
  if (policy.rotationMs <= 0) return undefined;
  if (at - signingKey(ring).since < policy.rotationMs) return undefined;
  const waiting = ring.keys.filter((key) => key.state === 'next');
  if (waiting.length === 0) return { type: 'add' };
  const ready = waiting.filter((key) => at - key.since >= policy.settleMs).sort((a, b) => a.since - b.since)[0];
  return ready ? { type: 'promote', id: ready.id } : undefined;
}

/**
 * A node's part in the ring's upkeep at `at`: tidy, then the rotation step due (`fresh` makes the
 * secret of a new key, given its id). The same ring object back when nothing changed.
 */
export function maintain<S>(ring: Ring<S>, at: number, policy: RingPolicy, fresh: (id: string) => S): Ring<S> {
  const tidied = tidy(ring, at, policy);
  const step = rotationStep(tidied, at, policy);
  if (!step) return tidied;
  if (step.type === 'promote') return promote(tidied, step.id, at, policy);
  const id = newKeyId(tidied, at);
  return addKey(tidied, id, fresh(id), at);
}

/** `k` + unix seconds in base 36; the next second's name while that one is taken. */
export function newKeyId(ring: Ring<unknown>, at: number): string {
  const taken = new Set(ring.keys.map((key) => key.id));
  for (let s = Math.floor(at / 1000); ; s++) {
    const id = `k${Math.max(0, s).toString(36)}`;
    if (!taken.has(id)) return id;
  }
}

export function signingKey<S>(ring: Ring<S>): RingKey<S> {
  return ring.keys.find((key) => key.state === 'signing')!;
}

/** The keys whose tokens a node accepts at `at`: all but a retiring key past its retireAt (dropped at the next tidy). */
export function acceptedKeys<S>(ring: Ring<S>, at: number): RingKey<S>[] {
  return ring.keys.filter((key) => key.retireAt === null || key.retireAt > at);
}

/** The ring's rule, checked after every change and on every ring read from a store: throws otherwise. */
export function checkRing(ring: Ring<unknown>): void {
  if (!Array.isArray(ring.keys) || ring.keys.length === 0) throw new Error('a key ring needs at least one key');
  const ids = new Set<string>();
  let signing = 0;
  for (const key of ring.keys) {
    if (typeof key.id !== 'string' || !KEY_ID.test(key.id)) throw new Error(`bad key id ${JSON.stringify(key.id)}`);
    if (ids.has(key.id)) throw new Error(`key ${key.id} twice in the ring`);
    ids.add(key.id);
    if (key.state === 'signing') signing++;
    else if (key.state !== 'next' && key.state !== 'retiring') throw new Error(`key ${key.id} in no known state (${JSON.stringify(key.state)})`);
    if (key.state !== 'retiring' && key.retireAt !== null) throw new Error(`key ${key.id} is ${key.state} with a retireAt`);
  }
  if (signing !== 1) throw new Error(`a key ring has exactly one signing key, this one ${signing}`);
}

function checked<S>(ring: Ring<S>): Ring<S> {
  checkRing(ring);
  return ring;
}

function keyOf<S>(ring: Ring<S>, id: string): RingKey<S> {
  const key = ring.keys.find((candidate) => candidate.id === id);
  if (!key) throw new RingRefusal(`no key ${id} in the ring (${ring.keys.map((k) => k.id).join(', ')})`);
  return key;
}

/** When a key that stops signing at `at` is dropped; null: never (never-expiring tokens allowed). */
function retireAtFrom(at: number, policy: RingPolicy): number | null {
  return policy.tokenLifeMs === null ? null : at + policy.tokenLifeMs + policy.skewMs;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

/**
 * The key ring's machine (src/keys/ring.ts, spec §11): its rules one by one, then fast-check
 * histories against a simple model — the operator's commands, automatic rotation, clock jumps
 * and tokens minted with whatever key signs — checked after every step with real tokens: no
 * valid token (its key signed it, its lifetime has not run out, no operator dropped the key by
 * hand) is ever refused, no token of a dropped key is accepted, and there is one signing key.
 */
import t from 'tap';
import fc from 'fast-check';
import {
  acceptedKeys,
  addKey,
  applyEvent,
  checkRing,
  freshRing,
  maintain,
  newKeyId,
  promote,
  retire,
  ringPolicy,
  RingRefusal,
  rotationStep,
  seededRing,
  signingKey,
  tidy,
  type Ring,
  type RingPolicy,
} from '../../src/keys/ring.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing, mintToken, verifyToken } from '../../src/session/token.ts';
import { fcRuns } from '../helpers/session.ts';

const T0 = Date.UTC(2030, 0, 1);
const MIN = 60_000;
const HOUR = 60 * MIN;
const POLICY: RingPolicy = { tokenLifeMs: 10 * MIN, skewMs: 60_000, settleMs: 60_000, rotationMs: HOUR };
const NEVER: RingPolicy = { ...POLICY, tokenLifeMs: null };

const secret = (n: number) => Buffer.alloc(32, n);
const ids = (ring: Ring<unknown>) => ring.keys.map((key) => `${key.id}:${key.state}`);

t.test('the policy comes from the settings', async (t) => {
  t.strictSame(ringPolicy(resolveConfig()), { tokenLifeMs: 120 * MIN, skewMs: 60_000, settleMs: 60_000, rotationMs: 0 });
  t.strictSame(
    ringPolicy(resolveConfig({ session: { tokenTtlMinutes: -1, allowNeverExpiring: true }, keys: { rotationHours: 24, reloadSeconds: 10, skewSeconds: 30 } })),
    { tokenLifeMs: null, skewMs: 30_000, settleMs: 20_000, rotationMs: 24 * HOUR },
  );
});

t.test('add, promote, retire: the rules', async (t) => {
  let ring = freshRing('k1', secret(1), T0);
  t.strictSame(ids(ring), ['k1:signing']);
  ring = addKey(ring, 'k2', secret(2), T0);
  t.throws(() => addKey(ring, 'k2', secret(3), T0), RingRefusal, 'an id twice');
  t.throws(() => addKey(ring, 'K3', secret(3), T0), /bad key id/);
  t.throws(() => promote(ring, 'k2', T0 + 59_999, POLICY), /next for 59 s, less than 60 s/, 'too early');
  t.throws(() => promote(ring, 'k1', T0, POLICY), /signs already/);
  t.throws(() => promote(ring, 'k9', T0, POLICY), /no key k9/);
  const forced = promote(ring, 'k2', T0 + 1, POLICY, true);
  t.strictSame(ids(forced), ['k1:retiring', 'k2:signing'], '--now promotes at once');
  ring = promote(ring, 'k2', T0 + 60_000, POLICY);
  const k1 = ring.keys[0];
  t.equal(k1.retireAt, T0 + 60_000 + 10 * MIN + 60_000, 'retireAt: when it stopped signing + the token lifetime + the skew');
  t.throws(() => promote(ring, 'k1', T0 + HOUR, POLICY), /retiring: only a next key/);
  t.throws(() => retire(ring, 'k2', T0, POLICY), /the signing key/);
  t.equal(retire(ring, 'k1', T0, POLICY), ring, 'retiring a retiring key without --now: it goes at its retireAt');
  t.strictSame(ids(retire(ring, 'k1', T0, POLICY, true)), ['k2:signing'], '--now drops it');
  const withNext = addKey(ring, 'k3', secret(3), T0);
  t.strictSame(ids(retire(withNext, 'k3', T0, POLICY)), ['k1:retiring', 'k2:signing'], 'a next key is dropped at once: it signed nothing');
  t.strictSame(ids(applyEvent(withNext, { type: 'retire', id: 'k3' }, T0, POLICY)), ['k1:retiring', 'k2:signing'], 'the same as an event');
});

t.test('tidy drops keys past retireAt; with never-expiring tokens allowed it keeps them', async (t) => {
  const ring = promote(addKey(freshRing('k1', secret(1), T0), 'k2', secret(2), T0), 'k2', T0 + MIN, POLICY);
  const retireAt = ring.keys[0].retireAt!;
  t.equal(tidy(ring, retireAt - 1, POLICY), ring, 'not yet');
  t.strictSame(ids(tidy(ring, retireAt, POLICY)), ['k2:signing'], 'at retireAt');
  t.strictSame(acceptedKeys(ring, retireAt).map((key) => key.id), ['k2'], 'a node holds it no longer from its retireAt, tidied or not');
  const kept = promote(addKey(freshRing('k1', secret(1), T0), 'k2', secret(2), T0), 'k2', T0 + MIN, NEVER);
  t.equal(kept.keys[0].retireAt, null, 'never-expiring tokens allowed: no retireAt');
  t.equal(tidy(kept, T0 + 1000 * HOUR, NEVER), kept, 'kept however long');
  t.throws(() => retire(kept, 'k1', T0, NEVER), /may never expire.*--now/);
  t.strictSame(ids(retire(kept, 'k1', T0, NEVER, true)), ['k2:signing']);
  const later = tidy(kept, T0 + 2 * MIN, POLICY);
  t.equal(later.keys[0].retireAt, T0 + MIN + 10 * MIN + 60_000, 'never-expiring tokens no longer allowed: the rule from when it stopped signing');
  t.equal(retire(kept, 'k1', T0, POLICY).keys[0].retireAt, T0 + MIN + 10 * MIN + 60_000, 'retire without --now gives it the same');
});

t.test('0.1 keys seed a ring: the first signs, the others retire', async (t) => {
  const ring = seededRing([{ id: 'k1', secret: 'a' }, { id: 'k0', secret: 'b' }], T0, POLICY);
  t.strictSame(ids(ring), ['k1:signing', 'k0:retiring']);
  t.equal(ring.keys[1].retireAt, T0 + 11 * MIN);
  t.throws(() => seededRing([], T0, POLICY), /at least one key/);
  t.throws(() => seededRing([{ id: 'k1', secret: 'a' }, { id: 'k1', secret: 'b' }], T0, POLICY), /twice/);
});

t.test('automatic rotation: add when the signing key is old, promote once the next key has settled', async (t) => {
  let ring = freshRing('k1', secret(1), T0);
  t.equal(rotationStep(ring, T0 + 1000 * HOUR, { ...POLICY, rotationMs: 0 }), undefined, 'off');
  t.equal(rotationStep(ring, T0 + HOUR - 1, POLICY), undefined, 'not old enough');
  t.strictSame(rotationStep(ring, T0 + HOUR, POLICY), { type: 'add' });
  ring = maintain(ring, T0 + HOUR, POLICY, (id) => secret(id.length));
  const next = ring.keys[1];
  t.equal(next.id, newKeyId({ keys: [] }, T0 + HOUR), 'k + unix seconds in base 36');
  t.equal(next.id, `k${Math.floor((T0 + HOUR) / 1000).toString(36)}`);
  t.equal(maintain(ring, T0 + HOUR + 59_000, POLICY, () => secret(9)), ring, 'one successor at a time, promoted once it has settled');
  ring = maintain(ring, T0 + HOUR + 60_000, POLICY, () => secret(9));
  t.strictSame(ids(ring), ['k1:retiring', `${next.id}:signing`]);
  t.equal(newKeyId(addKey(ring, newKeyId(ring, T0), secret(3), T0), T0), `k${(Math.floor(T0 / 1000) + 1).toString(36)}`, 'a name taken: the next second');
});

t.test('a ring read from a store is checked', async (t) => {
  const base = freshRing('k1', 's', T0);
  t.throws(() => checkRing({ keys: [] }), /at least one key/);
  t.throws(() => checkRing({ keys: [...base.keys, { ...base.keys[0], id: 'k2' }] }), /exactly one signing key, this one 2/);
  t.throws(() => checkRing({ keys: [{ ...base.keys[0], state: 'lost' as never }] }), /no known state/);
  t.throws(() => checkRing({ keys: [{ ...base.keys[0], retireAt: T0 }] }), /signing with a retireAt/);
});

// --- the model ---------------------------------------------------------------------------------

interface Issued {
  token: string;
  /** The key that signed it: its id and secret (`k1:7`): an id may come back with another secret once its key is gone. */
  key: string;
  /** ms; null: never expires. */
  expiresAt: number | null;
}

interface Model {
  at: number;
  tokens: Issued[];
  /** Keys (id:secret) an operator dropped by hand (retire --now): their tokens may be refused early. */
  droppedByHand: Set<string>;
  /** `next` keys added by hand, not yet promoted or dropped: automatic rotation adds at most one more. */
  manualNext: Set<string>;
}

interface Real {
  ring: Ring<Buffer>;
  policy: RingPolicy;
  fill: number;
}

const random = seededRandom(7);

/** What a node holds of the ring at `at`. */
function nodeRing(ring: Ring<Buffer>, at: number): KeyRing {
  const keys = acceptedKeys(ring, at).map(({ id, secret }) => ({ id, secret }));
  const live = new KeyRing(keys);
  live.replace(keys, signingKey(ring).id);
  return live;
}

/** A key as id and secret (every test secret is one byte repeated). */
const tag = (key: { id: string; secret: Buffer }) => `${key.id}:${key.secret[0]}`;

function accepted(ring: KeyRing, token: string): boolean {
  try {
    verifyToken(ring, token);
    return true;
  } catch {
    return false;
  }
}

/** The properties, after every command. */
function holds(m: Model, r: Real): void {
  checkRing(r.ring);
  const live = nodeRing(r.ring, m.at);
  const present = new Set(r.ring.keys.map(tag));
  for (const issued of m.tokens) {
    const alive = issued.expiresAt === null ? r.policy.tokenLifeMs === null : m.at < issued.expiresAt;
    if (alive && !m.droppedByHand.has(issued.key) && !accepted(live, issued.token)) {
      throw new Error(`a valid token of ${issued.key} was refused at +${(m.at - T0) / 1000} s: ${ids(r.ring).join(' ')}`);
    }
    if (!present.has(issued.key) && accepted(live, issued.token)) throw new Error(`a token of the dropped key ${issued.key} was accepted`);
  }
  const next = r.ring.keys.filter((key) => key.state === 'next' && !m.manualNext.has(key.id));
  if (next.length > 1) throw new Error(`automatic rotation added ${next.length} next keys at once`);
}

function fresh(r: Real): () => Buffer {
  return () => {
    r.fill = (r.fill % 250) + 1;
    return secret(r.fill);
  };
}

/** An operator's change: it must go through when the model allows it, and be refused (RingRefusal) when not. */
function asOperator(allowed: boolean, what: string, change: () => void): void {
  try {
    change();
  } catch (err) {
    if (allowed || !(err instanceof RingRefusal)) throw err;
    return;
  }
  if (!allowed) throw new Error(`${what} was allowed`);
}

class Advance implements fc.Command<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  run(m: Model): void {
    m.at += this.ms;
  }
  toString = () => `advance ${this.ms / 1000} s`;
}

class Issue implements fc.Command<Model, Real> {
  constructor(
    readonly minutes: number,
    readonly never: boolean,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const live = nodeRing(r.ring, m.at);
    const issued = Math.floor(m.at / 1000);
    const ttlMinutes = this.never && r.policy.tokenLifeMs === null ? -1 : Math.min(this.minutes, (r.policy.tokenLifeMs ?? POLICY.tokenLifeMs!) / MIN);
    const token = mintToken(live, { session: random(16).toString('base64url'), generation: 1, issued, ttlMinutes, user: 'u' }, random);
    m.tokens.push({ token, key: tag(live.signing), expiresAt: ttlMinutes < 0 ? null : issued * 1000 + ttlMinutes * MIN });
    holds(m, r);
  }
  toString = () => `issue ${this.never ? 'never-expiring' : `${this.minutes} min`}`;
}

class Tick implements fc.Command<Model, Real> {
  check = () => true;
  run(m: Model, r: Real): void {
    const beforeRing = r.ring;
    const before = signingKey(r.ring);
    r.ring = maintain(r.ring, m.at, r.policy, fresh(r));
    const after = signingKey(r.ring);
    if (after.id !== before.id) {
      const promoted = beforeRing.keys.find((key) => key.id === after.id)!;
      if (m.at - promoted.since < r.policy.settleMs) throw new Error(`${after.id} was promoted after ${(m.at - promoted.since) / 1000} s as next`);
      m.manualNext.delete(after.id);
    }
    if (r.policy.rotationMs > 0 && m.at - after.since >= r.policy.rotationMs && !r.ring.keys.some((key) => key.state === 'next')) {
      throw new Error('an old signing key and no successor after a tick');
    }
    holds(m, r);
  }
  toString = () => 'tick';
}

class Add implements fc.Command<Model, Real> {
  check = () => true;
  run(m: Model, r: Real): void {
    const id = newKeyId(r.ring, m.at);
    r.ring = addKey(r.ring, id, fresh(r)(), m.at);
    m.manualNext.add(id);
    holds(m, r);
  }
  toString = () => 'add';
}

class Promote implements fc.Command<Model, Real> {
  constructor(
    readonly pick: number,
    readonly force: boolean,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    // Mostly a next key, as an operator would; now and then any.
    const next = r.ring.keys.filter((candidate) => candidate.state === 'next');
    const key = next.length > 0 && this.pick % 4 !== 0 ? next[this.pick % next.length] : r.ring.keys[this.pick % r.ring.keys.length];
    const allowed = key.state === 'next' && (this.force || m.at - key.since >= r.policy.settleMs);
    asOperator(allowed, `promoting ${key.id} (${key.state})`, () => {
      r.ring = promote(r.ring, key.id, m.at, r.policy, this.force);
      m.manualNext.delete(key.id);
    });
    holds(m, r);
  }
  toString = () => `promote #${this.pick}${this.force ? ' --now' : ''}`;
}

class Retire implements fc.Command<Model, Real> {
  constructor(
    readonly pick: number,
    readonly immediately: boolean,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const key = r.ring.keys[this.pick % r.ring.keys.length];
    const allowed = key.state !== 'signing' && (this.immediately || key.state === 'next' || key.retireAt !== null || r.policy.tokenLifeMs !== null);
    asOperator(allowed, `retiring ${key.id} (${key.state})`, () => {
      r.ring = retire(r.ring, key.id, m.at, r.policy, this.immediately);
      if (this.immediately) m.droppedByHand.add(tag(key));
      m.manualNext.delete(key.id);
    });
    holds(m, r);
  }
  toString = () => `retire #${this.pick}${this.immediately ? ' --now' : ''}`;
}

const commands = [
  fc.integer({ min: 0, max: 2 * HOUR }).map((ms) => new Advance(ms)),
  fc.integer({ min: 0, max: 15 * MIN }).map((ms) => new Advance(ms)),
  fc.integer({ min: 0, max: 90_000 }).map((ms) => new Advance(ms)),
  fc.tuple(fc.integer({ min: 1, max: 10 }), fc.boolean()).map(([minutes, never]) => new Issue(minutes, never)),
  fc.constant(new Tick()),
  fc.constant(new Tick()),
  fc.constant(new Add()),
  fc.tuple(fc.nat(), fc.boolean()).map(([pick, force]) => new Promote(pick, force)),
  fc.tuple(fc.nat(), fc.boolean()).map(([pick, now]) => new Retire(pick, now)),
];

t.test('model: operator commands, automatic rotation and clock jumps never refuse a valid token', async (t) => {
  const params = fcRuns(300, 2000, 'ROTOR_MODEL_RUNS');
  fc.assert(
    fc.property(fc.boolean(), fc.boolean(), fc.commands(commands, { maxCommands: 100, size: 'max' }), (never, rotating, cmds) => {
      const policy = { ...(never ? NEVER : POLICY), rotationMs: rotating ? HOUR : 0 };
      const model: Model = { at: T0, tokens: [], droppedByHand: new Set(), manualNext: new Set() };
      fc.modelRun(() => ({ model, real: { ring: freshRing('k1', secret(1), T0), policy, fill: 1 } }), cmds);
    }),
    params,
  );
  t.pass(`${params.numRuns} histories`);
});

t.test('model: automatic rotation with a node reloading every 30 s keeps the signing key young and the ring small', async (t) => {
  const params = fcRuns(200, 1000, 'ROTOR_MODEL_RUNS');
  const RELOAD = 30_000;
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: RELOAD }), fc.boolean()), { minLength: 50, maxLength: 600 }), fc.integer({ min: 1, max: 6 }), (steps, rotationMinutes) => {
      const policy: RingPolicy = { ...POLICY, rotationMs: rotationMinutes * 10 * MIN, settleMs: 2 * RELOAD };
      const model: Model = { at: T0, tokens: [], droppedByHand: new Set(), manualNext: new Set() };
      const real: Real = { ring: freshRing('k1', secret(1), T0), policy, fill: 1 };
      let promotions = 0;
      for (const [ms, issue] of steps) {
        model.at += ms;
        const before = signingKey(real.ring).id;
        real.ring = maintain(real.ring, model.at, policy, fresh(real));
        if (signingKey(real.ring).id !== before) promotions++;
        if (issue) new Issue(10, false).run(model, real);
        else holds(model, real);
        const age = model.at - signingKey(real.ring).since;
        // Due at rotationMs; one reload adds the next key, it settles, one more reload promotes it.
        if (age > policy.rotationMs + policy.settleMs + 2 * RELOAD) throw new Error(`the signing key is ${age / 1000} s old`);
        const most = 2 + Math.ceil((policy.tokenLifeMs! + policy.skewMs + 2 * RELOAD) / policy.rotationMs);
        if (real.ring.keys.length > most) throw new Error(`${real.ring.keys.length} keys in the ring: ${ids(real.ring).join(' ')}`);
      }
      const elapsed = model.at - T0;
      if (elapsed > 2 * (policy.rotationMs + policy.settleMs + 2 * RELOAD) && promotions === 0) throw new Error(`no rotation in ${elapsed / 1000} s`);
    }),
    params,
  );
  t.pass(`${params.numRuns} runs`);
});

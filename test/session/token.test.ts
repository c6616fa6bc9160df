/**
 * The token format (src/session/token.ts): `<key id>.<claims>.<mac>`. What is minted verifies
 * to the same claims; anything altered, forged or signed by an unknown key is
 * ROTOR_E_TOKEN_INVALID; a ring verifies tokens of every key it holds.
 */
import t from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { isRotorError } from '../../src/errors.ts';
import { claimsExpireAt, hashToken, KeyRing, mintToken, verifyToken, type TokenClaims } from '../../src/session/token.ts';
import { seededRandom } from '../../src/session/random.ts';
import { fcRuns } from '../helpers/session.ts';

const INVALID = { code: 'ROTOR_E_TOKEN_INVALID' };
const random = seededRandom(42);
const ring = KeyRing.generate(random);
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function claims(over: Partial<TokenClaims> = {}): TokenClaims {
  return { session: Buffer.alloc(16, 7).toString('base64url'), generation: 3, issued: 1_900_000_000, ttlMinutes: 120, user: 'ann', ...over };
}

const claimsArb: fc.Arbitrary<TokenClaims> = fc.record({
  session: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => Buffer.from(bytes).toString('base64url')),
  generation: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  issued: fc.integer({ min: 0, max: 2 ** 40 }),
  ttlMinutes: fc.oneof(fc.constant(-1), fc.integer({ min: 1, max: 100 * 365 * 24 * 60 })),
  user: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 })),
});

/** Whether verifyToken refuses `token` with ROTOR_E_TOKEN_INVALID (any other outcome: false). */
function refused(keys: KeyRing, token: string): boolean {
  try {
    verifyToken(keys, token);
    return false;
  } catch (err) {
    return isRotorError(err) && err.code === 'ROTOR_E_TOKEN_INVALID';
  }
}

/** A token split into its three parts. */
function parts(token: string): { keyId: string; claims: string; mac: string } {
  const [keyId, body, mac] = token.split('.');
  return { keyId, claims: body, mac };
}

t.test('a minted token verifies to exactly its claims', async (t) => {
  const params = fcRuns(200, 1000);
  fc.assert(
    fc.property(claimsArb, (c) => {
      const token = mintToken(ring, c, random);
      assert.deepEqual(verifyToken(ring, token), { ...c });
      return /^k1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/.test(token) && token.length <= 512;
    }),
    params,
  );
  t.pass(`${params.numRuns} claims round-tripped`);
});

t.test('the same claims minted twice give two different tokens (the nonce)', async (t) => {
  const a = mintToken(ring, claims(), random);
  const b = mintToken(ring, claims(), random);
  t.not(a, b);
  t.not(hashToken(a), hashToken(b));
  t.strictSame(verifyToken(ring, a), verifyToken(ring, b));
});

t.test('any one character changed, anywhere, is ROTOR_E_TOKEN_INVALID', async (t) => {
  const params = fcRuns(300, 2000);
  const token = mintToken(ring, claims(), random);
  // Half the time near the end: the MAC's last character carries 4 unused bits.
  const position = fc.oneof(fc.nat({ max: token.length - 1 }), fc.integer({ min: token.length - 3, max: token.length - 1 }));
  fc.assert(
    fc.property(position, fc.constantFrom(...BASE64URL, '.', '=', ' ', '!'), (at, char) => {
      fc.pre(token[at] !== char);
      return refused(ring, token.slice(0, at) + char + token.slice(at + 1));
    }),
    params,
  );
  t.pass(`${params.numRuns} alterations refused`);
});

t.test('every other ending of the MAC is refused (base64url padding bits too)', async (t) => {
  const token = mintToken(ring, claims(), random);
  const head = token.slice(0, -1);
  for (const char of BASE64URL) {
    if (head + char === token) continue;
    t.throws(() => verifyToken(ring, head + char), INVALID, `last character ${char}`);
  }
});

t.test('anything appended or dropped is refused', async (t) => {
  const token = mintToken(ring, claims(), random);
  for (const suffix of ['=', '==', 'A', '.', ' ', '!', '\n']) {
    t.throws(() => verifyToken(ring, token + suffix), INVALID, `+ ${JSON.stringify(suffix)}`);
  }
  t.throws(() => verifyToken(ring, token.slice(0, -1)), INVALID, 'last character dropped');
  t.throws(() => verifyToken(ring, token.slice(1)), INVALID, 'first character dropped');
});

t.test('altered claims are refused even with a valid-looking encoding', async (t) => {
  const token = mintToken(ring, claims(), random);
  const p = parts(token);
  const other = parts(mintToken(ring, claims({ generation: 4 }), random));
  t.throws(() => verifyToken(ring, `${p.keyId}.${other.claims}.${p.mac}`), INVALID, 'claims of another token under this MAC');
  t.throws(() => verifyToken(ring, `${p.keyId}.${p.claims}.${other.mac}`), INVALID, 'MAC of another token');
});

t.test('malformed tokens are refused', async (t) => {
  const token = mintToken(ring, claims(), random);
  const p = parts(token);
  for (const bad of ['', 'k1', 'k1.', 'k1..', '.x.y', `${p.claims}.${p.mac}`, `k1.${p.claims}.${p.mac}.x`, 'k1.' + 'A'.repeat(600) + '.x']) {
    t.throws(() => verifyToken(ring, bad), INVALID, JSON.stringify(bad.slice(0, 40)));
  }
});

t.test('a genuine MAC over claims that do not decode is refused', async (t) => {
  // Sign garbage claims with the right key by hand: the MAC passes, the claims must not.
  const { createHmac } = await import('node:crypto');
  const secret = Buffer.alloc(32, 9);
  const own = new KeyRing([{ id: 'k1', secret }]);
  const sign = (body: string) => {
    const signed = `k1.${body}`;
    return `${signed}.${createHmac('sha256', secret).update(signed).digest().subarray(0, 16).toString('base64url')}`;
  };
  t.throws(() => verifyToken(own, sign(Buffer.from([0xff, 0xff, 0xff]).toString('base64url'))), INVALID, 'not protobuf');
  t.throws(() => verifyToken(own, sign('')), INVALID, 'empty claims: no 16-byte session, generation 0');
  const good = verifyToken(own, mintToken(own, claims(), random));
  t.equal(good.generation, 3, 'the hand-made signer agrees with mintToken');
});

t.test('key ids: unknown or swapped ids are refused; every key in the ring verifies', async (t) => {
  const k1 = { id: 'k1', secret: Buffer.alloc(32, 1) };
  const k2 = { id: 'k2', secret: Buffer.alloc(32, 2) };
  const old = new KeyRing([k1]);
  const next = new KeyRing([k2, k1]);
  const byOld = mintToken(old, claims(), random);
  const byNext = mintToken(next, claims(), random);
  t.equal(parts(byNext).keyId, 'k2', 'the first key signs');
  t.strictSame(verifyToken(next, byOld), claims(), 'the second key of a ring still verifies');
  t.strictSame(verifyToken(next, byNext), claims());
  t.throws(() => verifyToken(old, byNext), INVALID, 'a key the ring does not hold');
  t.throws(() => verifyToken(new KeyRing([k2]), byOld), INVALID, 'a retired key');
  const swapped = `k2.${parts(byOld).claims}.${parts(byOld).mac}`;
  t.throws(() => verifyToken(next, swapped), INVALID, 'another known key id over the same claims and MAC');
  t.throws(() => verifyToken(next, `k9.${parts(byOld).claims}.${parts(byOld).mac}`), INVALID, 'an unknown key id');
  t.throws(() => verifyToken(new KeyRing([{ id: 'k1', secret: Buffer.alloc(32, 3) }]), byOld), INVALID, 'same id, other secret');
});

t.test('a key ring checks its keys', async (t) => {
  t.throws(() => new KeyRing([]), /at least one key/);
  t.throws(() => new KeyRing([{ id: 'K1', secret: Buffer.alloc(32) }]), /bad key id/);
  t.throws(() => new KeyRing([{ id: 'a.b', secret: Buffer.alloc(32) }]), /bad key id/);
  t.throws(() => new KeyRing([{ id: 'k1', secret: Buffer.alloc(31) }]), /shorter than 32/);
  t.equal(KeyRing.generate(seededRandom(1), 'k7').signing.id, 'k7');
});

t.test('expiry from claims, and the stored hash', async (t) => {
  t.equal(claimsExpireAt({ issued: 1000, ttlMinutes: 2 }), 1000 * 1000 + 2 * 60_000);
  t.equal(claimsExpireAt({ issued: 1000, ttlMinutes: -1 }), null, '-1 never expires');
  const token = mintToken(ring, claims(), random);
  t.equal(hashToken(token), hashToken(token), 'deterministic');
  t.match(hashToken(token), /^[A-Za-z0-9_-]{22}$/, '128 bits, base64url');
  t.not(hashToken(token), hashToken(token + 'x'));
});

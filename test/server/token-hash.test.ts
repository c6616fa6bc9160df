/**
 * The hash a session keeps for its newest token comes from the token's own HMAC (bits the MAC
 * does not use). Sessions stored before that hold the old kind, SHA-256 of the token: they keep
 * working — exchange, replay, reuse detection — and move to the new kind at their next rotation.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { createSession } from '../../src/session/machine.ts';
import { replyAtRest } from '../../src/session/replay.ts';
import { hashToken, mac, mintToken, unsignedPart, verifyToken } from '../../src/session/token.ts';
import { seededRandom } from '../../src/session/random.ts';
import { getHeader, serializeFrame } from '../../src/wire/index.ts';
import { harness } from './harness.ts';

const SESSION = 'AAAAAAAAAAAAAAAAAAAAAQ';

/** A session as the previous version stored it: generation 2 newest (not acked), its reply kept, SHA-256 hashes. */
async function legacySession() {
  const h = await harness(exampleApp());
  const issued = Math.floor(h.clock.now / 1000);
  const claims = (generation: number) => ({ session: SESSION, generation, issued, ttlMinutes: 60, user: 'alice' });
  const random = seededRandom(11);
  const first = mintToken(h.keys, claims(1), random);
  const second = mintToken(h.keys, claims(2), random);
  const reply = serializeFrame({ kind: 'response', status: 200, reason: 'OK', headers: [['Token', second], ['Content-Type', 'text/plain; charset=utf-8']], body: Buffer.from('hello, alice') });
  const state = createSession({ id: SESSION, user: 'alice', tokenHash: hashToken(first), expiresAt: h.clock.now + 3_600_000, meta: {}, now: h.clock.now });
  await h.store.createSession(state);
  await h.store.commitSession({ ...state, gen: 2, tokenHash: hashToken(second), acked: false, prev: { hash: hashToken(first), reply: replyAtRest(reply) } }, 0, []);
  return { h, first, second, reply };
}

t.test('a session stored with the old hashes: the retry gets its replay, the newest token rotates it to the new kind', async (t) => {
  const { h, first, second, reply } = await legacySession();
  const replay = await h.send('GET', '/hello', [['Token', first]]);
  t.same(replay.bytes, reply, 'the previous token gets the kept reply, byte for byte');
  const rotated = await h.send('GET', '/hello', [['Token', second]]);
  t.equal(rotated.frame.status, 200, 'the newest token is accepted');
  const next = getHeader(rotated.frame, 'Token')!;
  const stored = (await h.store.loadSession(SESSION))!;
  t.equal(stored.gen, 3, 'rotated');
  t.equal(stored.tokenHash.length, 21, 'the new token is kept as the HMAC-derived hash');
  t.not(stored.tokenHash, hashToken(next), 'not as the old SHA-256 hash');
  t.equal(stored.prev?.hash, hashToken(second), 'the previous token keeps its old hash, so its retry still matches');
  const again = await h.send('GET', '/hello', [['Token', second]]);
  t.same(again.bytes, rotated.bytes, 'a retry with the old-hashed token gets the identical reply');
  t.equal((await h.send('GET', '/hello', [['Token', next]])).frame.status, 200, 'the new-hashed token rotates');
});

t.test('a session stored with the old hashes: an older token is still caught as a reuse', async (t) => {
  const { h, first, second } = await legacySession();
  t.equal((await h.send('GET', '/hello', [['Token', second]])).frame.status, 200);
  t.equal(getHeader((await h.send('GET', '/hello', [['Token', first]])).frame, 'Error'), 'ROTOR_E_TOKEN_REUSED', 'two generations back: reuse');
  t.ok((await h.store.loadSession(SESSION))!.revoked, 'the session is revoked');
});

t.test('the HMAC-derived hash says nothing about the MAC: it is not the MAC, nor any part of it', async (t) => {
  const h = await harness(exampleApp());
  const token = await h.login();
  await h.send('GET', '/hello', [['Token', token]]);
  const stored = (await h.store.loadSession(verifyToken(h.keys, token).session))!;
  const macOfToken = mac(h.keys.signing.secret, unsignedPart(token));
  t.equal(token.endsWith(`.${macOfToken}`), true, 'the token ends in its MAC');
  t.equal(stored.prev?.hash.length, 21);
  for (let i = 0; i + 8 <= macOfToken.length; i++) t.notOk(stored.prev!.hash.includes(macOfToken.slice(i, i + 8)), `no 8 characters of the MAC at ${i}`);
});

/**
 * Hand-over keys rotate (spec §11): the revocation list is signed by every key of its issuer, so
 * a peer that trusts only the older key takes the list that publishes the newer one, before the
 * newer one signs any token; a list none of whose signatures is by a trusted key, or with a bad
 * one by a trusted key, is refused.
 */
import t from 'tap';
import { HandOverKeys, newHandOverKey, readDocument, signedDocument, type RevocationDocument } from '../../src/handover/index.ts';
import type { KeyObject } from 'node:crypto';

const NOW = Date.UTC(2026, 11, 2);
const older = newHandOverKey(NOW, 'hold');
const newer = newHandOverKey(NOW, 'hnew');
const doc = (keys: HandOverKeys, issued: number): RevocationDocument => ({ issuer: 'a', issued, revoked: [], publicKeys: keys.publicKeys() });
const trust = (...keys: (typeof older)[]) => new Map<string, KeyObject>(keys.map((key) => [key.id, key.publicKey]));
const read = (trusted: Map<string, KeyObject>, keys: HandOverKeys, issued = NOW / 1000) => {
  const { body, signature } = signedDocument(doc(keys, issued), keys);
  return readDocument('a', trusted, body, signature, NOW, 0);
};

t.test('add, publish, promote, retire: the peer follows without its peers file changing', async (t) => {
  const added = new HandOverKeys([older, newer]);
  const learned = read(trust(older), added);
  t.same([...learned.publicKeys.keys()], ['hold', 'hnew'], 'the list published the added key, signed by the key the peer trusts');
  const promoted = new HandOverKeys([newer, older]);
  t.ok(read(trust(older), promoted), 'promoted before the peer pulled: the older key still signs the list too');
  t.ok(read(new Map(learned.publicKeys), promoted), 'a peer that learned both takes it');
  const retired = new HandOverKeys([newer]);
  t.ok(read(trust(older, newer), retired), 'after the older key is retired, the newer alone signs');
  t.throws(() => read(trust(older), retired), /none of them trusted/, 'a peer that never pulled while both were listed cannot follow (its peers file must change)');
});

t.test('a bad signature by a trusted key, or too many signatures, is refused', async (t) => {
  const keys = new HandOverKeys([newer, older]);
  const { body, signature } = signedDocument(doc(keys, NOW / 1000), keys);
  const [first, second] = signature.split(', ');
  const broken = `${first}, ${second.slice(0, -4)}AAAA`;
  t.throws(() => readDocument('a', trust(older, newer), body, broken, NOW, 0), /bad signature/);
  t.throws(() => readDocument('a', trust(older), body, broken, NOW, 0), /bad signature/, 'also when the good one is by a key the peer trusts too');
  t.ok(readDocument('a', trust(newer), body, broken, NOW, 0), 'a signature by a key the peer does not know is not looked at');
  const many = Array.from({ length: 9 }, () => first).join(', ');
  t.throws(() => readDocument('a', trust(newer), body, many, NOW, 0), /more than 8 signatures/);
});

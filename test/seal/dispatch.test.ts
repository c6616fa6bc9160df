/**
 * Sealed sessions through the dispatcher (spec §12): the open's checks in the spec's order, the
 * refusals of a request without the key's proof (each changing nothing), what a copy of the
 * store holds, and the session key across a rotation of the MAC keys and a restart.
 */
import t from 'tap';
import { generateKeyPairSync, sign } from 'node:crypto';
import { exampleApp } from '../../src/app/example.ts';
import { addInstance, listInstances } from '../../src/seal/apps.ts';
import { startOpen } from '../../src/seal/instance.ts';
import { EMPTY_DIGEST, openText, sealProof } from '../../src/seal/proof.ts';
import { SessionKeys } from '../../src/seal/keys.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { silentLogger } from '../../src/log/index.ts';
import type { SessionState } from '../../src/session/types.ts';
import { FrameParser, getHeader, type Header, type ResponseFrame } from '../../src/wire/index.ts';
import type { Harness } from '../server/harness.ts';
import { error, openNonce, sealedSession, setup } from './helpers.ts';

t.test('the open: every check in the order spec §12 gives, each with its code', async (t) => {
  const { h, app, identity } = await setup();
  const nonce = await openNonce(h);
  const good = startOpen(identity, nonce).headers;
  const without = (name: string) => good.filter(([n]) => n !== name);
  const swap = (name: string, value: string): Header[] => good.map(([n, v]) => [n, n === name ? value : v]);
  for (const name of ['App', 'Instance', 'Seal-Nonce', 'Seal-Key', 'Seal']) {
    t.equal(error(await h.send('POST', '/rotor/seal', without(name))), 'ROTOR_E_BAD_REQUEST', `no ${name}`);
  }
  t.equal(error(await h.send('POST', '/rotor/seal', swap('Instance', 'bad host!'))), 'ROTOR_E_BAD_REQUEST', 'an instance id with a space');
  t.equal(error(await h.send('POST', '/rotor/seal', swap('Seal-Key', 'short'))), 'ROTOR_E_BAD_REQUEST', 'a Seal-Key that is not 32 bytes');
  // A nonce the server did not make, and one it made too long ago.
  const forgedNonce = `${nonce.slice(0, -2)}AA`;
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen(identity, forgedNonce).headers)), 'ROTOR_E_SEAL_NONCE_EXPIRED', 'a forged open nonce');
  const stale = await openNonce(h);
  h.clock.now += 61_000;
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen(identity, stale).headers)), 'ROTOR_E_SEAL_NONCE_EXPIRED', 'an open nonce older than seal.openNonceSeconds');
  const fresh = await openNonce(h);
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen({ ...identity, app: 'AAAAAAAAAAAAAAAA' }, fresh).headers)), 'ROTOR_E_APP_UNKNOWN', 'an app not registered');
  // The app's id with another key's seal; then the app's seal over another instance than the one sent.
  const stranger = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' }).d!;
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen({ ...identity, key: stranger }, fresh).headers)), 'ROTOR_E_SEAL_INVALID', 'a seal by another key');
  const forOther = startOpen({ ...identity, instance: 'host-2' }, fresh).headers.map(([n, v]): Header => [n, n === 'Instance' ? 'host-1' : v]);
  t.equal(error(await h.send('POST', '/rotor/seal', forOther)), 'ROTOR_E_SEAL_INVALID', 'a seal over another instance');
  // A low-order X25519 point, properly signed: the shared secret would be all zeros.
  const zeroKey = Buffer.alloc(32).toString('base64url');
  const seed = Buffer.from(app.key, 'base64url');
  const { ed25519Private } = await import('../../src/seal/proof.ts');
  const zeroSeal = sign(null, Buffer.from(openText(app.id, 'host-1', fresh, zeroKey, EMPTY_DIGEST)), ed25519Private(seed)).toString('base64url');
  t.equal(error(await h.send('POST', '/rotor/seal', [['App', app.id], ['Instance', 'host-1'], ['Seal-Nonce', fresh], ['Seal-Key', zeroKey], ['Seal', zeroSeal]])), 'ROTOR_E_SEAL_INVALID', 'a low-order Seal-Key');
  // The body is signed: swapped on the way, the seal no longer holds.
  const signedBody = '{"role":"batch"}';
  const once = startOpen(identity, fresh, undefined, Buffer.from(signedBody)).headers;
  t.equal(error(await h.send('POST', '/rotor/seal', once, '{"role":"admin"}')), 'ROTOR_E_SEAL_INVALID', 'a body other than the one signed');
  t.equal(error(await h.send('POST', '/rotor/seal', once)), 'ROTOR_E_SEAL_INVALID', 'the signed body left out');
  // A bad body, signed, is refused after the seal and does not spend the nonce.
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen(identity, fresh, undefined, Buffer.from('not json')).headers, 'not json')), 'ROTOR_E_BAD_REQUEST', 'a body that is not a JSON object');
  const opened = await h.send('POST', '/rotor/seal', once, signedBody);
  t.ok(getHeader(opened.frame, 'Token'), 'the same nonce then opens');
  t.same([getHeader(opened.frame, 'Seal-Nonce')?.length, getHeader(opened.frame, 'Seal-Key')?.length], [21, 43], 'with the token come its nonce and the server key');
  t.equal(error(await h.send('POST', '/rotor/seal', once, signedBody)), 'ROTOR_E_SEAL_NONCE_USED', 'the same open again');
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen(identity, fresh).headers)), 'ROTOR_E_SEAL_NONCE_USED', 'the nonce with a fresh key pair');
  const instances = await listInstances(h.store, app.id);
  t.same(instances.map((i) => [i.instance, i.record.listed, i.record.firstOpenAt]), [['host-1', false, h.clock.now]], 'an open app registers its instance at the first open');
  const session = [...(await allSessions(h))].find((s) => s.seal !== null)!;
  t.same([session.user, session.meta], [`app:${app.id}/host-1`, { role: 'batch' }], 'the session is the instance\'s, with its metadata');
});

async function allSessions(h: Harness): Promise<SessionState[]> {
  const out: SessionState[] = [];
  for await (const state of h.store.listSessions()) out.push(state);
  return out;
}

t.test('a listed app takes only the instances the operator added', async (t) => {
  const { h, app, identity } = await setup(exampleApp(), {}, 'listed');
  t.equal(error(await h.send('POST', '/rotor/seal', startOpen(identity, await openNonce(h)).headers)), 'ROTOR_E_INSTANCE_UNKNOWN', 'not listed');
  await addInstance(h.store, app.id, 'host-1', h.clock.now);
  t.ok(getHeader((await h.send('POST', '/rotor/seal', startOpen(identity, await openNonce(h)).headers)).frame, 'Token'), 'listed: it opens');
});

t.test('forged seals are counted against their source address like wrong passwords', async (t) => {
  const { h, identity } = await setup(exampleApp(), { auth: { addressFailureFactor: 3 } });
  const origin = { carrier: 'tcp' as const, peer: '203.0.113.9' };
  const open = async (key: string) => {
    const nonce = getHeader(parse((await h.rotor.dispatch({ kind: 'request', verb: 'GET', path: '/rotor/seal', headers: [], body: undefined }, origin)).bytes), 'Seal-Nonce')!;
    return parse((await h.rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/seal', headers: startOpen({ ...identity, key }, nonce).headers, body: undefined }, origin)).bytes);
  };
  const stranger = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' }).d!;
  const codes: (string | undefined)[] = [];
  for (let i = 0; i < 4; i++) codes.push(getHeader(await open(stranger), 'Error'));
  t.same(codes, ['ROTOR_E_SEAL_INVALID', 'ROTOR_E_SEAL_INVALID', 'ROTOR_E_SEAL_INVALID', 'ROTOR_E_RATE_LIMITED'], 'the fourth forged seal waits');
  const held = await open(identity.key);
  t.same([getHeader(held, 'Error'), Number(getHeader(held, 'Wait-for')) > 0], ['ROTOR_E_RATE_LIMITED', true], 'the address waits, even with the right key, as after wrong passwords');
});

function parse(bytes: Buffer): ResponseFrame {
  return new FrameParser().push(bytes).frames[0] as ResponseFrame;
}

t.test('a request without the key\'s proof is refused with its code, and changes nothing', async (t) => {
  const { h, identity } = await setup();
  const s = await sealedSession(h, identity);
  const read = await s.send('GET', '/hello');
  t.equal(read.frame.body?.toString(), `hello, app:${identity.app}/host-1`, 'a proven read');
  const before = await allSessions(h);
  const cases: Array<[string, Header[], string | undefined, string]> = [
    ['no Seal-Proof: a stolen token alone', [['Token', s.token]], undefined, 'ROTOR_E_SEAL_PROOF_MISSING'],
    ['a proof of the wrong form', [['Token', s.token], ['Seal-Proof', 'abc']], undefined, 'ROTOR_E_SEAL_PROOF_WRONG'],
    ['a wrong MAC', [['Token', s.token], ['Seal-Proof', s.proof('GET', '/hello').slice(0, -4) + 'AAAA']], undefined, 'ROTOR_E_SEAL_PROOF_WRONG'],
    ['a proof over another path', [['Token', s.token], ['Seal-Proof', s.proof('GET', '/meta')]], undefined, 'ROTOR_E_SEAL_PROOF_WRONG'],
    ['a proof over another verb', [['Token', s.token], ['Seal-Proof', s.proof('POST', '/hello')]], undefined, 'ROTOR_E_SEAL_PROOF_WRONG'],
    ['a proof over the previous nonce', [['Token', s.token], ['Seal-Proof', sealProof(s.key, 'AAAAAAAAAAAAAAAAAAAAA', 'GET', '/hello', undefined)]], undefined, 'ROTOR_E_SEAL_NONCE_WRONG'],
    ['a proof over another body', [['Token', s.token], ['Seal-Proof', s.proof('POST', '/reverse', 'stressed')]], 'desserts', 'ROTOR_E_SEAL_BODY_CHANGED'],
    ['a proof over a body, sent without it', [['Token', s.token], ['Seal-Proof', s.proof('POST', '/reverse', 'stressed')]], undefined, 'ROTOR_E_SEAL_BODY_CHANGED'],
    ['another session\'s key', [['Token', s.token], ['Seal-Proof', sealProof(Buffer.alloc(32, 9), s.nonce, 'GET', '/hello', undefined)]], undefined, 'ROTOR_E_SEAL_PROOF_WRONG'],
  ];
  for (const [name, headers, body, code] of cases) {
    const verb = body === undefined && !name.includes('body') ? 'GET' : 'POST';
    const reply = await h.send(verb, verb === 'GET' ? '/hello' : '/reverse', headers, body);
    t.same([error(reply), getHeader(reply.frame, 'Token')], [code, undefined], `${name}: ${code}, no token`);
  }
  // A logout with the stolen token alone ends nothing.
  t.equal(error(await h.send('POST', '/rotor/logout', [['Token', s.token]])), 'ROTOR_E_SEAL_PROOF_MISSING', 'a thief cannot log the instance out');
  t.same(await allSessions(h), before, 'the session record is as it was');
  t.equal(error(await s.send('GET', '/hello')), undefined, 'the token is still good for the instance');
  t.equal(error(await s.send('POST', '/rotor/logout')), undefined, 'and it logs out, with its proof');
});

t.test('the proof covers the path with its query, and a plain session ignores Seal-Proof', async (t) => {
  const { h, identity } = await setup();
  const s = await sealedSession(h, identity);
  t.equal(error(await h.send('GET', '/hello?x=2', [['Token', s.token], ['Seal-Proof', s.proof('GET', '/hello?x=1')]])), 'ROTOR_E_SEAL_PROOF_WRONG', 'another query');
  t.equal(error(await s.send('GET', '/hello?x=1')), undefined, 'the query it was made over');
  const plain = await h.login();
  const reply = await h.send('GET', '/hello', [['Token', plain], ['Seal-Proof', 'anything']]);
  t.same([error(reply), getHeader(reply.frame, 'Seal-Nonce'), reply.frame.body?.toString()], [undefined, undefined, 'hello, alice'], 'a plain session: no proof needed, no nonce given');
});

t.test('a lost reply: the same request again gets the same reply, the same token and the same nonce', async (t) => {
  const { h, identity } = await setup();
  const s = await sealedSession(h, identity);
  const headers: Header[] = [['Token', s.token], ['Seal-Proof', s.proof('POST', '/reverse', 'stressed')]];
  const first = await h.send('POST', '/reverse', headers, 'stressed');
  const again = await h.send('POST', '/reverse', headers, 'stressed');
  t.same(again.bytes, first.bytes, 'byte for byte');
  t.ok(getHeader(again.frame, 'Seal-Nonce'), 'the nonce is in it');
  // Its token then acks; the task runs and its result is fetched under proof.
  s.token = getHeader(first.frame, 'Token')!;
  s.nonce = getHeader(first.frame, 'Seal-Nonce')!;
  t.equal(error(await s.send('POST', '/rotor/ack')), undefined, 'acked');
  await h.rotor.tasks.idle();
  const result = await s.send('GET', `/rotor/tasks/${getHeader(first.frame, 'Task')}`);
  t.equal(result.frame.body?.toString(), 'desserts', 'the deferred work ran once acked, its result fetched under proof');
  t.equal(error(await h.send('POST', '/reverse', headers, 'stressed')), 'ROTOR_E_SEAL_REPLAYED', 'after the ack the request sent again is refused, not a reuse');
  t.equal(error(await s.send('GET', '/hello')), undefined, 'and the session lives');
});

t.test('a copy of the store holds nothing that makes a proof or opens a session', async (t) => {
  const { h, app, identity } = await setup();
  const s = await sealedSession(h, identity);
  await s.send('GET', '/hello');
  const stored = JSON.stringify({
    sessions: (await allSessions(h)).map((state) => ({ ...state, prev: state.prev && { hash: state.prev.hash, reply: state.prev.reply.toString('latin1') } })),
    apps: await h.store.listRecords('app'),
    instances: await h.store.listRecords('app-instance'),
  });
  for (const [name, secret] of [
    ['the session key', s.key],
    ['the app key', Buffer.from(app.key, 'base64url')],
  ] as const) {
    for (const encoding of ['base64', 'base64url', 'hex', 'latin1'] as const) t.notOk(stored.includes(secret.toString(encoding)), `${name} is not in the store (${encoding})`);
  }
  // Another server with other keys on that copy: the wrapped key does not unwrap.
  const [sealed] = (await allSessions(h)).filter((x) => x.seal);
  t.equal(new SessionKeys(KeyRing.generate(seededRandom(666)), seededRandom(667)).unwrap(sealed.id, sealed.seal!.key), undefined, 'without the MAC keys the session key does not unwrap');
  // Whoever can write the store copies this session's wrapped key into another session's record
  // and proves a request there with a key they know: refused (the session id is bound to the wrap).
  const other = await sealedSession(h, { ...identity, instance: 'host-2' });
  const otherState = (await allSessions(h)).find((x) => x.seal?.instance === 'host-2')!;
  t.ok(await h.store.commitSession({ ...otherState, seal: { ...otherState.seal!, key: sealed.seal!.key } }, otherState.rev, []), 'the record is changed');
  const reply = await h.send('GET', '/hello', [['Token', other.token], ['Seal-Proof', sealProof(s.key, other.nonce, 'GET', '/hello', undefined)]]);
  t.same([getHeader(reply.frame, 'Token'), error(reply) === undefined], [undefined, false], 'a wrapped key moved to another session proves nothing there');
});

t.test('the session key follows a rotation of the MAC keys and a restart', async (t) => {
  const { h, identity } = await setup();
  const s = await sealedSession(h, identity);
  const old = h.keys.signing;
  const fresh = { id: 'k9', secret: Buffer.alloc(32, 9) };
  h.keys.replace([fresh, old], 'k9');
  t.equal(error(await s.send('GET', '/hello')), undefined, 'a rotation under the new key');
  const [state] = (await allSessions(h)).filter((x) => x.seal);
  t.ok(state.seal!.key.startsWith('k9.'), 'the session key is wrapped under the signing key now');
  // The old key retired: tokens and the session key both live on the new one.
  h.keys.replace([fresh], 'k9');
  const restarted = new Rotor({ config: h.rotor.config, store: h.store, app: exampleApp(), keys: h.keys, log: silentLogger(), now: () => h.clock.now, random: seededRandom(70) });
  const reply = parse((await restarted.dispatch({ kind: 'request', verb: 'GET', path: '/hello', headers: [['Token', s.token], ['Seal-Proof', s.proof('GET', '/hello')]], body: undefined })).bytes);
  t.same([getHeader(reply, 'Error'), reply.body?.toString()], [undefined, `hello, app:${identity.app}/host-1`], 'a restarted server with the old key gone checks the proof');
});

/**
 * What a hostile review of sealed sessions found (spec §12), each now a test of the fix: a
 * captured request that met a store blip turned into a clone's after the instance moved on (and
 * the client library's next call got another call's answer); headers outside the proof reached
 * the handler; a sealed session's hand-over token was a bearer credential at the peer; the open's
 * body was not signed; a removed app's sessions lived on; forged opens held off an address's
 * password logins; a spent open nonce could open again at its expiry or across clock skew; a
 * refused open registered its instance; an absolute-form HTTP target was normalised before the
 * proof was checked.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { RotorClient, RotorClientError, TransportError, type ClientTransport, type Connect } from '../../src/client/index.ts';
import { RotorError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log/index.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { addApp, addInstance, listInstances, removeApp, removeInstance } from '../../src/seal/apps.ts';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';
import { Seals } from '../../src/seal/service.ts';
import { seededRandom } from '../../src/session/random.ts';
import { DEFAULTS } from '../../src/config/settings.ts';
import { frameHead } from '../../src/transport/http.ts';
import { FrameParser, getHeader, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';
import type { Harness } from '../server/harness.ts';
import { error, openNonce, sealedSession, setup } from './helpers.ts';
import { errorOf, handOverLogin, pair, T0 } from '../handover/helpers.ts';

const parse = (bytes: Buffer) => new FrameParser().push(bytes).frames[0] as ResponseFrame;

/** The client library on an in-process connection that keeps every frame it sent. */
function wire(h: Harness): { connect: Connect; sent: RequestFrame[] } {
  const sent: RequestFrame[] = [];
  const transport: ClientTransport = {
    async request(frame) {
      sent.push(frame);
      return parse((await h.rotor.dispatch(frame, { carrier: 'tcp', peer: '198.51.100.7' })).bytes);
    },
    close() {},
  };
  return { connect: async () => transport, sent };
}

/** The store's next `count` commits fail as an unreachable store does. */
function blip(h: Harness, count = 1): void {
  const commit = h.store.commitSession.bind(h.store);
  let failing = count;
  h.store.commitSession = async (...args) => {
    if (failing-- > 0) throw new RotorError('ROTOR_E_UNAVAILABLE', 'store blip (test)');
    return commit(...args);
  };
}

t.test('a request refused by a store blip stays owed: sent again as it was, a captured copy is a replay, not a clone', async (t) => {
  const { h, identity } = await setup();
  const s = await sealedSession(h, identity);
  blip(h);
  const captured = s.frame('POST', '/reverse', 'stressed');
  t.equal(error(await h.send(captured.verb, captured.path, captured.headers, captured.body)), 'ROTOR_E_UNAVAILABLE', 'the instance\'s request meets a store blip');
  const again = s.take(await h.send(captured.verb, captured.path, captured.headers, captured.body));
  t.equal(again.frame.status, 202, 'sent again as it was, as spec §12 says: done');
  t.equal(error(await s.send('GET', '/hello')), undefined, 'the instance goes on');
  t.equal(error(await h.send(captured.verb, captured.path, captured.headers, captured.body)), 'ROTOR_E_SEAL_REPLAYED', 'the wiretapper\'s copy is a replay');
  t.equal(error(await s.send('GET', '/hello')), undefined, 'the session lives');
});

t.test('the client library keeps a request refused for now owed, and sends it first', async (t) => {
  const { h, identity } = await setup();
  const tap = wire(h);
  const client = new RotorClient({ connect: tap.connect });
  await client.openSealed(identity);
  blip(h);
  const first = await client.request('POST', '/reverse', { body: 'stressed' }).catch((err: unknown) => err);
  t.ok(first instanceof RotorClientError && first.code === 'ROTOR_E_UNAVAILABLE', 'the call fails with ROTOR_E_UNAVAILABLE');
  const captured = tap.sent.at(-1)!;
  const hello = await client.request('GET', '/hello');
  t.equal(hello.body.toString(), `hello, app:${identity.app}/host-1`, 'the next call gets its own answer');
  t.same(tap.sent.slice(-2).map((frame) => `${frame.verb} ${frame.path}`), ['POST /reverse', 'GET /hello'], 'after the owed request was sent again, as it was');
  t.equal(error({ frame: parse((await h.rotor.dispatch(captured)).bytes), bytes: Buffer.alloc(0) }), 'ROTOR_E_SEAL_REPLAYED', 'a captured copy is a replay');
  t.equal((await client.request('GET', '/hello')).status, 200, 'the instance is not locked out');
});

t.test('a lost reply and a store blip on its retry: the next call still gets its own answer', async (t) => {
  const { h, identity } = await setup();
  let loseNext = false;
  const transport: ClientTransport = {
    async request(frame) {
      const reply = await h.rotor.dispatch(frame);
      if (loseNext) {
        loseNext = false;
        throw new TransportError('reply lost (test)');
      }
      return parse(reply.bytes);
    },
    close() {},
  };
  const client = new RotorClient({ connect: async () => transport, retries: 1, retryDelayMs: 1 });
  await client.openSealed(identity);
  const load = h.store.loadSessionNow.bind(h.store);
  let loads = 0;
  h.store.loadSessionNow = (id) => {
    if (++loads === 2) throw new RotorError('ROTOR_E_UNAVAILABLE', 'store blip (test)');
    return load(id);
  };
  loseNext = true;
  const work = await client.request('POST', '/reverse', { body: 'stressed' }).catch((err: unknown) => err);
  t.ok(work instanceof RotorClientError && work.code === 'ROTOR_E_UNAVAILABLE', 'the work call fails: its retry met the blip');
  const hello = await client.request('GET', '/hello');
  t.same([hello.status, hello.body.toString()], [200, `hello, app:${identity.app}/host-1`], 'GET /hello gets the answer to GET /hello, not the work\'s');
});

t.test('headers outside the proof never reach the handler; covered ones cannot be changed', async (t) => {
  const paid: string[] = [];
  const app: RotorApp = {
    routes: {
      'POST /pay': (r) => {
        paid.push(`${r.header('X-Amount')} to ${r.header('X-To')} as ${r.header('Content-Type')}; ${r.headers.length} headers`);
        return { body: `paid ${r.header('X-Amount')} to ${r.header('X-To')}` };
      },
    },
    tasks: {},
  };
  const { h, identity } = await setup(app);
  const s = await sealedSession(h, identity);
  const sent = s.frame('POST', '/pay', '{}', [['Content-Type', 'application/json'], ['X-Amount', '1'], ['X-To', 'bob']]);
  const forged = sent.headers.map(([n, v]): Header => [n, n === 'X-Amount' ? '1000000' : n === 'X-To' ? 'mallory' : v]);
  t.equal(error(await h.send(sent.verb, sent.path, forged, sent.body)), 'ROTOR_E_SEAL_PROOF_WRONG', 'a covered header changed: refused');
  const added = [...sent.headers, ['X-Override', 'yes']] as Header[];
  const reply = s.take(await h.send(sent.verb, sent.path, added, sent.body));
  t.equal(reply.frame.body?.toString(), 'paid 1 to bob', 'a header added on the way: the request runs as the instance sent it');
  t.same(paid, ['1 to bob as application/json; 3 headers'], 'and the handler saw only the three covered headers');
  const names = (value: string) => s.frame('POST', '/pay', '{}', []).headers.filter(([n]) => n !== 'Seal-Headers').concat([['Seal-Headers', value]]);
  for (const listed of ['token', 'seal-proof, x-to', 'x-to, x-to', 'x-missing']) {
    t.equal(error(await h.send('POST', '/pay', names(listed), '{}')), 'ROTOR_E_SEAL_PROOF_WRONG', `Seal-Headers: ${listed} is refused`);
  }
});

t.test('a sealed session is never handed over: its hand-over token would be a bearer credential at the peer', async (t) => {
  const p = await pair();
  const app = await addApp(p.a.store, 'billing', 'open', T0, seededRandom(21));
  const identity = { app: app.id, instance: 'host-1', key: app.key };
  const pending = startOpen(identity, getHeader(await p.a.send('GET', '/rotor/seal'), 'Seal-Nonce')!);
  const opened = await p.a.send('POST', '/rotor/seal', pending.headers);
  const key = pending.sessionKey(getHeader(opened, 'Seal-Key')!)!;
  const token = getHeader(opened, 'Token')!;
  const nonce = getHeader(opened, 'Seal-Nonce')!;
  t.equal(errorOf(await p.a.send('POST', '/rotor/ack', [['Token', token], ['Seal-Proof', sealProof(key, nonce, 'POST', '/rotor/ack', undefined)]])), undefined, 'confirmed');
  const reply = await p.a.send('GET', '/go', [['Token', token], ['Seal-Proof', sealProof(key, nonce, 'GET', '/go', undefined)]]);
  t.same([errorOf(reply), getHeader(reply, 'Hand-over')], ['ROTOR_E_HANDLER_FAILED', undefined], 'the handler asking for a hand-over fails; no hand-over token in the reply');
  t.ok(getHeader(reply, 'Token'), 'the exchange rotated, as a handler failure does');
  const plain = await p.handOverFrom();
  t.equal(errorOf(await handOverLogin(p.b, plain.handOver)), undefined, 'a plain session is still handed over');
});

t.test('a removed app, or an instance removed from a listed app, ends its open sessions', async (t) => {
  const { h, app, identity } = await setup();
  const s = await sealedSession(h, identity);
  t.ok(await removeApp(h.store, app.id), 'the operator removes the app');
  h.clock.now += 5_000;
  t.equal(error(await s.send('GET', '/hello')), 'ROTOR_E_APP_UNKNOWN', 'after seal.registeredSeconds the next request is refused');
  t.equal(error(await s.send('GET', '/hello')), 'ROTOR_E_SESSION_REVOKED', 'and the session is over');

  const listed = await setup(exampleApp(), {}, 'listed');
  await addInstance(listed.h.store, listed.app.id, 'host-1', listed.h.clock.now);
  const l = await sealedSession(listed.h, listed.identity);
  t.equal(error(await l.send('GET', '/hello')), undefined, 'a listed instance works');
  await removeInstance(listed.h.store, listed.app.id, 'host-1');
  listed.h.clock.now += 5_000;
  t.equal(error(await l.send('GET', '/hello')), 'ROTOR_E_INSTANCE_UNKNOWN', 'once removed from the list, its session ends');
});

t.test('forged opens hold off their address\'s opens, never its password logins; a forged nonce is not counted', async (t) => {
  const { h, identity } = await setup(exampleApp(), { auth: { addressFailureFactor: 3 } });
  const nat = { carrier: 'tcp' as const, peer: '203.0.113.9' };
  const send = async (verb: string, path: string, headers: Header[]) => parse((await h.rotor.dispatch({ kind: 'request', verb, path, headers, body: undefined }, nat)).bytes);
  const junkNonce: Header[] = [['App', 'AAAAAAAAAAAAAAAA'], ['Instance', 'x'], ['Seal-Nonce', 'k1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA'], ['Seal-Key', 'A'.repeat(42) + 'E'], ['Seal', 'A'.repeat(86)]];
  for (let i = 0; i < 10; i++) t.equal(getHeader(await send('POST', '/rotor/seal', junkNonce), 'Error'), 'ROTOR_E_SEAL_NONCE_EXPIRED', `junk nonce ${i + 1}: refused, not counted`);
  t.equal(getHeader(await send('POST', '/rotor/seal', startOpen(identity, await openNonce(h)).headers), 'Error'), undefined, 'the instance still opens');
  const forged = startOpen({ ...identity, key: 'A'.repeat(43) }, await openNonce(h)).headers;
  for (let i = 0; i < 3; i++) t.equal(getHeader(await send('POST', '/rotor/seal', forged), 'Error'), 'ROTOR_E_SEAL_INVALID', `forged seal ${i + 1}`);
  t.equal(getHeader(await send('POST', '/rotor/seal', startOpen(identity, await openNonce(h)).headers), 'Error'), 'ROTOR_E_RATE_LIMITED', 'past the factor the address\'s opens wait');
  t.equal(getHeader(await send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']]), 'Error'), undefined, 'its password logins do not');
});

t.test('a spent open nonce never opens again: not at its expiry, not across clock skew', async (t) => {
  const { h, identity } = await setup();
  h.clock.now = Math.ceil(h.clock.now / 1000) * 1000;
  const open = startOpen(identity, await openNonce(h)).headers;
  t.equal(error(await h.send('POST', '/rotor/seal', open)), undefined, 'the instance opens');
  h.clock.now += 60_000;
  const seals = new Seals(h.keys, seededRandom(5), h.store, 8, 5_000);
  await seals.sweep(h.clock.now);
  t.equal(error(await h.send('POST', '/rotor/seal', open)), 'ROTOR_E_SEAL_NONCE_EXPIRED', 'at issue + 60 s the nonce is too old');

  const skewed = await setup();
  const ahead = () => skewed.h.clock.now + 30_000;
  const a = new Rotor({ config: skewed.h.rotor.config, store: skewed.h.store, app: exampleApp(), keys: skewed.h.keys, log: silentLogger(), now: ahead, random: seededRandom(71) });
  const at = async (rotor: Rotor, verb: string, path: string, headers: Header[] = []) => parse((await rotor.dispatch({ kind: 'request', verb, path, headers, body: undefined })).bytes);
  const nonce = getHeader(await at(a, 'GET', '/rotor/seal'), 'Seal-Nonce')!;
  const opened = startOpen(skewed.identity, nonce).headers;
  t.equal(getHeader(await at(a, 'POST', '/rotor/seal', opened), 'Error'), undefined, 'the instance opens at a node 30 s ahead');
  skewed.h.clock.now += 61_000;
  await seals.sweep(ahead());
  t.equal(getHeader(await at(skewed.h.rotor, 'POST', '/rotor/seal', opened), 'Error'), 'ROTOR_E_SEAL_NONCE_USED', 'at a node 30 s behind, 61 s later: still known as used');
});

t.test('an open that opens nothing registers nothing', async (t) => {
  const { h, app, identity } = await setup();
  const from = async (peer: string, headers: Header[]) => parse((await h.rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/seal', headers, body: undefined }, { carrier: 'tcp', peer })).bytes);
  const open = startOpen(identity, await openNonce(h)).headers;
  t.equal(getHeader(await from('192.0.2.10', open), 'Error'), undefined, 'the instance opens from 192.0.2.10');
  await removeInstance(h.store, app.id, 'host-1');
  t.equal(getHeader(await from('198.51.100.66', open), 'Error'), 'ROTOR_E_SEAL_NONCE_USED', 'a captured copy is refused');
  t.same(await listInstances(h.store, app.id), [], 'and left no first open behind');
});

t.test('an absolute-form HTTP target keeps its path as sent', async (t) => {
  const cases: Array<[string, string]> = [
    ['http://rotor.example/hello', '/hello'],
    ['http://rotor.example/a/../hello', '/a/../hello'],
    ['http://rotor.example/a/%2e%2e/hello?x=1', '/a/%2e%2e/hello?x=1'],
    ['https://rotor.example:8443?q', '/?q'],
    ['http://rotor.example', '/'],
  ];
  for (const [target, path] of cases) {
    const head = frameHead('GET', target, [], DEFAULTS.wire);
    t.equal('frame' in head ? head.frame.path : head.code, path, target);
  }
  const refused = frameHead('GET', 'rotor.example/hello', [], DEFAULTS.wire);
  t.equal('code' in refused ? refused.code : refused.frame.path, 'ROTOR_E_BAD_START_LINE', 'a target that is neither origin- nor absolute-form');
});

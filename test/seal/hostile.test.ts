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
import net from 'node:net';
import { exampleApp } from '../../src/app/example.ts';
import { httpConnect, RotorClient, RotorClientError, tcpConnect, TransportError, type ClientTransport, type Connect } from '../../src/client/index.ts';
import { RotorError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log/index.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { addApp, addInstance, listInstances, removeApp, removeInstance } from '../../src/seal/apps.ts';
import { startOpen } from '../../src/seal/instance.ts';
import { sealProof } from '../../src/seal/proof.ts';
import { Seals } from '../../src/seal/service.ts';
import { pooledRandom, seededRandom } from '../../src/session/random.ts';
import { DEFAULTS } from '../../src/config/settings.ts';
import { frameHead } from '../../src/transport/http.ts';
import { FrameParser, getHeader, type Header, type RequestFrame, type ResponseFrame } from '../../src/wire/index.ts';
import type { Harness } from '../server/harness.ts';
import { error, openNonce, sealedSession, setup } from './helpers.ts';
import { errorOf, handOverLogin, pair, T0 } from '../handover/helpers.ts';
import { startServer } from '../carriers/helpers.ts';

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

// ---- a second review, of the fixes above ---------------------------------------------------------

/** A TCP hop between a client and the server: records what the client sent; can hold the server's bytes back a moment (latency). */
function hop(upstreamPort: number) {
  const state = { hold: false, held: [] as Buffer[], sent: Buffer.alloc(0), release: () => {} };
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort });
    let upstreamEnded = false;
    client.on('data', (chunk) => {
      state.sent = Buffer.concat([state.sent, chunk]);
      if (!upstream.destroyed) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => (state.hold ? state.held.push(chunk) : client.write(chunk)));
    upstream.on('end', () => {
      upstreamEnded = true;
      if (!state.hold) client.end();
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    state.release = () => {
      state.hold = false;
      for (const chunk of state.held.splice(0)) client.write(chunk);
      if (upstreamEnded) client.end();
    };
  });
  return { state, server };
}

async function until(ready: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !ready(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!ready()) throw new Error(`never: ${what}`);
}

t.test('TCP: the server idles the connection out just as the instance sends; the request stays owed, its copy is a replay', async (t) => {
  const server = await startServer({ config: { connection: { idleTimeoutMs: 300, sweepIntervalMs: 20 } } });
  t.teardown(() => server.close());
  const app = await addApp(server.store, 'billing', 'open', Date.now(), pooledRandom());
  const { state, server: proxy } = hop(server.tcpPort);
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => proxy.close());
  const client = new RotorClient({ connect: tcpConnect({ port: (proxy.address() as net.AddressInfo).port }), retryDelayMs: 1 });
  t.teardown(() => client.close());
  await client.openSealed({ app: app.id, instance: 'host-1', key: app.key });
  t.equal((await client.request('GET', '/hello')).status, 200, 'the session works');
  state.hold = true;
  await until(() => state.held.length > 0, 'the idle timeout frame on its way back');
  const before = state.sent.length;
  const work = client.request('POST', '/reverse', { body: 'stressed' }).catch((err: unknown) => err);
  await until(() => state.sent.length > before, 'the request sent');
  const captured = new FrameParser().push(state.sent).frames.at(-1) as RequestFrame;
  t.equal(`${captured.verb} ${captured.path}`, 'POST /reverse', 'the wiretapper has the request');
  state.release();
  const refused = await work;
  t.equal((refused as RotorClientError).code, 'ROTOR_E_IDLE_TIMEOUT', 'the call fails with the idle timeout');
  t.equal((await client.request('GET', '/hello')).status, 200, 'the next call (the owed request went first)');
  const transport = await tcpConnect({ port: server.tcpPort })();
  const copy = await transport.request(captured);
  transport.close();
  t.equal(getHeader(copy, 'Error'), 'ROTOR_E_SEAL_REPLAYED', 'the captured copy is a replay, not a clone');
  t.equal((await client.request('GET', '/hello')).status, 200, 'the session lives');
});

t.test('a header a carrier renames or drops cannot be covered: refused alike on every carrier, and by the client library', async (t) => {
  const ran: string[] = [];
  const app: RotorApp = { routes: { 'POST /pay': (r) => (ran.push(r.header('X-Auth-Nonce') ?? '-'), { body: 'paid' }) }, tasks: {} };
  const { h, identity } = await setup(app);
  const s = await sealedSession(h, identity);
  t.throws(() => s.frame('POST', '/pay', '{}', [['X-Auth-Nonce', 'order-17']]), /cannot cover/, 'the client side refuses to make such a proof');
  const forged = s.frame('POST', '/pay', '{}').headers.filter(([n]) => n !== 'Seal-Proof');
  const listed: Header[] = [...forged, ['X-Auth-Nonce', 'order-17'], ['Seal-Headers', 'x-auth-nonce'], ['Seal-Proof', sealProof(s.key, s.nonce, 'POST', '/pay', Buffer.from('{}'), undefined, [['X-Auth-Nonce', 'order-17']])]];
  t.equal(error(await h.send('POST', '/pay', listed, '{}')), 'ROTOR_E_SEAL_PROOF_WRONG', 'the server refuses it as a TCP frame too');
  t.same(ran, [], 'nothing ran');
});

t.test('the client library over HTTP: a header value with blanks around it is proven as the wire keeps it', async (t) => {
  const echo: RotorApp = { routes: { 'GET /echo': (r) => ({ body: `[${r.header('X-Note')}]` }) }, tasks: {} };
  const server = await startServer({ app: echo });
  t.teardown(() => server.close());
  const app = await addApp(server.store, 'billing', 'open', Date.now(), pooledRandom());
  const client = new RotorClient({ connect: httpConnect(`http://127.0.0.1:${server.httpPort}`) });
  t.teardown(() => client.close());
  await client.openSealed({ app: app.id, instance: 'host-1', key: app.key });
  const reply = await client.request('GET', '/echo', { headers: { 'X-Note': ' padded ' } });
  t.same([reply.status, reply.body.toString()], [200, '[padded]'], 'an honest request is not refused');
});

t.test('an instance removed from a listed app and listed again opens and works at once', async (t) => {
  const { h, app, identity } = await setup(exampleApp(), {}, 'listed');
  await addInstance(h.store, app.id, 'host-1', h.clock.now);
  const first = await sealedSession(h, identity);
  await removeInstance(h.store, app.id, 'host-1');
  h.clock.now += 5_000;
  t.equal(error(await first.send('GET', '/hello')), 'ROTOR_E_INSTANCE_UNKNOWN', 'removed: its session ends');
  await addInstance(h.store, app.id, 'host-1', h.clock.now);
  const second = await sealedSession(h, identity);
  t.equal(error(await second.send('GET', '/hello')), undefined, 'listed again: a new session works, no refusal held over');
});

t.test('a seat-holding sealed session ended as unregistered gives its seat back', async (t) => {
  const { h, app, identity } = await setup(exampleApp(), {}, 'listed');
  await h.store.putPool({ name: 'p', seats: 1, perUser: 0, heartbeatMs: 60_000, maxHoldMs: null, queueLimit: 10, perUserQueueLimit: 10, createdAt: 0 });
  await addInstance(h.store, app.id, 'host-1', h.clock.now);
  const s = await sealedSession(h, identity);
  t.equal((await s.send('POST', '/rotor/seats/p')).frame.status, 200, 'a seat taken');
  await removeInstance(h.store, app.id, 'host-1');
  h.clock.now += 5_000;
  t.equal(error(await s.send('GET', '/hello')), 'ROTOR_E_INSTANCE_UNKNOWN', 'the session ends');
  t.same((await h.store.loadSeats('p'))?.holders ?? [], [], 'its seat is back');
});

/**
 * Hand-over (spec §11) at the dispatcher: a's reply hands over to b, b checks the token offline
 * and opens a session of its own; every refusal with its code; the parent's end reaching b
 * through a's revocation list; the body of a refused hand-over never parsed; no usable hand-over
 * token at rest, and the replay byte for byte.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbStore } from '../../src/store/lmdb.ts';
import type { Store } from '../../src/store/types.ts';
import { signedDocument, HandOverKeys, newHandOverKey, parseHandOver, spkiBase64 } from '../../src/handover/index.ts';
import { parseEnvelope } from '../../src/client/html.ts';
import { renderEnvelope } from '../../src/transport/html.ts';
import { getHeader } from '../../src/wire/index.ts';
import { errorOf, handOverLogin, pair, T0 } from './helpers.ts';

t.test('a reply hands over; the peer opens a rotating session linked to the parent', async (t) => {
  const p = await pair();
  const token = await p.login();
  const reply = await p.a.send('GET', '/go', [['Token', token]]);
  t.equal(reply.status, 200);
  t.equal(reply.body?.toString(), 'go on');
  t.strictSame(
    reply.headers.map(([name]) => name),
    ['Token', 'Out-of-band', 'Hand-over'],
    'the next Token, then where to go and the token for it',
  );
  t.equal(getHeader(reply, 'Out-of-band'), 'tcp://127.0.0.1:4001');
  const handOver = getHeader(reply, 'Hand-over')!;
  t.match(handOver, /^h1\.ha1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
  const { claims } = parseHandOver(handOver);
  t.match(claims, { issuer: 'a', audience: 'b', user: 'alice', issued: T0 / 1000, expires: T0 / 1000 + 900 });

  const login = await handOverLogin(p.b, handOver);
  t.equal(login.status, 200, 'logged in at b');
  let next = getHeader(login, 'Token')!;
  for (let i = 0; i < 3; i++) {
    const meta = await p.b.send('GET', '/meta', [['Token', next]]);
    t.equal(meta.status, 200, `exchange ${i + 1} at b`);
    t.strictSame(JSON.parse(meta.body!.toString()), { home: 'a', parent: claims.parent });
    const rotated = getHeader(meta, 'Token')!;
    t.not(rotated, next, 'rotates');
    next = rotated;
  }
  t.equal(errorOf(await handOverLogin(p.b, handOver)), 'ROTOR_E_HANDOVER_REUSED', 'single use');
  const hello = await p.a.send('GET', '/hello', [['Token', getHeader(reply, 'Token')!]]);
  t.equal(hello.status, 200, 'the home session rotates on as before');
});

t.test('a hand-over token lives 15 minutes at most, and never past its parent token', async (t) => {
  const p = await pair({ config: { session: { tokenTtlMinutes: 5 } } });
  const { handOver } = await p.handOverFrom();
  t.equal(parseHandOver(handOver).claims.expires, T0 / 1000 + 300, 'the parent token’s 5 minutes');
  p.clock.now += 300_000;
  t.equal(errorOf(await handOverLogin(p.b, handOver)), 'ROTOR_E_HANDOVER_EXPIRED');

  const q = await pair();
  const fresh = await q.handOverFrom();
  q.clock.now += 15 * 60_000 - 1000;
  t.equal((await handOverLogin(q.b, fresh.handOver)).status, 200, 'a second before its 15 minutes');
  const late = await q.handOverFrom();
  q.clock.now += 15 * 60_000;
  t.equal(errorOf(await handOverLogin(q.b, late.handOver)), 'ROTOR_E_HANDOVER_EXPIRED', 'at its 15 minutes');
});

t.test('every byte of the claims and of the signature is covered', async (t) => {
  const p = await pair();
  const { handOver } = await p.handOverFrom();
  const firstClaims = handOver.indexOf('.', 3) + 1;
  const codes = new Set<string | undefined>();
  let tried = 0;
  for (let i = firstClaims; i < handOver.length; i++) {
    if (handOver[i] === '.') continue;
    const swapped = handOver[i] === 'A' ? 'B' : 'A';
    const altered = handOver.slice(0, i) + swapped + handOver.slice(i + 1);
    codes.add(errorOf(await handOverLogin(p.b, altered)));
    tried++;
  }
  t.ok(tried > 150, `${tried} altered tokens`);
  t.strictSame([...codes], ['ROTOR_E_HANDOVER_INVALID'], 'each refused as invalid');
  for (const bad of ['', 'h1', 'h2' + handOver.slice(2), handOver + '.x', handOver.replace(/\.[^.]+$/, '.' + 'A'.repeat(86)), handOver + '=', handOver.replace('.', '..'), 'x'.repeat(2000)]) {
    t.equal(errorOf(await handOverLogin(p.b, bad)), 'ROTOR_E_HANDOVER_INVALID', `malformed: ${bad.slice(0, 12)}…`);
  }
  t.equal((await handOverLogin(p.b, handOver)).status, 200, 'the genuine token still works: none of that spent it');
});

t.test('audience, home, issuer and key ids', async (t) => {
  const p = await pair();
  const forC = await p.handOverFrom(undefined, 'c');
  t.equal(errorOf(await handOverLogin(p.b, forC.handOver)), 'ROTOR_E_HANDOVER_AUDIENCE', 'made for c');
  const { handOver } = await p.handOverFrom();
  t.equal(errorOf(await handOverLogin(p.b, handOver, 'z')), 'ROTOR_E_HANDOVER_INVALID', 'Home is not its issuer');
  t.equal(errorOf(await p.b.send('POST', '/rotor/login', [['Hand-over', handOver]])), 'ROTOR_E_HANDOVER_INVALID', 'no Home');

  const other = newHandOverKey(T0, 'ha1');
  const unknownKey = await pair({ bTrusts: { ha2: spkiBase64(other.publicKey) } });
  const token = await unknownKey.handOverFrom();
  t.equal(errorOf(await handOverLogin(unknownKey.b, token.handOver)), 'ROTOR_E_HANDOVER_INVALID', 'a key id b does not know');
  const wrongKey = await pair({ bTrusts: { ha1: spkiBase64(other.publicKey) } });
  const forged = await wrongKey.handOverFrom();
  t.equal(errorOf(await handOverLogin(wrongKey.b, forged.handOver)), 'ROTOR_E_HANDOVER_INVALID', 'the key id b knows, another key');
  t.equal(errorOf(await handOverLogin(p.a, handOver)), 'ROTOR_E_HANDOVER_INVALID', 'a server that is not a peer of the issuer (a itself)');
});

t.test('b learns a’s keys from its signed list, and forgets a key a dropped', async (t) => {
  const old = newHandOverKey(T0, 'ha1');
  const fresh = newHandOverKey(T0, 'ha2');
  const p = await pair({ aKeys: [old] });
  const byOld = await p.handOverFrom();
  const peer = p.b.handOver.peers.byName.get('a')!;
  const now = () => p.clock.now;
  // a's next list, signed by the old key b trusts, names both keys, the new one first (signing).
  const both = signedDocument({ issuer: 'a', issued: now() / 1000, revoked: [], publicKeys: new HandOverKeys([fresh, old]).publicKeys() }, new HandOverKeys([old]));
  await p.b.handOver.take(peer, both);
  t.strictSame([...peer.publicKeys.keys()].sort(), ['ha1', 'ha2'], 'both trusted');
  // A token of the new key (signed as a with that key would sign it).
  const { mintHandOver } = await import('../../src/handover/token.ts');
  const claims = { ...parseHandOver(byOld.handOver).claims, nonce: Buffer.alloc(16, 7).toString('base64url') };
  const byFresh = mintHandOver('ha2', fresh.privateKey, claims);
  t.equal((await handOverLogin(p.b, byFresh)).status, 200, 'a token of the new key');
  // Then a drops the old key: its list names only the new one.
  p.clock.now += 1000;
  await p.b.handOver.take(peer, signedDocument({ issuer: 'a', issued: now() / 1000, revoked: [], publicKeys: new HandOverKeys([fresh]).publicKeys() }, new HandOverKeys([fresh])));
  t.equal(errorOf(await handOverLogin(p.b, byOld.handOver)), 'ROTOR_E_HANDOVER_INVALID', 'a token of the dropped key');

  // Lists b refuses change nothing: another signer, an older list, a changed body, another issuer.
  const evil = newHandOverKey(T0, 'ha9');
  const refusedLists = [
    signedDocument({ issuer: 'a', issued: now() / 1000 + 5, revoked: [], publicKeys: new HandOverKeys([evil]).publicKeys() }, new HandOverKeys([evil])),
    signedDocument({ issuer: 'a', issued: now() / 1000 - 10, revoked: [], publicKeys: new HandOverKeys([old]).publicKeys() }, new HandOverKeys([fresh])),
    signedDocument({ issuer: 'x', issued: now() / 1000 + 5, revoked: [], publicKeys: new HandOverKeys([old]).publicKeys() }, new HandOverKeys([fresh])),
    signedDocument({ issuer: 'a', issued: now() / 1000 + 3600, revoked: [], publicKeys: new HandOverKeys([old]).publicKeys() }, new HandOverKeys([fresh])),
  ];
  const good = signedDocument({ issuer: 'a', issued: now() / 1000 + 5, revoked: [], publicKeys: new HandOverKeys([old]).publicKeys() }, new HandOverKeys([fresh]));
  refusedLists.push({ body: Buffer.from(good.body.toString().replace('"revoked":[]', '"revoked":[ ]')), signature: good.signature }, { body: good.body, signature: undefined as unknown as string });
  for (const [i, list] of refusedLists.entries()) await t.rejects(p.b.handOver.take(peer, list), Error, `list ${i + 1} refused`);
  t.strictSame([...peer.publicKeys.keys()], ['ha2'], 'still only the new key');
});

t.test('the body of a refused hand-over login is never parsed; an accepted one’s is, before the token is spent', async (t) => {
  const p = await pair();
  const { handOver } = await p.handOverFrom();
  const notMeta = 'this is no JSON';
  t.equal(errorOf(await p.b.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']], notMeta)), 'ROTOR_E_BAD_REQUEST', 'as a password login’s metadata: a bad request');
  const forged = handOver.slice(0, -2) + (handOver.endsWith('A') ? 'BA' : 'AA');
  t.equal(errorOf(await handOverLogin(p.b, forged, 'a', notMeta)), 'ROTOR_E_HANDOVER_INVALID', 'a refused token: its code, not BAD_REQUEST');
  p.clock.now += 16 * 60_000;
  t.equal(errorOf(await handOverLogin(p.b, handOver, 'a', notMeta)), 'ROTOR_E_HANDOVER_EXPIRED', 'an expired one: its code too');
  p.clock.now -= 16 * 60_000;
  t.equal(errorOf(await handOverLogin(p.b, handOver, 'a', notMeta)), 'ROTOR_E_BAD_REQUEST', 'a good token with bad metadata: a bad request');
  const ok = await handOverLogin(p.b, handOver, 'a', '{"seat":"12A","home":"elsewhere"}', [['Content-Type', 'application/json']]);
  t.equal(ok.status, 200, 'the token was not spent by the bad request');
  const meta = await p.b.send('GET', '/meta', [['Token', getHeader(ok, 'Token')!]]);
  t.match(JSON.parse(meta.body!.toString()), { seat: '12A', home: 'a' }, 'the body is the initial metadata; home and parent are the token’s');
});

t.test('the parent ends: its list names it, b refuses its tokens and revokes what they opened', async (t) => {
  const p = await pair();
  const { handOver, next, parent } = await p.handOverFrom();
  const login = await handOverLogin(p.b, handOver);
  const child = getHeader(login, 'Token')!;
  const second = await p.handOverFrom(next);
  t.strictSame(JSON.parse((await p.a.handOver.document(p.clock.now)).body.toString()).revoked, [], 'nothing listed while it lives');
  const logout = await p.a.send('POST', '/rotor/logout', [['Token', second.next]]);
  t.equal(logout.status, 200);
  const listed = JSON.parse((await p.a.handOver.document(p.clock.now)).body.toString());
  t.strictSame(listed.revoked, [parent], 'listed once it ended');
  const before = await handOverLogin(p.b, second.handOver);
  t.equal(before.status, 200, 'b learns of the end only from its pull: a token used before then is taken');
  await p.pull();
  t.equal(errorOf(await p.b.send('GET', '/hello', [['Token', child]])), 'ROTOR_E_SESSION_REVOKED', 'the child is revoked by the pull');
  t.equal(errorOf(await p.b.send('GET', '/hello', [['Token', getHeader(before, 'Token')!]])), 'ROTOR_E_SESSION_REVOKED', 'and so is the one opened just before it');
  const late = await p.a.handOver.document(p.clock.now);
  t.ok(late.body.includes(parent));
  p.clock.now += 15 * 60_000 + 1;
  t.strictSame(JSON.parse((await p.a.handOver.document(p.clock.now)).body.toString()).revoked, [], 'listed for 15 minutes');
});

t.test('a parent’s listed end refuses its unused tokens at b', async (t) => {
  const p = await pair();
  const { handOver, next } = await p.handOverFrom();
  await p.a.send('POST', '/rotor/logout', [['Token', next]]);
  await p.pull();
  t.equal(errorOf(await handOverLogin(p.b, handOver)), 'ROTOR_E_HANDOVER_REVOKED');
  t.equal(await p.b.store.listRecords('handover-nonce').then((r) => r.length), 0, 'a refused token is not spent');
});

t.test('on one shared store the peer reads the parent itself: no pull needed', async (t) => {
  const p = await pair({ shared: true });
  const { handOver, next } = await p.handOverFrom();
  await p.a.send('POST', '/rotor/logout', [['Token', next]]);
  t.equal(errorOf(await handOverLogin(p.b, handOver)), 'ROTOR_E_HANDOVER_REVOKED');
});

t.test('a peer the handler names that is not in the peers file is a handler bug; the exchange still rotates', async (t) => {
  const p = await pair();
  const reply = await p.a.send('GET', '/go?to=nobody', [['Token', await p.login()]]);
  t.equal(reply.status, 500);
  t.equal(errorOf(reply), 'ROTOR_E_HANDLER_FAILED');
  t.ok(getHeader(reply, 'Token'), 'with its next Token');
  t.equal(getHeader(reply, 'Hand-over'), undefined);
  t.equal(await p.a.store.listRecords('handover-issued').then((r) => r.length), 0, 'nothing recorded');
});

t.test('no usable hand-over token at rest; the replay is the same bytes', async (t) => {
  const p = await pair();
  const token = await p.login();
  const reply = await p.a.send('GET', '/go', [['Token', token]]);
  const handOver = getHeader(reply, 'Hand-over')!;
  const signature = handOver.slice(handOver.lastIndexOf('.') + 1);
  const session = (await p.a.store.listSessions!()[Symbol.asyncIterator]().next()).value;
  const kept = session.prev.reply.toString('latin1');
  t.ok(kept.includes(handOver.slice(0, handOver.lastIndexOf('.'))), 'the kept copy has the claims');
  t.notOk(kept.includes(signature), 'but not the signature');
  const again = await p.a.send('GET', '/go', [['Token', token]]);
  t.same(again.bytes, reply.bytes, 'the replay, byte for byte');
  t.equal((await handOverLogin(p.b, getHeader(again, 'Hand-over')!)).status, 200, 'its hand-over works');
});

t.test('the HTML envelope links the hand-over in its head', async (t) => {
  const p = await pair();
  const reply = await p.a.send('GET', '/go', [['Token', await p.login()]]);
  const page = renderEnvelope(reply);
  const handOver = getHeader(reply, 'Hand-over')!;
  const head = page.slice(0, page.indexOf('</head>'));
  t.ok(head.includes('<link rel="out-of-band" href="tcp://127.0.0.1:4001">'));
  t.ok(head.includes(`<link rel="hand-over" href="data:,${handOver}">`));
  t.same(parseEnvelope(page).headers, reply.headers, 'the client reads the same headers back');
});

t.test('GET /rotor/revocations is served on the HTTP carrier only', async (t) => {
  const p = await pair();
  const http = await p.a.rotor.dispatch({ kind: 'request', verb: 'GET', path: '/rotor/revocations', headers: [], body: undefined }, { carrier: 'http', peer: '127.0.0.1' });
  t.equal(http.status, 200);
  t.match(getHeader(http.frame, 'Signature'), /^ha1\.[A-Za-z0-9_-]{86}$/);
  t.equal(getHeader(http.frame, 'Content-Type'), 'application/json');
  const tcp = await p.a.rotor.dispatch({ kind: 'request', verb: 'GET', path: '/rotor/revocations', headers: [], body: undefined }, { carrier: 'tcp', peer: '127.0.0.1' });
  t.equal(tcp.status, 404);
});

t.test('the sweep forgets spent tokens past their expiry and ended parents past their 15 minutes', async (t) => {
  const p = await pair();
  const { handOver, next } = await p.handOverFrom();
  await handOverLogin(p.b, handOver);
  await p.a.send('POST', '/rotor/logout', [['Token', next]]);
  const count = async (side: typeof p.a, kind: 'handover-nonce' | 'handover-ended' | 'handover-issued' | 'handover-child') => (await side.store.listRecords(kind)).length;
  t.strictSame([await count(p.b, 'handover-nonce'), await count(p.a, 'handover-ended'), await count(p.a, 'handover-issued'), await count(p.b, 'handover-child')], [1, 1, 0, 1]);
  await p.pull();
  p.clock.now += 15 * 60_000 + 1;
  await p.a.handOver.sweep(p.clock.now);
  await p.b.handOver.sweep(p.clock.now);
  t.strictSame([await count(p.b, 'handover-nonce'), await count(p.a, 'handover-ended'), await count(p.b, 'handover-child')], [0, 0, 0], 'all forgotten');
  // A handed-over session that ended while its listing failed is listed by the sweep.
  const q = await pair();
  const other = await q.handOverFrom();
  const loaded = (await q.a.store.loadSession(other.parent))!;
  t.ok(await q.a.store.commitSession({ ...loaded, revoked: { at: q.clock.now, reason: 'logout' } }, loaded.rev, []), 'ended behind the hook’s back');
  await q.a.handOver.sweep(q.clock.now);
  t.strictSame(JSON.parse((await q.a.handOver.document(q.clock.now)).body.toString()).revoked, [other.parent]);
});

t.test('the same on LMDB stores: the catalog kinds need nothing of their own', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-handover-lmdb-'));
  const opened: Store[] = [];
  t.teardown(async () => {
    await Promise.all(opened.map((store) => store.close()));
    rmSync(dir, { recursive: true, force: true });
  });
  const p = await pair({ openStore: async () => (opened[opened.length] = await LmdbStore.open(join(dir, String(opened.length)))) });
  const { handOver, next, parent } = await p.handOverFrom();
  const login = await handOverLogin(p.b, handOver);
  t.equal(login.status, 200);
  t.equal(errorOf(await handOverLogin(p.b, handOver)), 'ROTOR_E_HANDOVER_REUSED');
  await p.a.send('POST', '/rotor/logout', [['Token', next]]);
  t.strictSame(JSON.parse((await p.a.handOver.document(p.clock.now)).body.toString()).revoked, [parent]);
  await p.pull();
  t.equal(errorOf(await p.b.send('GET', '/hello', [['Token', getHeader(login, 'Token')!]])), 'ROTOR_E_SESSION_REVOKED');
  p.clock.now += 15 * 60_000 + 1;
  await p.a.handOver.sweep(p.clock.now);
  await p.b.handOver.sweep(p.clock.now);
  t.strictSame((await Promise.all([p.b.store.listRecords('handover-nonce'), p.a.store.listRecords('handover-ended'), p.b.store.listRecords('handover-child')])).map((r) => r.length), [0, 0, 0]);
});

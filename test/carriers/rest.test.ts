/**
 * Note 004's token API: the original's contract (status codes, bodies, JSON shapes), and where
 * rotor answers differently because every call goes through rotor.dispatch.
 */
import t from 'tap';
import { ConfigError } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { serve } from '../../src/server/index.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { Store } from '../../src/store/types.ts';
import { parseDuration, TokenApi } from '../../src/transport/rest.ts';
import { deriveQuota, NO_USE } from '../../src/quotas/machine.ts';
import { templateRecord } from '../../src/quotas/templates.ts';
import type { CodeRecord } from '../../src/quotas/types.ts';
import type { SessionState } from '../../src/session/types.ts';
import { captureLog, startServer, testApp, TEST_CONFIG } from './helpers.ts';

const capture = captureLog();
const server = await startServer({ tokenApi: { dump: true }, log: capture.log });
t.teardown(() => server.close());
const base = `http://127.0.0.1:${server.httpPort}`;

const call = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
  const response = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': contentType },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, type: response.headers.get('content-type'), error: response.headers.get('error'), text: await response.text(), headers: response.headers };
};

const create = async (meta: Record<string, unknown>) => {
  const response = await call('POST', '/token', { meta });
  if (response.status !== 200) throw new Error(`POST /token: ${response.status} ${response.text}`);
  return response.text;
};

t.test('create, exchange, replay, reuse', async (t) => {
  const created = await call('POST', '/token', { meta: { name: 'My user', year: 2022 } });
  t.equal(created.status, 200, 'POST /token: 200');
  t.equal(created.type, 'text/plain; charset=utf-8', 'the token as text');
  const t1 = created.text;

  const exchanged = await call('PUT', '/token', { token: t1, meta: { period: 11 } });
  t.equal(exchanged.status, 200);
  t.equal(exchanged.type, 'application/json');
  const ok = JSON.parse(exchanged.text).Ok;
  t.same(ok.meta, { name: 'My user', year: 2022, period: 11 }, 'meta merged key by key');
  t.not(ok.token, t1, 'a new token');

  const again = await call('PUT', '/token', { token: t1, meta: { period: 11 } });
  t.equal(again.text, exchanged.text, 'the same PUT with the same old token: the identical answer (rotor replay)');
  const otherMeta = await call('PUT', '/token', { token: t1, meta: { period: 12 } });
  t.equal(otherMeta.text, exchanged.text, 'a replay answers what was answered, whatever the new body says');

  const next = await call('PUT', '/token', { token: ok.token });
  const ok2 = JSON.parse(next.text).Ok;
  t.same(ok2.meta, { name: 'My user', year: 2022, period: 11 }, 'meta is optional');

  const reused = await call('PUT', '/token', { token: t1 });
  t.same([reused.status, JSON.parse(reused.text), reused.error], [200, { Err: 'InvalidToken' }, 'ROTOR_E_TOKEN_REUSED'], 'an older token: InvalidToken…');
  const revoked = await call('PUT', '/token', { token: ok2.token });
  t.same([JSON.parse(revoked.text), revoked.error], [{ Err: 'InvalidToken' }, 'ROTOR_E_SESSION_REVOKED'], '…and the session is revoked');

  const unknown = await call('PUT', '/token', { token: 'not-a-token' });
  t.same(JSON.parse(unknown.text), { Err: 'InvalidToken' }, 'a made-up token');
  const control = await call('PUT', '/token', { token: 'a\nb' });
  t.same([JSON.parse(control.text), control.error], [{ Err: 'InvalidToken' }, 'ROTOR_E_TOKEN_INVALID'], 'a token no header could carry');
});

t.test('delete', async (t) => {
  const t1 = await create({ a: 1 });
  const deleted = await call('DELETE', '/token', { token: t1 });
  t.same([deleted.status, deleted.text], [202, ''], 'DELETE /token: 202');
  t.same(JSON.parse((await call('PUT', '/token', { token: t1 })).text), { Err: 'InvalidToken' }, 'gone');
  t.equal((await call('DELETE', '/token', { token: t1 })).status, 202, 'deleting it again: 202, as in the original');
  t.equal((await call('DELETE', '/token', { token: 'nonsense' })).status, 202, 'an unknown token: 202');

  const t2 = await create({ b: 1 });
  const t3 = JSON.parse((await call('PUT', '/token', { token: t2 })).text).Ok.token;
  t.equal((await call('DELETE', '/token', { token: t2 })).status, 202, 'the previous token, before its successor was used…');
  t.same(JSON.parse((await call('PUT', '/token', { token: t3 })).text), { Err: 'InvalidToken' }, '…deletes the session, successor and all');
});

t.test('DELETE with the previous token ends the session and never runs the work its lost reply held', async (t) => {
  const t1 = await create({ shop: 1 });
  // POST /reverse defers work; its 202 (with t2) is lost, so the client still holds t1.
  const work = await fetch(`${base}/reverse`, { method: 'POST', headers: { Token: t1 }, body: 'stressed' });
  t.equal(work.status, 202, 'the work is held until the ack');
  const taskId = work.headers.get('task')!;
  const t2 = work.headers.get('token')!;
  await work.arrayBuffer();
  t.equal((await call('DELETE', '/token', { token: t1 })).status, 202, 'DELETE with t1: 202');
  await server.server.rotor.tasks.idle();
  t.equal(await server.store.loadTask(taskId), undefined, 'the held task was never released');
  const after = await call('PUT', '/token', { token: t2 });
  t.same([JSON.parse(after.text), after.error], [{ Err: 'InvalidToken' }, 'ROTOR_E_SESSION_REVOKED'], 'the successor is dead too');
});

t.test('the original JSON extractor’s refusals: 415, 400, 422; and 405', async (t) => {
  const cases: Array<[string, Promise<Awaited<ReturnType<typeof call>>>, number]> = [
    ['no content type', call('POST', '/token', '{"meta":{}}', 'text/plain'), 415],
    ['malformed JSON', call('POST', '/token', '{"meta":', 'application/json'), 400],
    ['no body at all', call('PUT', '/token'), 415],
    ['meta missing', call('POST', '/token', { other: 1 }), 422],
    ['meta not an object', call('POST', '/token', { meta: [1, 2] }), 422],
    ['token not a string', call('PUT', '/token', { token: 7 }), 422],
    ['PUT meta not an object (the original ignored it)', call('PUT', '/token', { token: 'x', meta: 'y' }), 422],
    ['DELETE without token', call('DELETE', '/token', {}), 422],
    ['GET /token', call('GET', '/token'), 405],
  ];
  for (const [name, pending, status] of cases) t.equal((await pending).status, status, name);
  t.equal((await call('GET', '/token')).headers.get('allow'), 'POST, PUT, DELETE', 'Allow');
  t.equal((await call('POST', '/token', { meta: {} }, 'application/vnd.example+json')).status, 200, 'a +json type is JSON');
});

t.test('metadata over the limit: the exchange still rotates, and says so', async (t) => {
  const t1 = await create({ a: 1 });
  const big = await call('PUT', '/token', { token: t1, meta: { filler: 'x'.repeat(3000) } });
  const bigger = await call('PUT', '/token', { token: big.headers.get('token') ?? JSON.parse(big.text).Ok.token, meta: { more: 'y'.repeat(3000) } });
  t.same([bigger.status, JSON.parse(bigger.text), bigger.error], [400, { Err: 'ROTOR_E_BAD_REQUEST' }, 'ROTOR_E_BAD_REQUEST'], 'a rotor code, not InvalidToken');
  const successor = bigger.headers.get('token');
  t.ok(successor, 'with the new token in the Token header');
  const after = JSON.parse((await call('PUT', '/token', { token: successor })).text).Ok;
  t.same(after.meta, { a: 1, filler: 'x'.repeat(3000) }, 'which works, with the metadata unchanged');
});

t.test('HEAD /dump', async (t) => {
  const token = await create({ dumped: 'yes' });
  const before = capture.lines.length;
  const dump = await call('HEAD', '/dump');
  t.equal(dump.status, 202, '202');
  const lines = capture.lines.slice(before).filter((line) => line.msg === 'DUMP');
  const entries = lines.flatMap((line) => line.dump as Array<{ expires: string; meta: Record<string, unknown> }>);
  const mine = entries.find((entry) => entry.meta.dumped === 'yes');
  t.ok(mine, 'the metadata is in the log');
  t.ok(mine && Date.parse(mine.expires) > Date.now(), 'with its expiry');
  t.equal(lines.at(-1)?.last, true, 'and an end marker');
  t.equal(entries.some((entry) => JSON.stringify(entry).includes(token)), false, 'no token in the dump');
  t.equal((await call('GET', '/dump')).status, 405, 'only HEAD');

  const plain = await startServer({ tokenApi: true });
  t.teardown(() => plain.close());
  t.equal((await fetch(`http://127.0.0.1:${plain.httpPort}/dump`, { method: 'HEAD' })).status, 404, 'not enabled: 404');

  const { log, lines: noListLines } = captureLog();
  const store = new MemoryStore() as Store;
  const blind: Store = Object.assign(Object.create(Object.getPrototypeOf(store)), store, { listSessions: undefined });
  const api = new TokenApi({ dispatch: () => Promise.reject(new Error('unused')) }, blind, log, { dump: true });
  const answer = await api.handle({ method: 'HEAD', url: '/dump', contentType: undefined, body: undefined });
  t.equal(answer.status, 202, 'a store that cannot list: still 202…');
  t.match(noListLines.at(-1), { msg: /cannot list its sessions/ }, '…and the log says why nothing was dumped');
});

t.test('HEAD /dump: a metered session with its template and bytes used; an ended one with why it ended; other revoked ones left out', async (t) => {
  const { log, lines } = captureLog();
  const store = new MemoryStore();
  const now = Date.UTC(2026, 10, 24);
  const template = templateRecord('day-pass', { maxBytesTotal: 1_000_000 }, now);
  const code: CodeRecord = { id: 'code-id', lot: 'desk', template: 'day-pass', issuer: 'op', owner: '', issuedAt: now, status: 'active', firstUsedAt: now, used: NO_USE, session: 'metered', connections: 1, lastEnd: null };
  const quota = { ...deriveQuota(template, code, now, 60_000, now + 60_000), bytesIn: 321, bytesOut: 4_567 };
  const session = (id: string, over: Partial<SessionState>): SessionState => ({ id, user: 'alice', rev: 0, gen: 1, tokenHash: 'h', acked: false, prev: null, held: [], meta: { id }, createdAt: now, expiresAt: now + 60_000, revoked: null, quota: null, seal: null, ...over });
  await store.createSession(session('metered', { quota }));
  await store.createSession(session('plain', {}));
  await store.createSession(session('revoked', { revoked: { at: now, reason: 'deleted' } }));
  await store.createSession(session('spent', { quota: { ...quota, endedBy: 'bytes-total' }, expiresAt: null, revoked: { at: now, reason: 'quota' } }));
  await store.createSession(session('idle', { quota: { ...quota, tokenExpiresAt: now - 1 }, expiresAt: null }));
  const api = new TokenApi({ dispatch: () => Promise.reject(new Error('unused')) }, store, log, { dump: true, now: () => now });
  t.equal((await api.handle({ method: 'HEAD', url: '/dump', contentType: undefined, body: undefined })).status, 202);
  const entries = lines.filter((line) => line.msg === 'DUMP').flatMap((line) => line.dump as Array<{ meta: { id: string }; quota?: unknown }>);
  const byId = new Map(entries.map((entry) => [entry.meta.id, entry]));
  t.same(byId.get('metered'), { expires: new Date(now + 60_000).toISOString(), user: 'alice', meta: { id: 'metered' }, quota: { template: 'day-pass', bytesIn: 321, bytesOut: 4_567 } }, 'the quota: template and bytes used');
  t.equal(byId.get('plain')?.quota, undefined, 'a session without a code has no quota field');
  t.equal(byId.has('revoked'), false, 'a revoked session without a code is not dumped');
  t.same(byId.get('spent'), { expires: new Date(now + 60_000).toISOString(), user: 'alice', meta: { id: 'spent' }, quota: { template: 'day-pass', bytesIn: 321, bytesOut: 4_567 }, ended: { at: new Date(now).toISOString(), reason: 'bytes-total' } }, 'an ended metered session: why it ended');
  t.equal(byId.has('idle'), false, 'a metered session whose token has expired is not live, though its record is kept');
});

t.test('options: lifetime 30 min–96 h, purge 1 s–90 min', async (t) => {
  const start = (session: Record<string, unknown>) =>
    serve({ config: { ...TEST_CONFIG, session }, store: new MemoryStore(), app: testApp(), log: silentLogger(), http: { port: 0, tokenApi: true } });
  await t.rejects(start({ tokenTtlMinutes: 29 }), ConfigError, 'lifetime under 30 min');
  await t.rejects(start({ tokenTtlMinutes: 96 * 60 + 1 }), ConfigError, 'lifetime over 96 h');
  await t.rejects(start({ purgeIntervalMs: 999 }), ConfigError, 'purge under 1 s');
  await t.rejects(start({ purgeIntervalMs: 90 * 60_000 + 1 }), ConfigError, 'purge over 90 min');
  await t.rejects(start({ openTokenCreate: false }), ConfigError, 'token creation turned off explicitly');
  const fine = await start({ tokenTtlMinutes: 96 * 60, purgeIntervalMs: 1_000 });
  t.ok(fine.rotor.config.session.openTokenCreate, 'the token API opens token creation');
  await fine.close();
  t.equal(parseDuration('2h'), 7_200_000);
  t.equal(parseDuration('1h 30min'), 5_400_000);
  t.equal(parseDuration('1500ms'), 1_500);
  t.equal(parseDuration('3 days'), 259_200_000);
  t.throws(() => parseDuration('2 hours'), ConfigError);
  t.throws(() => parseDuration(''), ConfigError);
});

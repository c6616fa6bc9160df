/**
 * Access codes through the dispatcher (spec §10): logging in with a code, every exchange
 * counted, each limit ending the session with its own code, the code's counters surviving from
 * one connection to the next, and the refusals a login with a code gets.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { seededRandom } from '../../src/session/random.ts';
import { issueLot, templateRecord, type TemplateOptions } from '../../src/quotas/templates.ts';
import { codeId, normalizeCode } from '../../src/quotas/codes.ts';
import { revokeLot } from '../../src/quotas/lots.ts';
import type { CodeRecord } from '../../src/quotas/types.ts';
import { frameSize, getHeader } from '../../src/wire/index.ts';
import type { DeepPartial, RotorConfig } from '../../src/config/defaults.ts';
import { harness, type Harness } from '../server/harness.ts';

const MINUTE = 60_000;

async function setup(options: TemplateOptions, count = 1, config: DeepPartial<RotorConfig> = {}) {
  const h = await harness(exampleApp(), { session: { tokenTtlMinutes: 10 }, ...config });
  const template = templateRecord('pass', options, h.clock.now);
  await h.store.commitRecord('template', 'pass', template, 0);
  const issued = await issueLot(h.store, seededRandom(99), { id: 'front-desk', template, count, comment: 'test', issuer: 'op', owner: '', now: h.clock.now });
  return { h, codes: issued.codes };
}

async function codeRecord(h: Harness, code: string): Promise<CodeRecord> {
  return (await h.store.loadRecord<CodeRecord>('code', codeId(normalizeCode(code)!)))!.value;
}

/** A client of one code: its newest token, and what it sent and got, in frame bytes. */
function client(h: Harness) {
  let token = '';
  let bytes = 0;
  const send = async (verb: string, path: string, headers: [string, string][] = [], body?: string) => {
    const frame = { kind: 'request' as const, verb, path, headers: token ? [['Token', token] as [string, string], ...headers] : headers, body: body === undefined ? undefined : Buffer.from(body) };
    const reply = await h.send(verb, path, frame.headers, body);
    const next = getHeader(reply.frame, 'Token');
    if (next) {
      token = next;
      bytes += frameSize(frame) + reply.bytes.length;
    }
    return { ...reply, error: getHeader(reply.frame, 'Error'), limit: getHeader(reply.frame, 'Quota-Limit') };
  };
  const login = async (code: string) => {
    token = '';
    const reply = await h.send('POST', '/rotor/login', [['Code', code]]);
    token = getHeader(reply.frame, 'Token') ?? '';
    return { ...reply, error: getHeader(reply.frame, 'Error'), limit: getHeader(reply.frame, 'Quota-Limit') };
  };
  return { send, login, bytes: () => bytes, token: () => token };
}

t.test('a code logs in; every exchange is counted in frame bytes; the cap ends the session with its code', async (t) => {
  const { h, codes } = await setup({ maxBytesTotal: 3_000 });
  const c = client(h);
  const login = await c.login(codes[0].toLowerCase().replace(/-/g, ' '));
  t.equal(login.error, undefined, 'the code as typed, in lower case with spaces');
  t.equal(getHeader(login.frame, 'Quota-Template'), 'pass');
  t.equal((await codeRecord(h, codes[0])).status, 'active');
  const status = await c.send('GET', '/rotor/quota');
  const shown = JSON.parse(status.frame.body!.toString());
  const requestBytes = frameSize({ kind: 'request', verb: 'GET', path: '/rotor/quota', headers: [['Token', getHeader(login.frame, 'Token')!]], body: undefined });
  t.same(shown.used, { bytesIn: requestBytes, bytesOut: 0, usageSeconds: 0 }, 'the status counts its own request; its reply is counted after it');
  let reply = status;
  t.equal(shown.limits.bytesTotal, 3_000);
  let sent = 0;
  while (reply.error === undefined && sent++ < 100) reply = await c.send('POST', '/reverse', [], 'x'.repeat(200));
  t.equal(reply.error, 'ROTOR_E_QUOTA_BYTES_TOTAL', 'the cap ends it with the limit\'s own code');
  t.equal(reply.limit, 'bytes-total', 'and names the limit');
  t.equal(getHeader(reply.frame, 'Token'), undefined, 'no next token');
  const code = await codeRecord(h, codes[0]);
  t.equal(code.session, null, 'the code names no live session');
  t.equal(code.status, 'exhausted');
  t.same(code.lastEnd?.reason, 'bytes-total', 'the logout reason is kept');
  t.equal(code.used.bytesIn + code.used.bytesOut, c.bytes(), 'the code holds exactly the bytes of the processed exchanges');
  t.ok(c.bytes() <= 3_000 + reply.bytes.length + 400, 'passed by at most one reply');
  const after = await c.send('GET', '/rotor/quota');
  t.equal(after.error, 'ROTOR_E_SESSION_REVOKED', 'the ended session refuses its token');
  const again = await c.login(codes[0]);
  t.equal(again.error, 'ROTOR_E_CODE_SPENT', 'the code is used up');
  t.equal(again.limit, 'bytes-total');
});

t.test('a reusable code keeps its counters from one connection to the next; a single-use one is spent at logout', async (t) => {
  const { h, codes } = await setup({ maxBytesIn: 100_000 }, 1);
  const c = client(h);
  await c.login(codes[0]);
  await c.send('POST', '/reverse', [], 'y'.repeat(500));
  await c.send('POST', '/rotor/logout');
  const folded = await codeRecord(h, codes[0]);
  t.equal(folded.session, null);
  t.equal(folded.lastEnd?.reason, 'logout');
  t.equal(folded.status, 'active', 'reusable: still usable');
  t.ok(folded.used.bytesIn > 500, 'the first connection\'s bytes are the code\'s');
  await c.login(codes[0]);
  const shown = JSON.parse((await c.send('GET', '/rotor/quota')).frame.body!.toString());
  t.ok(shown.used.bytesIn > folded.used.bytesIn, 'the second connection starts from them');

  const single = await setup({ maxBytesIn: 100_000, reusable: false });
  const s = client(single.h);
  await s.login(single.codes[0]);
  await s.send('POST', '/rotor/logout');
  const spent = await s.login(single.codes[0]);
  t.equal(spent.error, 'ROTOR_E_CODE_SPENT');
  t.equal(spent.limit, 'connection', 'a single-use code is spent by its one connection');
});

t.test('a login sent again gets the same reply; a live connection makes the code in use until its token expires', async (t) => {
  const { h, codes } = await setup({ maxBytesTotal: 1_000_000 });
  const first = await h.send('POST', '/rotor/login', [['Code', codes[0]]]);
  const second = await h.send('POST', '/rotor/login', [['Code', codes[0]]]);
  t.same(second.bytes, first.bytes, 'the lost login reply comes back byte for byte');
  const c = client(h);
  await c.login(codes[0]);
  await c.send('GET', '/rotor/quota');
  const busy = await h.send('POST', '/rotor/login', [['Code', codes[0]]]);
  t.equal(getHeader(busy.frame, 'Error'), 'ROTOR_E_CODE_IN_USE', 'once its token is used, another login is in use');
  t.ok(Number(getHeader(busy.frame, 'Wait-for')) > 0, 'with when to try again');
  const before = (await codeRecord(h, codes[0])).session;
  h.clock.now += 11 * MINUTE;
  const next = await c.login(codes[0]);
  t.equal(next.error, undefined, 'after its token expired, the code opens a new connection');
  const code = await codeRecord(h, codes[0]);
  t.not(code.session, before);
  t.equal(code.lastEnd?.reason, 'replaced');
  t.ok(code.used.bytesIn > 0, 'the old connection was folded into the code');
  t.equal(code.connections, 2);
});

t.test('time limits with a fake clock: usage, connection, wall-clock, age', async (t) => {
  {
    const { h, codes } = await setup({ usageMs: 5 * MINUTE }, 1, { quotas: { idleGapSeconds: 60 } });
    const c = client(h);
    await c.login(codes[0]);
    // Ten exchanges 30 s apart: 5 minutes in use.
    let reply;
    for (let i = 0; i < 12; i++) {
      h.clock.now += 30_000;
      reply = await c.send('GET', '/rotor/quota');
      if (reply.error) break;
    }
    t.equal(reply?.error, 'ROTOR_E_QUOTA_USAGE_TIME');
    const idle = await setup({ usageMs: 5 * MINUTE }, 1, { quotas: { idleGapSeconds: 60 } });
    const d = client(idle.h);
    await d.login(idle.codes[0]);
    idle.h.clock.now += 9 * MINUTE;
    t.equal((await d.send('GET', '/rotor/quota')).error, undefined, 'a long idle gap counts only the idle gap');
  }
  {
    const { h, codes } = await setup({ connectionMs: 3 * MINUTE });
    const c = client(h);
    await c.login(codes[0]);
    h.clock.now += 3 * MINUTE;
    t.equal((await c.send('GET', '/rotor/quota')).error, 'ROTOR_E_QUOTA_CONNECTION_TIME');
    t.equal((await c.login(codes[0])).error, undefined, 'a reusable code may connect again after its connection time');
  }
  {
    const { h, codes } = await setup({ wallMs: 30 * MINUTE, connectionMs: 20 * MINUTE });
    const c = client(h);
    h.clock.now += 60 * MINUTE;
    await c.login(codes[0]);
    h.clock.now += 8 * MINUTE;
    await c.send('GET', '/rotor/quota');
    await c.send('POST', '/rotor/logout');
    h.clock.now += 23 * MINUTE;
    const late = await c.login(codes[0]);
    t.equal(late.error, 'ROTOR_E_CODE_EXPIRED', 'wall-clock time runs from the first use, across connections');
    t.equal(late.limit, 'wall-time');
  }
  {
    const { h, codes } = await setup({ ageMs: 60 * MINUTE });
    h.clock.now += 61 * MINUTE;
    const c = client(h);
    const old = await c.login(codes[0]);
    t.equal(old.error, 'ROTOR_E_CODE_EXPIRED', 'an unused code ages from its issue');
    t.equal(old.limit, 'age');
  }
});

t.test('refusals: a code nobody issued, a revoked lot, another node, an owner\'s code', async (t) => {
  const { h, codes } = await setup({ maxBytesTotal: 10_000, nodes: ['lobby'] }, 2, { quotas: { node: 'lobby' } });
  const origin = { carrier: 'tcp' as const, peer: '192.0.2.7' };
  const dispatch = async (headers: [string, string][]) => getHeader((await h.rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers, body: undefined }, origin)).frame, 'Error');
  t.equal(await dispatch([['Code', 'AAAA-BBBB-CCCC-DDDD']]), 'ROTOR_E_CODE_INVALID');
  t.equal(await dispatch([['Code', 'not a code']]), 'ROTOR_E_CODE_INVALID');
  let refusal: string | undefined;
  for (let i = 0; i < 40 && refusal !== 'ROTOR_E_RATE_LIMITED'; i++) refusal = await dispatch([['Code', `AAAA-BBBB-CCCC-${String(i).padStart(4, '0')}`]]);
  t.equal(refusal, 'ROTOR_E_RATE_LIMITED', 'wrong codes from one address are throttled like wrong passwords');
  t.equal(await dispatch([['Code', codes[0]]]), 'ROTOR_E_RATE_LIMITED', 'and so is that address\'s next good code, until the wait is over');
  const other = { carrier: 'tcp' as const, peer: '192.0.2.8' };
  t.equal(getHeader((await h.rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['Code', codes[0]]], body: undefined }, other)).frame, 'Error'), undefined, 'another address is not held up');

  await revokeLot(h.store, 'front-desk', h.clock.now, 60_000);
  t.equal(getHeader((await h.send('POST', '/rotor/login', [['Code', codes[1]]])).frame, 'Error'), 'ROTOR_E_CODE_REVOKED');

  const elsewhere = await setup({ maxBytesTotal: 10_000, nodes: ['lobby'] }, 1, { quotas: { node: 'pool-bar' } });
  t.equal(getHeader((await elsewhere.h.send('POST', '/rotor/login', [['Code', elsewhere.codes[0]]])).frame, 'Error'), 'ROTOR_E_NODE_NOT_ALLOWED');

  const owned = await harness(exampleApp());
  const template = templateRecord('pass', { maxBytesTotal: 10_000 }, owned.clock.now);
  await owned.store.commitRecord('template', 'pass', template, 0);
  const mine = await issueLot(owned.store, seededRandom(5), { id: 'mine', template, count: 1, comment: '', issuer: 'op', owner: 'alice', now: owned.clock.now });
  t.equal(getHeader((await owned.send('POST', '/rotor/login', [['Code', mine.codes[0]]])).frame, 'Error'), 'ROTOR_E_CODE_INVALID', 'a code issued to alice is no code without her password');
  const withPassword = await owned.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw'], ['Code', mine.codes[0]]]);
  t.ok(getHeader(withPassword.frame, 'Token'), 'with it, it logs in');
});

t.test('metered password logins: the user\'s own code is reused, one is made if policy allows, else a new code is needed', async (t) => {
  const h = await harness(exampleApp(), { quotas: { passwordTemplate: 'pass', mintPerUser: 1 } });
  await h.store.commitRecord('template', 'pass', templateRecord('pass', { maxBytesIn: 2_000, reusable: true }, h.clock.now), 0);
  const first = await h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']]);
  t.equal(getHeader(first.frame, 'Quota-Template'), 'pass', 'a code was made for alice');
  const token = getHeader(first.frame, 'Token')!;
  const out = await h.send('POST', '/rotor/logout', [['Token', token]]);
  t.equal(getHeader(out.frame, 'Error'), undefined);
  const second = await h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']]);
  t.equal(getHeader(second.frame, 'Quota-Template'), 'pass', 'her code is used again');
  const owner = await h.store.loadRecord<{ codes: string[]; minted: number }>('owner', 'alice');
  t.same([owner?.value.codes.length, owner?.value.minted], [1, 1], 'no second code was made');
  // Spend it.
  let next = getHeader(second.frame, 'Token')!;
  let error: string | undefined;
  for (let i = 0; i < 40 && !error; i++) {
    const reply = await h.send('POST', '/reverse', [['Token', next]], 'z'.repeat(300));
    error = getHeader(reply.frame, 'Error');
    next = getHeader(reply.frame, 'Token') ?? next;
  }
  t.equal(error, 'ROTOR_E_QUOTA_BYTES_IN');
  const refused = await h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']]);
  t.equal(getHeader(refused.frame, 'Error'), 'ROTOR_E_QUOTA_NEEDS_CODE', 'used up, and no more may be made: she needs a new code');
});

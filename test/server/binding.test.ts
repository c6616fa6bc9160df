/**
 * Client binding (spec §2, session.bindClients): every token of a session is bound to the
 * client that logged in — its Client-Info, its source address, or both — and a request from
 * another is refused before the store, without rotating or revoking anything.
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import type { Origin } from '../../src/transport/admission.ts';
import { verifyToken } from '../../src/session/token.ts';
import { getHeader, type Header } from '../../src/wire/index.ts';
import pino from 'pino';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { harness } from '../server/harness.ts';

const HOME: Origin = { carrier: 'tcp', peer: '192.0.2.7' };
const ELSEWHERE: Origin = { carrier: 'tcp', peer: '198.51.100.9' };
const IPV6_A: Origin = { carrier: 'tcp', peer: '2001:db8:1:2::a' };
const IPV6_B: Origin = { carrier: 'tcp', peer: '2001:db8:1:2:ffff::b' };

async function bound(mode: 'off' | 'program' | 'address' | 'both') {
  const h = await harness(exampleApp(), { session: { bindClients: mode } });
  const send = async (path: string, headers: Header[], origin: Origin, verb = 'GET') => {
    const reply = await h.rotor.dispatch({ kind: 'request', verb, path, headers, body: undefined }, origin);
    return { status: reply.status, error: reply.error, token: getHeader(reply.frame, 'Token') };
  };
  const login = async (origin: Origin, info = 'cadtool/4.2') => (await send('/rotor/login', [['User', 'alice'], ['Password', 'pw'], ['Client-Info', info]], origin, 'POST')).token!;
  return { h, send, login };
}

t.test('both: the same program from the same address goes on; another program or address is refused, and the token stays good', async (t) => {
  const { h, send, login } = await bound('both');
  const token = await login(HOME);
  t.ok(verifyToken(h.keys, token).binding, 'the token carries a binding');
  const other = await send('/hello', [['Token', token], ['Client-Info', 'cadtool/4.2']], ELSEWHERE);
  t.same([other.status, other.error, other.token], [401, 'ROTOR_E_CLIENT_MISMATCH', undefined], 'another address: refused, no token');
  const program = await send('/hello', [['Token', token], ['Client-Info', 'thief/1.0']], HOME);
  t.equal(program.error, 'ROTOR_E_CLIENT_MISMATCH', 'another program');
  const none = await send('/hello', [['Token', token]], HOME);
  t.equal(none.error, 'ROTOR_E_CLIENT_MISMATCH', 'no Client-Info at all');
  const ok = await send('/hello', [['Token', token], ['Client-Info', 'cadtool/4.2']], HOME);
  t.same([ok.status, ok.error], [200, undefined], 'its own client: the refused tries changed nothing, not even a reuse');
  t.ok(verifyToken(h.keys, ok.token!).binding === verifyToken(h.keys, token).binding, 'the next token is bound the same');
  const again = await send('/hello', [['Token', ok.token!], ['Client-Info', 'cadtool/4.2']], HOME);
  t.equal(again.status, 200);
});

t.test('address: an IPv6 client moving within its /64 stays itself; program is not looked at', async (t) => {
  const { send, login } = await bound('address');
  const token = await login(IPV6_A);
  const moved = await send('/hello', [['Token', token], ['Client-Info', 'anything']], IPV6_B);
  t.equal(moved.status, 200, 'same /64, another program: accepted');
  t.equal((await send('/hello', [['Token', moved.token!]], ELSEWHERE)).error, 'ROTOR_E_CLIENT_MISMATCH');
});

t.test('program: any address, the same Client-Info', async (t) => {
  const { send, login } = await bound('program');
  const token = await login(HOME, 'viewer/2');
  const roaming = await send('/hello', [['Token', token], ['Client-Info', 'viewer/2']], ELSEWHERE);
  t.equal(roaming.status, 200);
  t.equal((await send('/hello', [['Token', roaming.token!], ['Client-Info', 'viewer/3']], ELSEWHERE)).error, 'ROTOR_E_CLIENT_MISMATCH');
});

t.test('off (the default): nothing bound, any client may present the token', async (t) => {
  const { h, send, login } = await bound('off');
  const token = await login(HOME);
  t.equal(verifyToken(h.keys, token).binding, undefined, 'no binding in the claims');
  t.equal((await send('/hello', [['Token', token]], ELSEWHERE)).status, 200);
});

t.test('binding turned on: a session opened before, bound to nobody, is refused too', async (t) => {
  const before = await bound('off');
  const token = await before.login(HOME);
  const after = new Rotor({ config: resolveConfig({ auth: { scryptN: 1024 }, session: { bindClients: 'address' } }), store: before.h.store, app: exampleApp(), keys: before.h.keys, log: silentLogger(), now: () => before.h.clock.now, random: seededRandom(5) });
  const reply = await after.dispatch({ kind: 'request', verb: 'GET', path: '/hello', headers: [['Token', token]], body: undefined }, HOME);
  t.equal(reply.error, 'ROTOR_E_CLIENT_MISMATCH', 'even from the address it logged in from: it was never bound');
});

t.test('POST /rotor/token sessions are bound like logins', async (t) => {
  const h = await harness(exampleApp(), { session: { bindClients: 'both', openTokenCreate: true } });
  const created = await h.rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/token', headers: [['Client-Info', 'web/1']], body: undefined }, HOME);
  const token = getHeader(created.frame, 'Token')!;
  t.ok(verifyToken(h.keys, token).binding, 'bound');
  const stolen = await h.rotor.dispatch({ kind: 'request', verb: 'PUT', path: '/rotor/token', headers: [['Token', token], ['Client-Info', 'web/1']], body: undefined }, ELSEWHERE);
  t.equal(stolen.error, 'ROTOR_E_CLIENT_MISMATCH');
  const own = await h.rotor.dispatch({ kind: 'request', verb: 'PUT', path: '/rotor/token', headers: [['Token', token], ['Client-Info', 'web/1']], body: undefined }, HOME);
  t.equal(own.status, 200);
});

t.test('a mismatch is a security event, with the session it was for', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const config = resolveConfig({ auth: { scryptN: 1024 }, session: { bindClients: 'address' } });
  const h = await harness(exampleApp(), { session: { bindClients: 'address' } });
  const rotor = new Rotor({ config, store: h.store, app: exampleApp(), keys: h.keys, log, now: () => h.clock.now, random: seededRandom(6) });
  const login = await rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', 'alice'], ['Password', 'pw']], body: undefined }, HOME);
  const token = getHeader(login.frame, 'Token')!;
  await rotor.dispatch({ kind: 'request', verb: 'GET', path: '/hello', headers: [['Token', token]], body: undefined }, ELSEWHERE);
  const event = lines.find((l) => l.event === 'client_mismatch');
  t.ok(event, 'logged at warn');
  t.equal(event?.session, verifyToken(h.keys, token).session, 'naming the session');
});

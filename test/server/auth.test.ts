import t from 'tap';
import { getHeader } from '../../src/wire/index.ts';
import { RotorError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log/index.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { dummyHash, hashPassword, verifyPassword, HashLimiter, newTotpSecret, totpFor, TOTP_PERIOD_SECONDS } from '../../src/server/auth.ts';
import { seededRandom } from '../../src/session/random.ts';
import { exampleApp } from '../../src/app/example.ts';
import { harness } from './harness.ts';

const settings = resolveConfig({ auth: { scryptN: 1024 } }).auth;

t.test('scrypt hashes verify only the right password and never store it', async (t) => {
  const hash = await hashPassword('correct horse', settings, seededRandom(9));
  t.match(hash, /^scrypt\$1024\$8\$1\$[\w-]+\$[\w-]+$/);
  t.notMatch(hash, 'correct');
  t.equal(await verifyPassword('correct horse', hash), true);
  t.equal(await verifyPassword('correct horsE', hash), false);
  t.equal(await verifyPassword('x', 'not-a-hash'), false);
});

t.test('the unknown-user dummy hash costs what a real hash of the configured settings costs', async (t) => {
  for (const auth of [settings, resolveConfig().auth, resolveConfig({ auth: { scryptN: 4096, scryptR: 4, scryptP: 2 } }).auth]) {
    const real = await hashPassword('x', { ...auth, scryptN: Math.min(auth.scryptN, 4096) }, seededRandom(1));
    const cost = (hash: string) => hash.split('$').slice(0, 4).join('$');
    t.equal(cost(dummyHash(auth)), `scrypt$${auth.scryptN}$${auth.scryptR}$${auth.scryptP}`);
    if (auth.scryptN <= 4096) t.equal(cost(dummyHash(auth)), cost(real), 'same cost fields as hashPassword writes');
    t.equal(dummyHash(auth).split('$')[5].length, real.split('$')[5].length, 'a key as long as a real one');
  }
  t.equal(await verifyPassword('', dummyHash(settings)), false, 'the dummy verifies nothing');
  t.equal(resolveConfig().auth.scryptN, 2 ** 17, 'the default is OWASP’s minimum N = 2^17 (r = 8, p = 1)');
});

t.test('login: unknown user and wrong password look the same', async (t) => {
  const h = await harness(exampleApp());
  for (const [user, password] of [['mallory', 'pw'], ['alice', 'wrong']]) {
    const { frame } = await h.send('POST', '/rotor/login', [['User', user], ['Password', password]]);
    t.equal(frame.status, 401);
    t.equal(getHeader(frame, 'Error'), 'ROTOR_E_AUTH_FAILED', `${user}/${password}`);
  }
});

t.test('TOTP: required, checked within one step, never accepted twice', async (t) => {
  const h = await harness(exampleApp());
  const secret = newTotpSecret();
  const user = await h.store.loadUser('alice');
  await h.store.putUser({ ...user!, totpSecret: secret });
  const login = (code?: string) =>
    h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw'], ...(code ? [['TOTP', code] as [string, string]] : [])]);
  const codeAt = (ms: number) => totpFor(secret, 'alice').generate({ timestamp: ms });

  t.equal(getHeader((await login()).frame, 'Error'), 'ROTOR_E_TOTP_REQUIRED', 'no code');
  t.equal(getHeader((await login('12345x')).frame, 'Error'), 'ROTOR_E_AUTH_FAILED', 'malformed code');
  const stepMs = TOTP_PERIOD_SECONDS * 1000;
  t.equal(getHeader((await login(codeAt(h.clock.now - 3 * stepMs))).frame, 'Error'), 'ROTOR_E_AUTH_FAILED', 'three steps old');
  const first = await login(codeAt(h.clock.now));
  const token = getHeader(first.frame, 'Token')!;
  t.ok(token, 'the current code logs in');
  // The reply was lost: the same login again gets the identical reply, not a second session.
  t.same((await login(codeAt(h.clock.now))).bytes, first.bytes, 'the same login again, first token unused: the identical reply');
  t.equal(getHeader((await h.send('GET', '/hello', [['Token', token]])).frame, 'Error'), undefined, 'the token works');
  t.equal(getHeader((await login(codeAt(h.clock.now))).frame, 'Error'), 'ROTOR_E_AUTH_FAILED', 'once its token was used, the same code is refused');
  t.equal(getHeader((await login(codeAt(h.clock.now - stepMs))).frame, 'Error'), 'ROTOR_E_AUTH_FAILED', 'an older step after a newer one is refused');
  h.clock.now += stepMs;
  t.ok(getHeader((await login(codeAt(h.clock.now))).frame, 'Token'), 'the next step’s code works');
});

t.test('TOTP: a login whose reply was lost can be sent again; a store error does not burn the code', async (t) => {
  const h = await harness(exampleApp());
  const secret = newTotpSecret();
  await h.store.putUser({ ...(await h.store.loadUser('alice'))!, totpSecret: secret });
  const code = totpFor(secret, 'alice').generate({ timestamp: h.clock.now });
  const login = (password = 'pw') => h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', password], ['TOTP', code]]);

  // The session is stored, then burning the step fails (the store went away for a moment).
  const accept = h.store.acceptTotpStep.bind(h.store);
  let failures = 1;
  h.store.acceptTotpStep = async (name, step) => {
    if (failures-- > 0) throw new RotorError('ROTOR_E_UNAVAILABLE');
    return accept(name, step);
  };
  t.equal(getHeader((await login()).frame, 'Error'), 'ROTOR_E_UNAVAILABLE', 'the first try meets the store error');
  t.equal(getHeader((await login('wrong')).frame, 'Error'), 'ROTOR_E_AUTH_FAILED', 'a retry still needs the password');
  const retried = await login();
  const token = getHeader(retried.frame, 'Token');
  t.ok(token, 'the retry logs in: the code was not burned by the failure');
  t.equal((await h.store.loadUser('alice'))!.lastTotpStep, Math.floor(h.clock.now / 1000 / TOTP_PERIOD_SECONDS), 'and now the step is burned');
  t.same((await login()).bytes, retried.bytes, 'its reply lost too: identical again');
  const sessions: string[] = [];
  for await (const state of h.store.listSessions()) sessions.push(state.id);
  t.equal(sessions.length, 1, 'one session for one code, however often it is sent');
});

t.test('TOTP: the same login sent to two nodes at once: one session, the identical reply from both', async (t) => {
  const h = await harness(exampleApp());
  const secret = newTotpSecret();
  await h.store.putUser({ ...(await h.store.loadUser('alice'))!, totpSecret: secret });
  const code = totpFor(secret, 'alice').generate({ timestamp: h.clock.now });
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  const other = new Rotor({ config, store: h.store, app: exampleApp(), keys: h.keys, log: silentLogger(), now: () => h.clock.now, random: seededRandom(8) });
  const frame = { kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', 'alice'], ['Password', 'pw'], ['TOTP', code]], body: undefined } as const;
  const [a, b] = await Promise.all([h.rotor.dispatch({ ...frame, headers: [...frame.headers] }), other.dispatch({ ...frame, headers: [...frame.headers] })]);
  t.match(a.bytes.toString(), /^ROTOR\/1 200 OK\r\nToken: /, 'node A logs in');
  t.same(b.bytes, a.bytes, 'node B answers the identical reply');
  let sessions = 0;
  for await (const state of h.store.listSessions()) if (!state.revoked) sessions++;
  t.equal(sessions, 1, 'one live session');
});

t.test('a login storm is bounded: past the queue, ROTOR_E_RATE_LIMITED with Wait-for', async (t) => {
  const h = await harness(exampleApp(), { auth: { maxConcurrentHashes: 1, maxQueuedLogins: 2 } });
  const replies = await Promise.all(Array.from({ length: 8 }, () => h.send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']])));
  const limited = replies.filter((r) => getHeader(r.frame, 'Error') === 'ROTOR_E_RATE_LIMITED');
  const ok = replies.filter((r) => getHeader(r.frame, 'Token'));
  t.equal(ok.length, 3, 'one running and two queued get through');
  t.equal(limited.length, 5, 'the rest are refused at once');
  t.equal(getHeader(limited[0].frame, 'Wait-for'), '1');
  t.equal(limited[0].frame.status, 429);
});

t.test('HashLimiter never runs more than its limit at once', async (t) => {
  const limiter = new HashLimiter({ maxConcurrentHashes: 2, maxQueuedLogins: 100 });
  let running = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: 20 }, () =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((resolve) => setTimeout(resolve, 2));
        running--;
      }),
    ),
  );
  t.equal(peak, 2);
});

/**
 * Login throttling (spec §3 Logins, issue 11 "Brute force and hogging"): failures counted in the
 * store per (user, address), per address and per user; a login a counter holds in its wait is
 * refused at once with 429 ROTOR_E_RATE_LIMITED and `Wait-for`, the same for a user that exists
 * and one that does not. A fake clock: no test here waits for real time.
 */
import t from 'tap';
import { loadConfig } from '../../src/config/index.ts';
import { resolveConfig, type DeepPartial, type RotorConfig } from '../../src/config/defaults.ts';
import { exampleApp } from '../../src/app/example.ts';
import { silentLogger, type Logger } from '../../src/log/index.ts';
import { failureWaitSeconds, hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import type { Origin } from '../../src/transport/admission.ts';
import { FrameParser, getHeader, type Header, type ResponseFrame } from '../../src/wire/index.ts';
import { startRedis } from '../helpers/redis.ts';
import { textLog } from '../ops/helpers.ts';
import { uid, type TapTest } from '../store/suite.ts';

const ATTACKER = '203.0.113.7';
const HOME = '198.51.100.20';
const DEFAULTS = resolveConfig().auth;

interface Node {
  rotor: Rotor;
  clock: { now: number };
  login(user: string, password: string, peer?: string, extra?: Header[]): Promise<{ frame: ResponseFrame; bytes: Buffer }>;
}

interface Cluster {
  store: Store;
  clock: { now: number };
  node(log?: Logger): Node;
}

/** Rotors on one store, one fake clock and one key ring (nodes of one deployment); alice's password is `pw`. */
async function cluster(t: TapTest, store: Store, config: DeepPartial<RotorConfig> = {}): Promise<Cluster> {
  const resolved = resolveConfig({ ...config, auth: { scryptN: 1024, ...config.auth } });
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', resolved.auth, seededRandom(1)), createdAt: 0 });
  const clock = { now: Date.UTC(2026, 10, 24) };
  const keys = KeyRing.generate(seededRandom(2));
  let seed = 3;
  const node = (log: Logger = silentLogger()): Node => {
    const rotor = new Rotor({ config: resolved, store, app: exampleApp(), keys, log, now: () => clock.now, random: seededRandom(seed++) });
    t.teardown(() => rotor.stop());
    const login: Node['login'] = async (user, password, peer, extra = []) => {
      const origin: Origin | undefined = peer === undefined ? undefined : { carrier: 'tcp', peer };
      const reply = await rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', user], ['Password', password], ...extra], body: undefined }, origin);
      const { frames, error } = new FrameParser().push(reply.bytes);
      if (error || frames.length !== 1 || frames[0].kind !== 'response') throw new Error('reply is not one response frame');
      return { frame: frames[0], bytes: reply.bytes };
    };
    return { rotor, clock, login };
  };
  return { store, clock, node };
}

const codeOf = (frame: ResponseFrame) => getHeader(frame, 'Error') ?? (getHeader(frame, 'Token') ? 'token' : `status ${frame.status}`);
const waitOf = (frame: ResponseFrame) => Number(getHeader(frame, 'Wait-for'));

/** How many of each answer (by code), in the order first seen. */
function tally(frames: readonly ResponseFrame[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const frame of frames) counts[codeOf(frame)] = (counts[codeOf(frame)] ?? 0) + 1;
  return counts;
}

t.test('the wait grows as documented: min(waitIncrementSeconds × ⌊failures / factor⌋, maxFailureWaitSeconds)', async (t) => {
  t.same(
    { failureFactor: DEFAULTS.failureFactor, addressFailureFactor: DEFAULTS.addressFailureFactor, userFailureFactor: DEFAULTS.userFailureFactor },
    { failureFactor: 5, addressFailureFactor: 20, userFailureFactor: 100 },
    'the defaults spec §8 lists',
  );
  t.same([DEFAULTS.waitIncrementSeconds, DEFAULTS.maxFailureWaitSeconds, DEFAULTS.failureResetMinutes], [30, 900, 720]);
  const waits = [0, 4, 5, 9, 10, 14, 15, 149, 150, 1000].map((n) => failureWaitSeconds(n, 5, DEFAULTS));
  t.same(waits, [0, 0, 30, 30, 60, 60, 90, 870, 900, 900]);
  t.equal(failureWaitSeconds(1_000_000, 0, DEFAULTS), 0, 'a factor of 0 never waits');
});

t.test('the throttling settings are validated, and reachable from the environment as durations', async (t) => {
  t.throws(() => resolveConfig({ auth: { waitIncrementSeconds: 60, maxFailureWaitSeconds: 30 } }), { name: 'ConfigError', message: /auth.maxFailureWaitSeconds.*at least auth.waitIncrementSeconds/ });
  t.throws(() => resolveConfig({ auth: { failureResetMinutes: 10, maxFailureWaitSeconds: 3600 } }), { name: 'ConfigError', message: /auth.failureResetMinutes/ });
  t.throws(() => resolveConfig({ auth: { failureFactor: -1 } }), { name: 'ConfigError', message: /auth.failureFactor/ });
  const auth = loadConfig({ env: { ROTOR_AUTH_WAIT_INCREMENT_SECONDS: '1min', ROTOR_AUTH_MAX_FAILURE_WAIT_SECONDS: '1h', ROTOR_AUTH_FAILURE_RESET_MINUTES: '1d', ROTOR_AUTH_ADDRESS_FAILURE_FACTOR: '0' } }).auth;
  t.same([auth.waitIncrementSeconds, auth.maxFailureWaitSeconds, auth.failureResetMinutes, auth.addressFailureFactor], [60, 3600, 1440, 0]);
});

t.test('500 wrong passwords from one address: 5 are checked, 495 refused with Wait-for; alice still logs in from home', async (t) => {
  const c = await cluster(t, new MemoryStore());
  const log = textLog('warn');
  const node = c.node(log.log);
  const replies: ResponseFrame[] = [];
  for (let i = 0; i < 500; i++) replies.push((await node.login('alice', `guess-${i}`, ATTACKER)).frame);
  t.same(tally(replies), { ROTOR_E_AUTH_FAILED: 5, ROTOR_E_RATE_LIMITED: 495 }, 'failureFactor (5) guesses, then every one refused');
  t.same(replies.slice(0, 5).map(codeOf), Array(5).fill('ROTOR_E_AUTH_FAILED'), 'the first five are checked');
  const limited = replies.slice(5);
  t.ok(limited.every((f) => f.status === 429 && waitOf(f) === 30), 'each refusal: 429, Wait-for 30 (waitIncrementSeconds × ⌊5 / 5⌋)');

  t.equal(codeOf((await node.login('alice', 'pw', ATTACKER)).frame), 'ROTOR_E_RATE_LIMITED', 'the right password from the attacking address waits too');
  t.equal(codeOf((await node.login('alice', 'pw', HOME)).frame), 'token', 'the right password from another address logs in at once');

  c.clock.now += 29_000;
  const late = (await node.login('alice', 'pw', ATTACKER)).frame;
  t.same([codeOf(late), waitOf(late)], ['ROTOR_E_RATE_LIMITED', 1], 'a second before the wait ends: Wait-for counts down');
  c.clock.now += 1_000;
  t.equal(codeOf((await node.login('alice', 'pw', ATTACKER)).frame), 'token', 'once its wait has passed, the same address logs in');
  t.equal(codeOf((await node.login('alice', 'wrong', ATTACKER)).frame), 'ROTOR_E_AUTH_FAILED', 'and that success forgot its (user, address) count');

  const logins = await node.rotor.metrics.registry.metrics();
  t.match(logins, /rotor_logins_total\{result="rate_limited"\} 497\b/, 'every refusal counted as rate_limited');
  t.match(logins, /rotor_logins_total\{result="password_failed"\} 6\b/);
  const events = log.lines().filter((l) => l.event === 'rate_limited');
  t.ok(events.length >= 1, 'logged as a security event');
  t.match(events[0], { user: 'alice', peer: ATTACKER, carrier: 'tcp' });
});

t.test('an attacker who waits out every Wait-for is held to the documented pace', async (t) => {
  const c = await cluster(t, new MemoryStore(), { auth: { userFailureFactor: 0 } });
  const node = c.node();
  const start = c.clock.now;
  const checked: number[] = [];
  for (let i = 0; i < 500; i++) {
    const { frame } = await node.login('alice', `guess-${i}`, ATTACKER);
    if (codeOf(frame) === 'ROTOR_E_AUTH_FAILED') checked.push(c.clock.now - start);
    else c.clock.now += waitOf(frame) * 1000;
  }
  // Failure n (n >= 5) is followed by min(30 × ⌊n / 5⌋, 900) s; the address counter (factor 20) adds nothing more here.
  let expected = 0;
  const times: number[] = [];
  for (let n = 1; times.length < checked.length; n++) {
    times.push(expected);
    expected += Math.max(failureWaitSeconds(n, 5, DEFAULTS), failureWaitSeconds(n, 20, DEFAULTS)) * 1000;
  }
  t.same(checked, times, 'each guess exactly when its wait ended');
  t.equal(checked.length, 252, '500 attempts got 252 guesses checked: 5 at once, then one per wait');
  // Σ min(30 × ⌊n / 5⌋, 900) s over n = 5…251: 65,250 s up to the cap, then 102 × 900 s.
  t.equal(checked.at(-1), 157_050_000, 'the last after 43.6 hours');
});

t.test('one address waiting out every wait, with the default user counter, never locks alice out from home', async (t) => {
  const c = await cluster(t, new MemoryStore());
  const node = c.node();
  let checked = 0;
  let homeRefused = 0;
  for (let i = 0; i < 600; i++) {
    const { frame } = await node.login('alice', `guess-${i}`, ATTACKER);
    if (codeOf(frame) === 'ROTOR_E_AUTH_FAILED') {
      checked++;
      if (codeOf((await node.login('alice', 'pw', HOME)).frame) !== 'token') homeRefused++;
    } else c.clock.now += waitOf(frame) * 1000;
  }
  t.ok(checked > DEFAULTS.userFailureFactor, `the attacker got ${checked} guesses checked, past the user counter's factor of ${DEFAULTS.userFailureFactor}`);
  t.equal(homeRefused, 0, 'and alice logged in from home after every one of them');
});

t.test('an unknown user and a known one get byte-identical refusals', async (t) => {
  const c = await cluster(t, new MemoryStore());
  const node = c.node();
  const attempts = async (user: string, peer: string) => {
    const replies: Buffer[] = [];
    for (let i = 0; i < 8; i++) replies.push((await node.login(user, 'wrong', peer)).bytes);
    return replies;
  };
  const known = await attempts('alice', '192.0.2.1');
  const unknown = await attempts('mallory', '192.0.2.2');
  t.same(unknown, known, 'the same bytes, attempt by attempt (AUTH_FAILED ×5, then RATE_LIMITED)');
  t.equal(known[7].toString('latin1'), 'ROTOR/1 429 Too Many Requests\r\nError: ROTOR_E_RATE_LIMITED\r\nWait-for: 30\r\n\r\n');
});

t.test('one address guessing many user names is slowed by its address counter', async (t) => {
  const c = await cluster(t, new MemoryStore());
  const node = c.node();
  const replies: ResponseFrame[] = [];
  for (let i = 0; i < 100; i++) replies.push((await node.login(`user-${i}`, 'Summer2026!', ATTACKER)).frame);
  t.same(tally(replies), { ROTOR_E_AUTH_FAILED: 20, ROTOR_E_RATE_LIMITED: 80 }, 'addressFailureFactor (20) names, then refused');
  t.equal(codeOf((await node.login('alice', 'pw', ATTACKER)).frame), 'ROTOR_E_RATE_LIMITED', 'whoever logs in from there waits');
  t.equal(codeOf((await node.login('alice', 'pw', HOME)).frame), 'token', 'other addresses do not');
});

t.test('a distributed attack on one user is slowed by the user counter; an IPv6 /64 is one address', async (t) => {
  const c = await cluster(t, new MemoryStore());
  const node = c.node();
  const replies: ResponseFrame[] = [];
  // 4 guesses from each of 40 addresses: no (user, address) or address counter reaches its factor.
  for (let a = 0; a < 40; a++) for (let i = 0; i < 4; i++) replies.push((await node.login('alice', `g${a}-${i}`, `10.0.${a}.1`)).frame);
  t.same(tally(replies), { ROTOR_E_AUTH_FAILED: 100, ROTOR_E_RATE_LIMITED: 60 }, 'userFailureFactor (100) guesses in all');
  t.equal(codeOf((await node.login('alice', 'pw', HOME)).frame), 'ROTOR_E_RATE_LIMITED', 'then alice waits everywhere (the price of a distributed attack)');
  t.equal(codeOf((await node.login('bob', 'x', HOME)).frame), 'ROTOR_E_AUTH_FAILED', 'other users do not');

  const v6 = await cluster(t, new MemoryStore());
  const six = v6.node();
  const spread: ResponseFrame[] = [];
  for (let i = 0; i < 10; i++) spread.push((await six.login('alice', 'wrong', `2001:db8:1:2::${(i + 1).toString(16)}`)).frame);
  t.same(tally(spread), { ROTOR_E_AUTH_FAILED: 5, ROTOR_E_RATE_LIMITED: 5 }, 'addresses of one /64 share their counters');
  t.equal(codeOf((await six.login('alice', 'pw', '2001:db8:1:3::1')).frame), 'token', 'the next /64 is another address');
});

t.test('a burst of guesses sent at once is held to the same count', async (t) => {
  const c = await cluster(t, new MemoryStore(), { auth: { maxConcurrentHashes: 1, maxQueuedLogins: 100 } });
  const node = c.node();
  const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => node.login('alice', `burst-${i}`, ATTACKER)));
  t.same(tally(replies.map((r) => r.frame)), { ROTOR_E_AUTH_FAILED: 5, ROTOR_E_RATE_LIMITED: 55 }, 'the queued ones are checked again before their hash');
});

t.test('wrong TOTP codes count; a frame without an origin counts per user only', async (t) => {
  const c = await cluster(t, new MemoryStore());
  await c.store.putUser({ ...(await c.store.loadUser('alice'))!, totpSecret: 'JBSWY3DPEHPK3PXP' });
  const node = c.node();
  const replies: string[] = [];
  for (let i = 0; i < 7; i++) replies.push(codeOf((await node.login('alice', 'pw', ATTACKER, [['TOTP', '000000']])).frame));
  t.same(replies, [...Array(5).fill('ROTOR_E_AUTH_FAILED'), 'ROTOR_E_RATE_LIMITED', 'ROTOR_E_RATE_LIMITED'], 'a right password with a wrong code is a failure');
  t.equal(codeOf((await node.login('alice', 'pw', HOME)).frame), 'ROTOR_E_TOTP_REQUIRED', 'a missing code is not one, and other addresses go on');

  const bare = await cluster(t, new MemoryStore());
  const inProcess = bare.node();
  const codes: ResponseFrame[] = [];
  for (let i = 0; i < 101; i++) codes.push((await inProcess.login('alice', 'wrong')).frame);
  t.same(tally(codes), { ROTOR_E_AUTH_FAILED: 100, ROTOR_E_RATE_LIMITED: 1 }, 'no address: only userFailureFactor applies');
});

t.test('all factors 0: no throttling, and no store call for it', async (t) => {
  const store = new MemoryStore();
  let calls = 0;
  for (const method of ['loginFailures', 'recordLoginFailure', 'clearLoginFailures'] as const) {
    const original = store[method].bind(store) as (...args: unknown[]) => Promise<unknown>;
    (store as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => (calls++, original(...args));
  }
  const c = await cluster(t, store, { auth: { failureFactor: 0, addressFailureFactor: 0, userFailureFactor: 0 } });
  const node = c.node();
  for (let i = 0; i < 30; i++) t.equal(codeOf((await node.login('alice', 'wrong', ATTACKER)).frame), 'ROTOR_E_AUTH_FAILED');
  t.equal(codeOf((await node.login('alice', 'pw', ATTACKER)).frame), 'token');
  t.equal(calls, 0);
});

/** Two nodes on one store: failures on either count for both. */
async function sharedCounts(t: TapTest, store: Store): Promise<void> {
  const c = await cluster(t, store);
  const [one, two] = [c.node(), c.node()];
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) codes.push(codeOf((await (i % 2 === 0 ? one : two).login('alice', `guess-${i}`, ATTACKER)).frame));
  t.same(codes, [...Array(5).fill('ROTOR_E_AUTH_FAILED'), 'ROTOR_E_RATE_LIMITED'], 'the sixth guess, on either node, is refused');
  const [a, b] = await Promise.all([one.login('alice', 'pw', ATTACKER), two.login('alice', 'pw', ATTACKER)]);
  t.same([codeOf(a.frame), codeOf(b.frame)], ['ROTOR_E_RATE_LIMITED', 'ROTOR_E_RATE_LIMITED'], 'both nodes hold the wait');
  t.equal(codeOf((await two.login('alice', 'pw', HOME)).frame), 'token', 'another address logs in on either');
  c.clock.now += 30_000;
  t.equal(codeOf((await one.login('alice', 'pw', ATTACKER)).frame), 'token', 'after the wait, one node logs in…');
  t.equal(codeOf((await two.login('alice', 'wrong', ATTACKER)).frame), 'ROTOR_E_AUTH_FAILED', '…and the other sees the count forgotten');
}

t.test('two rotors on one MemoryStore share the counts', (t) => sharedCounts(t, new MemoryStore()));

t.test('two rotors on one Redis share the counts', async (t) => {
  const server = await startRedis();
  t.teardown(() => server.close());
  const prefix = uid('rotor');
  const [a, b] = await Promise.all([RedisStore.open(server.url, { prefix }), RedisStore.open(server.url, { prefix })]);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  // Node one on store a, node two on store b: two connections, as two processes would have.
  const c = await cluster(t, a);
  const resolved = resolveConfig({ auth: { scryptN: 1024 } });
  const one = c.node();
  const other = new Rotor({ config: resolved, store: b, app: exampleApp(), keys: KeyRing.generate(seededRandom(2)), log: silentLogger(), now: () => c.clock.now, random: seededRandom(9) });
  const viaB = async (password: string, peer: string) =>
    codeOf(new FrameParser().push((await other.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', 'alice'], ['Password', password]], body: undefined }, { carrier: 'tcp', peer })).bytes).frames[0] as ResponseFrame);
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) codes.push(i % 2 === 0 ? codeOf((await one.login('alice', `guess-${i}`, ATTACKER)).frame) : await viaB(`guess-${i}`, ATTACKER));
  t.same(codes, [...Array(5).fill('ROTOR_E_AUTH_FAILED'), 'ROTOR_E_RATE_LIMITED'], 'failures on both nodes add up in Redis');
  t.equal(await viaB('pw', ATTACKER), 'ROTOR_E_RATE_LIMITED', 'the other node holds the wait');
  t.equal(await viaB('pw', HOME), 'token', 'another address logs in');
  const racing = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? viaB('x', '192.0.2.77') : one.login('bob', 'x', '192.0.2.77').then((r) => codeOf(r.frame)))));
  const [address] = await b.loginFailures(['a\u0000192.0.2.77'], c.clock.now);
  t.equal(address.count, racing.filter((code) => code === 'ROTOR_E_AUTH_FAILED').length, 'concurrent failures on both nodes: the address counted exactly those they answered');
});

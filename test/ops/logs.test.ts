import t from 'tap';
import { httpConnect, RotorClient, wsConnect } from '../../src/client/index.ts';
import { AccessLog } from '../../src/log/index.ts';
import { hashPassword, newTotpSecret, totpFor } from '../../src/server/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { getHeader, type ResponseFrame } from '../../src/wire/index.ts';
import { TEST_CONFIG } from '../carriers/helpers.ts';
import { FrameClient, PASSWORD, startOpsServer, textLog, tokenOf, USER } from './helpers.ts';

const BOB = 'bob';
const BOB_PASSWORD = 'bobs own secret';

/** A memory store with bob, who also needs a TOTP code; alice is added by startOpsServer. */
async function storeWithBob(): Promise<{ store: MemoryStore; secret: string }> {
  const store = new MemoryStore();
  const secret = newTotpSecret();
  const passwordHash = await hashPassword(BOB_PASSWORD, resolveConfig(TEST_CONFIG).auth, pooledRandom());
  await store.putUser({ name: BOB, passwordHash, totpSecret: secret, createdAt: 0 });
  return { store, secret };
}

t.test('one access line per exchange, with its fields, and no secret anywhere in the log', async (t) => {
  const capture = textLog();
  const { store, secret } = await storeWithBob();
  const ops = await startOpsServer({ store, log: capture.log, http: true });
  t.teardown(() => ops.close());
  const tokens: string[] = [];
  const keep = (reply: ResponseFrame): string => {
    const token = tokenOf(reply);
    tokens.push(token);
    return token;
  };
  const client = await FrameClient.open(ops.tcpPort);
  t.teardown(() => client.close());

  // Over TCP: a login, an exchange, a lost reply sent again, a deferral, its ack, a reuse, a failed login.
  const first = await client.login();
  tokens.push(first);
  const second = keep(await client.send('GET', '/hello', [['Token', first]]));
  await client.send('GET', '/hello', [['Token', first]]);
  const third = keep(await client.send('POST', '/reverse', [['Token', second]], 'stressed'));
  await client.send('POST', '/rotor/ack', [['Token', third]]);
  await client.send('GET', '/hello', [['Token', second]]);
  await client.send('POST', '/rotor/login', [['User', USER], ['Password', 'Wr0ng-pa55word']]);
  // bob: the password, then a TOTP code that is wrong, then the right one.
  const now = Date.now();
  const code = totpFor(secret, BOB).generate({ timestamp: now });
  const staleCode = totpFor(secret, BOB).generate({ timestamp: now - 3_600_000 });
  await client.send('POST', '/rotor/login', [['User', BOB], ['Password', BOB_PASSWORD], ['TOTP', staleCode]]);
  keep(await client.send('POST', '/rotor/login', [['User', BOB], ['Password', BOB_PASSWORD], ['TOTP', code]]));
  const tcpFrames = 9;

  // Over HTTP and WebSocket, through the client library.
  const base = `http://127.0.0.1:${ops.httpPort}`;
  for (const connect of [httpConnect(base), wsConnect(`ws://127.0.0.1:${ops.httpPort}/rotor/ws`)]) {
    const other = new RotorClient({ connect, onToken: (token) => void (token && tokens.push(token)) });
    await other.login(USER, PASSWORD);
    await other.request('GET', '/hello');
    other.close();
  }
  const exchanges = capture.lines().filter((line) => line.msg === 'exchange');
  t.equal(exchanges.length, tcpFrames + 4, 'one line per exchange');

  const tcp = exchanges.slice(0, tcpFrames);
  t.same(
    tcp.map((line) => [line.op, line.status, line.code ?? null, line.replay]),
    [
      ['login', 200, null, false],
      ['app', 200, null, false],
      ['app', 200, null, true],
      ['app', 202, null, false],
      ['ack', 200, null, false],
      ['app', 401, 'ROTOR_E_TOKEN_REUSED', false],
      ['login', 401, 'ROTOR_E_AUTH_FAILED', false],
      ['login', 401, 'ROTOR_E_AUTH_FAILED', false],
      ['login', 200, null, false],
    ],
    'operation, status, code and replay of each frame, in order',
  );
  for (const line of exchanges) {
    t.equal(line.level, 30, 'at info');
    t.match(line.reqId, /^[A-Za-z0-9_-]{8}$/, 'a short request id');
    t.match(line.peer, /127\.0\.0\.1$/, 'the peer address');
    t.type(line.durationUs, 'number');
    t.ok((line.durationUs as number) >= 0, 'a duration in µs');
  }
  t.equal(new Set(exchanges.map((line) => line.reqId)).size, exchanges.length, 'every frame its own id');
  t.same([...new Set(exchanges.map((line) => line.carrier))], ['tcp', 'http', 'ws'], 'the carrier of each');
  const session = tcp[1].session;
  t.match(session, /^[A-Za-z0-9_-]{16,}$/, 'a token exchange names its session');
  t.ok(tcp.slice(1, 6).every((line) => line.session === session), 'the same session all along');
  t.equal(tcp[0].user, USER, 'a login names its user');
  t.equal(tcp[7].user, BOB, 'also when it fails');

  const text = capture.text();
  t.ok(tokens.length >= 8, `${tokens.length} tokens issued`);
  for (const token of tokens) t.notOk(text.includes(token), 'no token issued is in the log');
  for (const token of tokens) t.notOk(text.includes(token.split('.')[1] ?? token), 'nor any part of one');
  for (const password of [PASSWORD, BOB_PASSWORD, 'Wr0ng-pa55word']) t.notOk(text.includes(password), 'no password in the log');
  // Six digits can turn up inside a timestamp or a duration by chance: look for them standing alone.
  const withoutNumbers = text.replace(/"(time|pid|durationUs)":\d+/g, '');
  for (const totp of [code, staleCode]) t.notMatch(withoutNumbers, new RegExp(`(?<![0-9])${totp}(?![0-9])`), 'no TOTP code in the log');
});

t.test('security events are logged at warn with the access log off', async (t) => {
  const capture = textLog();
  const { store, secret } = await storeWithBob();
  const ops = await startOpsServer({
    store,
    log: capture.log,
    config: {
      observability: { accessLog: false },
      // One password check at a time, none waiting: a second login at once is rate limited.
      auth: { scryptN: 1024, maxConcurrentHashes: 1, maxQueuedLogins: 0 },
      connection: { maxConnections: 1 },
    },
  });
  t.teardown(() => ops.close());
  const client = await FrameClient.open(ops.tcpPort);
  t.teardown(() => client.close());

  await client.send('POST', '/rotor/login', [['User', 'mallory'], ['Password', 'guess']]);
  await client.send('POST', '/rotor/login', [['User', BOB], ['Password', BOB_PASSWORD], ['TOTP', totpFor(secret, BOB).generate({ timestamp: Date.now() - 3_600_000 })]]);
  const first = await client.login();
  const second = tokenOf(await client.send('GET', '/hello', [['Token', first]]));
  tokenOf(await client.send('GET', '/hello', [['Token', second]]));
  const reuse = await client.send('GET', '/hello', [['Token', first]]);
  t.equal(getHeader(reuse, 'Error'), 'ROTOR_E_TOKEN_REUSED');
  const [, limited] = await Promise.all(client.sendAll([1, 2].map(() => ({ verb: 'POST', path: '/rotor/login', headers: [['User', USER], ['Password', PASSWORD]] }))));
  t.equal(getHeader(limited, 'Error'), 'ROTOR_E_RATE_LIMITED', 'the second of two logins at once is rate limited');
  // A second connection while the first holds the only slot, twice: one line, then a summary.
  for (let i = 0; i < 2; i++) {
    const refused = await FrameClient.open(ops.tcpPort);
    t.equal(getHeader(await refused.send('GET', '/rotor/ping'), 'Error'), 'ROTOR_E_TOO_MANY_CONNECTIONS');
    refused.close();
  }
  await ops.close();

  const lines = capture.lines();
  t.equal(lines.filter((line) => line.msg === 'exchange').length, 0, 'no access lines');
  const events = lines.filter((line) => line.event !== undefined);
  t.ok(events.every((line) => line.level === 40), 'every security event at warn');
  const sessionOf = (line: Record<string, unknown>) => line.session;
  t.same(
    events.map((line) => [line.event, line.user ?? null, line.carrier ?? null]),
    [
      ['login_failed', 'mallory', 'tcp'],
      ['totp_failed', BOB, 'tcp'],
      ['token_reused', USER, 'tcp'],
      ['rate_limited', USER, 'tcp'],
      ['connection_refused', null, 'tcp'],
      ['connection_refused', null, null],
    ],
    'failed login, TOTP failure, reuse, rate limiting, connection cap, and the cap summary',
  );
  t.ok(events.slice(0, 5).every((line) => typeof line.peer === 'string' && /127\.0\.0\.1$/.test(line.peer)), 'each names the peer');
  t.match(sessionOf(events[2]), /^[A-Za-z0-9_-]{16,}$/, 'the reuse names the revoked session');
  t.equal(events[5].suppressed, 1, 'the summary counts the refusal it did not log on its own');
  t.notOk(capture.text().includes(first) || capture.text().includes(second), 'no token in the security lines');
  t.notOk(capture.text().includes(BOB_PASSWORD) || capture.text().includes('"guess"'), 'no password either');
});

t.test('accessLogSample keeps that fraction of the lines', async (t) => {
  const capture = textLog();
  const draws = [0.1, 0.9, 0.3, 0.7];
  const access = new AccessLog(capture.log, { accessLog: true, accessLogSample: 0.5 }, () => draws.shift()!);
  t.same([access.picks(), access.picks(), access.picks(), access.picks()], [true, false, true, false], 'a draw below the sample picks the line');
  t.equal(new AccessLog(capture.log, { accessLog: true, accessLogSample: 0 }).picks(), false, '0 keeps none');
  t.equal(new AccessLog(capture.log, { accessLog: false, accessLogSample: 1 }).picks(), false, 'off is off');
  t.equal(new AccessLog(textLog('warn').log, { accessLog: true, accessLogSample: 1 }).picks(), false, 'not below info');

  const sampled = textLog();
  const ops = await startOpsServer({ log: sampled.log, config: { observability: { accessLogSample: 0 } } });
  t.teardown(() => ops.close());
  const client = await FrameClient.open(ops.tcpPort);
  t.teardown(() => client.close());
  await client.login();
  await client.send('POST', '/rotor/login', [['User', USER], ['Password', 'wrong']]);
  const lines = sampled.lines();
  t.equal(lines.filter((line) => line.msg === 'exchange').length, 0, 'sample 0: no access line');
  t.equal(lines.filter((line) => line.event === 'login_failed').length, 1, 'the failed login is logged all the same');
});

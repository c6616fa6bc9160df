/**
 * Hand-over between two real rotor servers over loopback (spec §11): a — the home server, in a
 * child process (fixtures/home.ts) so it can be SIGSTOPped — and b, in this process, each with a
 * store, MAC keys and hand-over keys of its own. A login at a, a hand-over to b, rotating
 * exchanges at b over TCP and HTTP; b takes hand-overs while a is stopped; a's parent ends and b
 * refuses its hand-over tokens and revokes the session it opened, within one pull interval and a
 * few seconds.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { HandOvers, httpConnect, RotorClient, SessionRevokedError, tcpConnect } from '../../src/client/index.ts';
import { HandOver, HandOverKeys, loadOrCreateHandOverKeys, newHandOverKey, parsePeers } from '../../src/handover/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { serve } from '../../src/server/index.ts';
import { pooledRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { MemoryStore } from '../../src/store/memory.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'home.ts');
const PULL_SECONDS = 1;
/** The bound spec §11 gives: one pull interval plus the time the list takes to fetch ("a few seconds"). */
const BOUND_MS = PULL_SECONDS * 1000 + 5_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Until `check` resolves truthy, or throw after `ms`. */
async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

function startHome(keyFile: string, peers: unknown): Promise<{ child: ChildProcess; tcp: number; http: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, keyFile, JSON.stringify(peers)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`home not ready within 30 s:\n${stderr}`)), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [word, tcp, http] = line.split(' ');
      if (word !== 'HOME_READY') return;
      clearTimeout(timer);
      resolve({ child, tcp: Number(tcp), http: Number(http) });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`home exited (${code ?? signal}) before it was ready:\n${stderr}`));
    });
  });
}

t.test('login at a, hand-over to b, b on its own while a is stopped, a’s end reaching b', { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-handover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const aKeys = loadOrCreateHandOverKeys(join(dir, 'a-handover-keys.json'));

  // b first: a must know b's address.
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  const b = await serve({
    store: new MemoryStore(),
    app: { routes: { 'GET /hello': (req) => ({ body: `hello, ${req.user}, at b` }) }, tasks: {} },
    config: { host: '127.0.0.1', port: 0, observability: { accessLog: false }, connection: { shutdownGraceMs: 500 } },
    keys: KeyRing.generate(pooledRandom()),
    log,
    http: { port: 0 },
  });
  t.teardown(() => b.close());
  const bAddress = `tcp://127.0.0.1:${b.tcp.address.port}`;

  const home = await startHome(join(dir, 'a-handover-keys.json'), { self: 'a', peers: [{ name: 'b', address: bAddress }] });
  let stopped = false;
  t.teardown(async () => {
    if (stopped) home.child.kill('SIGCONT');
    home.child.kill('SIGTERM');
    await new Promise((resolve) => (home.child.exitCode !== null ? resolve(undefined) : home.child.once('exit', resolve)));
  });
  const handOver = new HandOver({
    peers: parsePeers({
      self: 'b',
      peers: [{ name: 'a', address: `tcp://127.0.0.1:${home.tcp}`, publicKeys: aKeys.publicKeys(), revocations: `http://127.0.0.1:${home.http}/rotor/revocations` }],
    }),
    keys: new HandOverKeys([newHandOverKey()]),
    pullSeconds: PULL_SECONDS,
  });
  b.rotor.useHandOver(handOver);

  // Login at a; a reply of a hands over to b; one rotating session at each.
  const atA = new RotorClient({ connect: tcpConnect({ host: '127.0.0.1', port: home.tcp }) });
  t.teardown(() => atA.close());
  await atA.login('alice', 'pw');
  const go = await atA.request('GET', '/go');
  t.equal(go.handOver?.address, bAddress, 'Out-of-band: b');
  const peers = new HandOvers({ home: 'a' });
  t.teardown(() => peers.close());
  const atB = await peers.follow(go);
  t.equal(peers.at(bAddress), atB);
  for (let i = 0; i < 3; i++) t.equal((await atB.request('GET', '/hello')).body.toString(), 'hello, alice, at b', `TCP exchange ${i + 1} at b`);
  t.equal(await peers.follow(await atA.request('GET', '/go')), atB, 'one session per server: the second hand-over finds it');
  const overHttp = new RotorClient({ connect: httpConnect(`http://127.0.0.1:${b.http!.address.port}`) });
  t.teardown(() => overHttp.close());
  await overHttp.useToken(atB.token);
  for (let i = 0; i < 3; i++) t.equal((await overHttp.request('GET', '/hello')).body.toString(), 'hello, alice, at b', `HTTP exchange ${i + 1} at b`);
  await atB.useToken(overHttp.token);
  t.equal((await atA.request('GET', '/hello')).status, 200, 'a’s session rotates on meanwhile');

  // Hand-over tokens for later, then a stops.
  const spare = [];
  for (let i = 0; i < 3; i++) spare.push((await atA.request('GET', '/go')).handOver!.token);
  const pullsFailed = () => lines.filter((line) => String(line.msg).startsWith('pulling a revocation list failed')).length;
  t.equal(pullsFailed(), 0, 'b’s pulls of a’s list worked so far');
  home.child.kill('SIGSTOP');
  stopped = true;
  const alone = new RotorClient({ connect: tcpConnect({ host: '127.0.0.1', port: b.tcp.address.port }) });
  t.teardown(() => alone.close());
  const started = Date.now();
  await alone.loginWithHandOver(spare[0], 'a');
  t.ok(Date.now() - started < 1000, 'a hand-over login at b does not wait for a');
  await eventually('a pull of the stopped a fails', 15_000, async () => pullsFailed() > 0);
  const second = new RotorClient({ connect: tcpConnect({ host: '127.0.0.1', port: b.tcp.address.port }) });
  t.teardown(() => second.close());
  await second.loginWithHandOver(spare[1], 'a');
  t.equal((await second.request('GET', '/hello')).status, 200, 'b keeps taking hand-overs while a is stopped and its pulls fail');
  home.child.kill('SIGCONT');
  stopped = false;

  // a's parent ends: b refuses its unused token and revokes its sessions, within the bound.
  await atA.logout();
  const ended = Date.now();
  // Polled by the session it opened (a login with the spare token before the list came would spend it).
  await eventually('b revokes the session the parent’s token opened', BOUND_MS + 5_000, async () => {
    try {
      await atB.request('GET', '/hello');
      return false;
    } catch (err) {
      if (err instanceof SessionRevokedError) return true;
      throw err;
    }
  });
  const elapsed = Date.now() - ended;
  t.ok(elapsed <= BOUND_MS, `the parent’s end reached b in ${elapsed} ms (bound ${BOUND_MS} ms)`);
  const late = new RotorClient({ connect: tcpConnect({ host: '127.0.0.1', port: b.tcp.address.port }) });
  t.teardown(() => late.close());
  await t.rejects(late.loginWithHandOver(spare[2], 'a'), { code: 'ROTOR_E_HANDOVER_REVOKED' }, 'its unused hand-over token is refused');
  await t.rejects(second.request('GET', '/hello'), SessionRevokedError, 'the one opened while a was stopped too');
  await t.rejects(alone.request('GET', '/hello'), SessionRevokedError, 'and the other');
});

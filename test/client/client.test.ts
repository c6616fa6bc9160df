import t from 'tap';
import net from 'node:net';
import { serve, hashPassword, newTotpSecret, totpFor, type RunningServer } from '../../src/server/index.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { seededRandom } from '../../src/session/random.ts';
import { silentLogger } from '../../src/log/index.ts';
import { RotorClient, tcpConnect, TokenReusedError, SessionRevokedError, AuthFailedError, TransportError, RotorClientError } from '../../src/client/index.ts';
import type { RotorApp } from '../../src/server/app.ts';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const handled: string[] = [];
const ran: string[] = [];
const app: RotorApp = {
  routes: {
    'POST /order': (req) => {
      handled.push(req.body!.toString());
      return { defer: { task: 'ship', payload: req.body!.toString() } };
    },
    'GET /hello': (req) => ({ body: `hello, ${req.user}` }),
  },
  tasks: { ship: async (payload) => void ran.push(String(payload)) },
};

async function start(t: TapTest): Promise<{ server: RunningServer; port: number }> {
  const store = new MemoryStore();
  const config = resolveConfig({ port: 0, auth: { scryptN: 1024 } });
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(4)), createdAt: 0 });
  const server = await serve({ store, app, config: { port: 0, auth: { scryptN: 1024 } }, log: silentLogger() });
  t.teardown(() => server.close());
  return { server, port: server.tcp.address.port };
}

/** A proxy that, when armed, swallows the next reply from the server and cuts the client off. */
async function lossyProxy(t: TapTest, target: number): Promise<{ port: number; loseNextReply(): void; lost: number }> {
  const state = { armed: false, lost: 0 };
  const proxy = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    client.pipe(upstream);
    upstream.on('data', (chunk) => {
      if (state.armed) {
        state.armed = false;
        state.lost++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    loseNextReply: () => (state.armed = true),
    get lost() {
      return state.lost;
    },
  };
}

t.test('a lost reply is recovered by resending the same request: same token, work done once', async (t) => {
  handled.length = 0;
  ran.length = 0;
  const { server, port } = await start(t);
  const proxy = await lossyProxy(t, port);
  const tokens: Array<string | undefined> = [];
  const client = new RotorClient({ connect: tcpConnect({ port: proxy.port, timeoutMs: 2000 }), retryDelayMs: 10, onToken: (tok) => void tokens.push(tok) });
  t.teardown(() => client.close());
  await client.login('alice', 'pw');
  const beforeOrder = client.token;
  proxy.loseNextReply();
  const order = await client.request('POST', '/order', { body: 'book' });
  t.equal(proxy.lost, 1, 'one reply was lost on the way');
  t.equal(order.status, 202);
  t.equal(order.tasks.length, 1);
  t.same(handled, ['book'], 'the handler ran once although the request was sent twice');
  t.not(client.token, beforeOrder, 'the client holds the rotated token');
  await server.rotor.tasks.idle();
  t.same(ran, [], 'no work before the ack');
  const result = await client.waitForTask(order.tasks[0]);
  t.equal(result.status, 200);
  await server.rotor.tasks.idle();
  t.same(ran, ['book'], 'the work ran exactly once, after the ack');
  t.ok(tokens.length >= 4, 'every new token was reported to onToken');
});

t.test('typed errors: wrong password, reuse, revoked, and no server', async (t) => {
  const { port } = await start(t);
  const client = new RotorClient({ connect: tcpConnect({ port }) });
  t.teardown(() => client.close());
  await t.rejects(client.login('alice', 'nope'), AuthFailedError);
  await client.login('alice', 'pw');
  const stale = client.token!;
  await client.request('GET', '/hello');
  await client.request('GET', '/hello');
  const thief = new RotorClient({ connect: tcpConnect({ port }) });
  t.teardown(() => thief.close());
  await thief.useToken(stale);
  await t.rejects(thief.request('GET', '/hello'), TokenReusedError);
  t.equal(thief.token, undefined, 'a dead session leaves the client without a token');
  await t.rejects(client.request('GET', '/hello'), SessionRevokedError, 'the victim learns the session is gone');
  await t.rejects(client.request('GET', '/hello'), RotorClientError, 'and has no token left');

  const nowhere = new RotorClient({ connect: tcpConnect({ port: 1, timeoutMs: 500 }), retries: 1, retryDelayMs: 1 });
  await t.rejects(nowhere.login('alice', 'pw'), TransportError);
});

t.test('resume and metadata exchange rotate; logout ends', async (t) => {
  const { port } = await start(t);
  const client = new RotorClient({ connect: tcpConnect({ port }) });
  t.teardown(() => client.close());
  await client.login('alice', 'pw', { meta: { plan: 'basic' } });
  const first = client.token;
  await client.resume();
  t.not(client.token, first);
  const meta = await client.exchangeMeta({ theme: 'dark' });
  t.same(JSON.parse(meta.body.toString()), { plan: 'basic', theme: 'dark' });
  await client.logout();
  t.equal(client.token, undefined);
});

t.test('a frame the codec refuses is rejected without leaving a waiter behind', async (t) => {
  const { port } = await start(t);
  const transport = await tcpConnect({ port, timeoutMs: 2000 })();
  t.teardown(() => transport.close());
  const ping = { kind: 'request', verb: 'GET', path: '/rotor/ping', headers: [], body: undefined } as const;
  await t.rejects(transport.request({ ...ping, headers: [['X-Big', 'x'.repeat(9000)]] }), 'over the line limit: refused before anything is sent');
  await t.rejects(transport.request({ ...ping, headers: [['Bad Name', 'x']] }), 'a bad header name likewise');
  const answers = await Promise.all([transport.request(ping), transport.request({ ...ping, path: '/rotor/nothing' })]);
  t.same(answers.map((a) => a.status), [200, 404], 'each later request gets its own reply');
});

t.test('a TOTP login is used at once, so the same login sent again by someone else gets nothing', async (t) => {
  const { server, port } = await start(t);
  const secret = newTotpSecret();
  const store = (server.rotor as unknown as { store: MemoryStore }).store;
  await store.putUser({ ...(await store.loadUser('alice'))!, totpSecret: secret });
  const code = totpFor(secret, 'alice').generate();
  const client = new RotorClient({ connect: tcpConnect({ port }) });
  t.teardown(() => client.close());
  await client.login('alice', 'pw', { totp: code });
  const frame = { kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', 'alice'], ['Password', 'pw'], ['TOTP', code]], body: undefined } as const;
  const transport = await tcpConnect({ port })();
  t.teardown(() => transport.close());
  const again = await transport.request({ ...frame, headers: [...frame.headers] });
  t.equal(again.headers.find(([n]) => n === 'Error')?.[1], 'ROTOR_E_AUTH_FAILED', 'the login sent again after the client used its token');
  t.equal((await client.request('GET', '/hello')).body.toString(), 'hello, alice', 'the client keeps its session');
});

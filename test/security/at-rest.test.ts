/**
 * What a thief with a copy of the store gets: no usable token. Every token a client was ever
 * sent — the login token, the next token inside each reply kept for replay — is looked for in
 * the raw bytes each backend keeps (the LMDB files, a Redis RDB snapshot, the memory store's
 * maps), and so is each token's MAC on its own (the rest of a token is not secret). Replay must
 * still give the identical bytes, also after the store is reopened.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import { Redis } from 'ioredis';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import type { RotorApp } from '../../src/server/app.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { LmdbStore } from '../../src/store/lmdb.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import { FrameParser, getHeader, type Header } from '../../src/wire/index.ts';
import { startRedis } from '../helpers/redis.ts';
import type { TapTest } from '../store/suite.ts';

const app: RotorApp = {
  routes: {
    'GET /hello': (req) => ({ body: `hello, ${req.user}` }),
    'POST /pay': (req) => ({ defer: { task: 'pay', payload: req.body?.toString() } }),
  },
  tasks: { pay: async () => 'paid' },
};

interface Backend {
  open(): Promise<Store>;
  /** Every byte the backend keeps, after `store` is closed. */
  raw(store: Store): Promise<Buffer>;
}

async function exercise(t: TapTest, backend: Backend): Promise<void> {
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  const keys = KeyRing.generate(seededRandom(7));
  let store = await backend.open();
  await store.putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(1)), createdAt: 0 });
  const rotorOn = (s: Store) => new Rotor({ config, store: s, app, keys, log: silentLogger(), random: seededRandom(3) });
  let rotor = rotorOn(store);
  const issued: string[] = [];
  const send = async (verb: string, path: string, headers: Header[], body?: string) => {
    const reply = await rotor.dispatch({ kind: 'request', verb, path, headers, body: body === undefined ? undefined : Buffer.from(body) });
    const frame = new FrameParser().push(reply.bytes).frames[0];
    if (!frame || frame.kind !== 'response') throw new Error('not a response');
    const token = getHeader(frame, 'Token');
    if (token) issued.push(token);
    return { bytes: reply.bytes, token, error: getHeader(frame, 'Error') };
  };
  const login = async () => (await send('POST', '/rotor/login', [['User', 'alice'], ['Password', 'pw']])).token!;

  // A session whose last reply was lost: its next token is only in the reply kept for replay.
  const lost = await login();
  const first = await send('GET', '/hello', [['Token', lost]]);
  // One that moved on, and lost the reply of a deferred payment.
  let token = await login();
  token = (await send('GET', '/hello', [['Token', token]])).token!;
  const pay = await send('POST', '/pay', [['Token', token]], '10 EUR');
  t.equal(pay.error, undefined, 'the payment was accepted');
  t.ok(issued.length >= 5, `${issued.length} tokens issued`);

  await rotor.stop();
  const raw = await backend.raw(store);
  t.ok(raw.length > 0, `the raw store is ${raw.length} bytes`);
  const text = raw.toString('latin1');
  t.ok(text.includes('alice'), 'the raw bytes are readable: the user name is there');
  for (const issuedToken of issued) {
    const mac = issuedToken.slice(issuedToken.lastIndexOf('.') + 1);
    t.notOk(text.includes(issuedToken), `token …${mac.slice(0, 6)} is not at rest`);
    t.notOk(text.includes(mac), `nor its MAC …${mac.slice(0, 6)}`);
  }

  // The replay still gives the identical bytes, made again from what the store kept and the key.
  store = await backend.open();
  rotor = rotorOn(store);
  t.same((await send('GET', '/hello', [['Token', lost]])).bytes, first.bytes, 'replay after a reopen is byte-identical');
  t.same((await send('POST', '/pay', [['Token', token]], '10 EUR')).bytes, pay.bytes, 'and so is the deferred reply');
  await rotor.stop();
  await store.close();
}

t.test('memory', async (t) => {
  const store = new MemoryStore();
  await exercise(t, {
    open: async () => store,
    raw: async (s) => serialize(s),
  });
});

t.test('lmdb', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotor-at-rest-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await exercise(t, {
    open: () => LmdbStore.open(dir),
    raw: async (s) => {
      await s.close();
      return Buffer.concat(readdirSync(dir).map((file) => readFileSync(join(dir, file))));
    },
  });
});

t.test('redis', async (t) => {
  // Fails, loudly, when redis-server cannot be started.
  const server = await startRedis();
  t.teardown(() => server.close());
  const prefix = `at-rest-${process.pid}`;
  await exercise(t, {
    open: () => RedisStore.open(server.url, { prefix }),
    raw: async (s) => {
      await s.close();
      const admin = new Redis(server.url);
      try {
        // An RDB snapshot, as a thief would copy it, uncompressed so a token cannot hide in LZF.
        await admin.config('SET', 'rdbcompression', 'no');
        await admin.save();
        const [, dir] = (await admin.config('GET', 'dir')) as [string, string];
        return readFileSync(join(dir, 'dump.rdb'));
      } finally {
        admin.disconnect();
      }
    },
  });
});

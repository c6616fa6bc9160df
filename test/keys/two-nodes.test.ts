/**
 * Three rotor nodes on one store rotate their MAC keys automatically while clients rotate tokens
 * on all of them (spec §11): a fake clock runs through more than three rotations, each node reads
 * the ring again every keys.reloadSeconds at a phase of its own, concurrently with the traffic.
 * No exchange with a valid token is ever refused (ROTOR_E_TOKEN_INVALID or anything else) — not
 * a token signed by a key another node has only just promoted, nor one a lagging node signed with
 * the key that had just stopped signing, shown one step before its end; the ring is rotated once
 * per period whatever the nodes race; and once a retired key's retireAt has passed its tokens are
 * refused as invalid. Once on a shared memory store, once on a real redis-server with a
 * connection per node.
 */
import t, { type Test } from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { storeHome, type KeyRingRecord } from '../../src/keys/home.ts';
import { KeyRingSource } from '../../src/keys/source.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import { getHeader, type RequestFrame } from '../../src/wire/index.ts';
import { startRedis } from '../helpers/redis.ts';
import { uid } from '../store/suite.ts';

const T0 = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;
const STEP_MS = 5_000;
const RELOAD_MS = 30_000;
const TTL_MS = 10 * 60_000;
const NODES = 3;
/** Clients that exchange twice every step, each time on a node picked at random. */
const BUSY = 6;
/**
 * Clients that exchange only when their token is one step from its end, on a node picked at
 * random: a token a lagging node signed with a key that had just stopped signing comes back
 * near the key's retireAt, so a key dropped too early shows with them.
 */
const SLEEPY = 64;
const config = resolveConfig({ auth: { scryptN: 1024 }, session: { tokenTtlMinutes: TTL_MS / 60_000 }, keys: { rotationHours: 1, reloadSeconds: RELOAD_MS / 1000, skewSeconds: 60 } });
const passwordHash = await hashPassword('pw', config.auth, seededRandom(1));
const wrap = Buffer.alloc(32, 0x5c);

const request = (verb: string, path: string, headers: Array<[string, string]>): RequestFrame => ({ kind: 'request', verb, path, headers, body: undefined });
const keyOf = (token: string) => token.slice(0, token.indexOf('.'));

async function rotateUnderLoad(t: Test, stores: Store[]): Promise<void> {
  const clock = { now: T0 };
  const now = () => clock.now;
  await stores[0].putUser({ name: 'u', passwordHash, createdAt: 0 });
  const sources = await Promise.all(stores.map((store, i) => KeyRingSource.open({ home: storeHome(store), material: { wrap, seed: [] }, config, log: silentLogger(), now, random: seededRandom(20 + i) })));
  const nodes = stores.map((store, i) => new Rotor({ config, store, app: exampleApp(), keys: sources[i].ring, log: silentLogger(), now, random: seededRandom(30 + i) }));
  // A new walk each run; the seed is in a comment of the output, to replay one that failed.
  const seed = Date.now() % 1_000_000 || 1;
  t.comment(`seed ${seed}`);
  const pick = seededRandom(seed);
  const coin = (n: number) => pick(4).readUInt32LE(0) % n;

  const login = async (node: number): Promise<string> => {
    const reply = await nodes[node].dispatch(request('POST', '/rotor/login', [['User', 'u'], ['Password', 'pw']]));
    const token = getHeader(reply.frame, 'Token');
    if (reply.status !== 200 || !token) throw new Error(`login: ${reply.status} ${getHeader(reply.frame, 'Error')}`);
    return token;
  };
  const tokens = await Promise.all(Array.from({ length: BUSY + SLEEPY }, (_, i) => login(i % NODES)));
  /** A client that stops after its first token: its key's tokens are refused once the key is dropped. */
  const stale = await login(0);
  const firstKey = keyOf(stale);

  const refusals = new Map<string, number>();
  let exchanges = 0;
  const signers = new Set<string>();
  /** When each client exchanges next: busy ones every step, sleepy ones spread over the first lifetime, then one step before their token ends. */
  const due = tokens.map((_, i) => (i < BUSY ? T0 : T0 + STEP_MS * (1 + coin((TTL_MS - STEP_MS) / STEP_MS - 1))));
  let staleBefore: string | undefined;
  let staleAfter: string | undefined;
  let retireAt: number | undefined;

  const client = async (i: number) => {
    if (clock.now < due[i]) return;
    const busy = i < BUSY;
    due[i] = busy ? clock.now : clock.now + TTL_MS - STEP_MS;
    for (let round = 0; round < (busy ? 2 : 1); round++) {
      const node = coin(NODES);
      const reply = await nodes[node].dispatch(request('GET', '/hello', [['Token', tokens[i]]]));
      exchanges++;
      const next = getHeader(reply.frame, 'Token');
      if (reply.status === 200 && next) {
        tokens[i] = next;
        signers.add(keyOf(next));
      } else {
        const code = getHeader(reply.frame, 'Error') ?? String(reply.status);
        const key = `${code} (a token of ${keyOf(tokens[i])} at node ${node}, +${(clock.now - T0) / 1000} s)`;
        refusals.set(key, (refusals.get(key) ?? 0) + 1);
        // Start over, so one refusal does not hide the rest of the run.
        tokens[i] = await login(node);
      }
    }
  };

  const end = T0 + 3 * HOUR + 30 * 60_000;
  while (clock.now < end) {
    clock.now += STEP_MS;
    const work: Promise<unknown>[] = tokens.map((_, i) => client(i));
    // Each node reads the ring every RELOAD_MS, at a phase of its own: the slowest the settings allow.
    for (let n = 0; n < NODES; n++) if ((clock.now - T0 - (n * RELOAD_MS) / NODES) % RELOAD_MS === 0) work.push(sources[n].refresh());
    await Promise.all(work);
    if (retireAt === undefined) {
      const record = (await stores[0].loadRecord<KeyRingRecord>('keyring', 'mac'))!.value;
      retireAt = record.keys.find((key) => key.id === firstKey && key.state === 'retiring')?.retireAt ?? undefined;
    }
    if (retireAt !== undefined && staleBefore === undefined && clock.now + STEP_MS >= retireAt) {
      staleBefore = getHeader((await nodes[1].dispatch(request('GET', '/hello', [['Token', stale]]))).frame, 'Error');
    }
    if (retireAt !== undefined && staleAfter === undefined && clock.now >= retireAt + RELOAD_MS) {
      staleAfter = getHeader((await nodes[coin(NODES)].dispatch(request('GET', '/hello', [['Token', stale]]))).frame, 'Error');
    }
  }

  t.strictSame(Object.fromEntries(refusals), {}, `no exchange refused in ${exchanges} exchanges`);
  t.ok(exchanges >= 2 * BUSY * ((end - T0) / STEP_MS), `${exchanges} exchanges`);
  t.ok(signers.size >= 4, `tokens signed by ${signers.size} keys: three rotations (${[...signers].join(', ')})`);
  const record = (await stores[0].loadRecord<KeyRingRecord>('keyring', 'mac'))!.value;
  t.ok(record.keys.length <= 3, `the ring stays small: ${record.keys.map((key) => `${key.id}:${key.state}`).join(' ')}`);
  t.notOk(record.keys.some((key) => key.id === firstKey), 'the first key is gone from the store');
  t.equal(staleBefore, 'ROTOR_E_TOKEN_EXPIRED', 'just before retireAt, a token of the first key is good but for its lifetime');
  t.equal(staleAfter, 'ROTOR_E_TOKEN_INVALID', 'after retireAt its key is dropped: the token is invalid');
  await Promise.all(sources.map((source) => source.refresh()));
  t.equal(new Set(sources.map((source) => source.ring.signing.id)).size, 1, 'every node signs with the same key once it has read the ring');
}

t.test('a shared memory store', (t) => {
  const store = new MemoryStore();
  return rotateUnderLoad(t, Array.from({ length: NODES }, () => store));
});

t.test('a real redis-server, a connection per node', async (t) => {
  // Fails loudly when redis-server cannot be started: CI must have it.
  const server = await startRedis();
  t.teardown(() => server.close());
  const prefix = uid('rotor-keys');
  const stores = await Promise.all(Array.from({ length: NODES }, () => RedisStore.open(server.url, { prefix })));
  t.teardown(() => Promise.all(stores.map((store) => store.close())));
  await rotateUnderLoad(t, stores);
});

/**
 * Two rotor nodes, each with its own connection to one Redis, racing for the last seat of a
 * pool, round after round: exactly one wins every time (spec §9, no inflation across servers).
 */
import t from 'tap';
import { exampleApp } from '../../src/app/example.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { getHeader, type Frame } from '../../src/wire/index.ts';
import { startRedis } from '../helpers/redis.ts';
import { uid } from '../store/suite.ts';

// Fails the file, loudly, when redis-server cannot be started: CI must have it.
const server = await startRedis();
t.teardown(() => server.close());

const ROUNDS = 20;

t.test(`two nodes on one Redis race for the last seat ${ROUNDS} times: one wins each time`, async (t) => {
  const prefix = uid('rotor');
  const stores = await Promise.all([RedisStore.open(server.url, { prefix }), RedisStore.open(server.url, { prefix })]);
  t.teardown(() => Promise.all(stores.map((s) => s.close())));
  const config = resolveConfig({ auth: { scryptN: 1024 } });
  await stores[0].putUser({ name: 'alice', passwordHash: await hashPassword('pw', config.auth, seededRandom(1)), createdAt: 0 });
  let lost = 0;
  for (const store of stores) {
    const commit = store.commitSeats.bind(store);
    store.commitSeats = async (next, rev) => {
      const won = await commit(next, rev);
      if (!won) lost++;
      return won;
    };
  }
  const keys = KeyRing.generate(seededRandom(2));
  const nodes = stores.map((store, i) => new Rotor({ config, store, app: exampleApp(), keys, log: silentLogger(), random: seededRandom(10 + i) }));
  const frame = (path: string, headers: Array<[string, string]>, verb = 'POST'): Frame => ({ kind: 'request', verb, path, headers, body: undefined });
  const login = async (node: Rotor) => getHeader((await node.dispatch(frame('/rotor/login', [['User', 'alice'], ['Password', 'pw']]))).frame, 'Token')!;

  let wins = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const pool = `last-${round}`;
    await stores[0].putPool({ name: pool, seats: 1, perUser: 0, heartbeatMs: 60_000, maxHoldMs: null, queueLimit: 10, perUserQueueLimit: 10, createdAt: 0 });
    const tokens = await Promise.all(nodes.map(login));
    const replies = await Promise.all(nodes.map((node, i) => node.dispatch(frame(`/rotor/seats/${pool}`, [['Token', tokens[i]]]))));
    const answers = replies.map((r) => getHeader(r.frame, 'Seat') ?? getHeader(r.frame, 'Error'));
    if (answers.filter((a) => a === 'granted').length === 1 && answers.filter((a) => a === 'queued').length === 1) wins++;
    else t.fail(`round ${round}: ${answers.join(', ')}`);
    const seats = await stores[1].loadSeats(pool);
    t.equal(seats?.holders.length, 1, `round ${round}: one holder in Redis`);
  }
  t.equal(wins, ROUNDS, 'exactly one winner in every round');
  t.ok(lost > 0, `the nodes did race: ${lost} compare-and-sets lost and retried`);
});

t.test('a pool’s seats record is never taken for a session (the sessions’ SCAN, HEAD /dump)', async (t) => {
  const store = await RedisStore.open(server.url, { prefix: uid('rotor') });
  t.teardown(() => store.close());
  t.equal(await store.commitSeats({ pool: 'p', rev: 0, holders: [], queue: [], holdsEnded: 0, heldMsTotal: 0 }, 0), true);
  const sessions: unknown[] = [];
  for await (const s of store.listSessions()) sessions.push(s);
  t.same(sessions, [], 'no session stored, none listed');
});

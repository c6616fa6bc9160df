/**
 * Seats through the dispatcher against a model (fast-check commands, spec §9): clients of a
 * few users take seats, wait, show life through other exchanges, fall silent, give back and log
 * out, on one rotor node or on two sharing a store, with a fake clock. The model is what the
 * world knows — who asked, who logged out, when each client last exchanged anything — and after
 * every step the store's record must agree with it: never more holders than seats, per-user
 * caps held, nobody twice, a logged-out session holds nothing, a client silent past the
 * heartbeat holds nothing once anyone asks the pool, and a seat goes to a newcomer only when no
 * eligible waiter is ahead of it.
 */
import t from 'tap';
import fc from 'fast-check';
import { exampleApp } from '../../src/app/example.ts';
import { resolveConfig } from '../../src/config/defaults.ts';
import { silentLogger } from '../../src/log/index.ts';
import { hashPassword } from '../../src/server/auth.ts';
import { Rotor } from '../../src/server/rotor.ts';
import { seededRandom } from '../../src/session/random.ts';
import { KeyRing } from '../../src/session/token.ts';
import type { PoolRecord, PoolSeats } from '../../src/seats/types.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { getHeader, type ResponseFrame } from '../../src/wire/index.ts';

const USERS = ['ana', 'bo', 'cy'];
const CLIENTS = 6;
const HEARTBEAT_MS = 10_000;
const config = resolveConfig({ auth: { scryptN: 1024 }, session: { maxCommitRetries: 8 } });
const passwordHash = await hashPassword('pw', config.auth, seededRandom(1));

interface Client {
  user: string;
  token: string;
  /** The session's id: what the seats record names. */
  session: string;
  lastLife: number;
  /** Its last seat request: what keeps a place in line (other exchanges keep only a held seat). */
  lastTake: number;
  ended: boolean;
}

interface World {
  nodes: Rotor[];
  store: MemoryStore;
  pool: PoolRecord;
  clock: { now: number };
  clients: Client[];
}

async function send(w: World, node: number, c: Client, verb: string, path: string): Promise<ResponseFrame> {
  const reply = await w.nodes[node % w.nodes.length].dispatch({ kind: 'request', verb, path, headers: [['Token', c.token]], body: undefined });
  const token = getHeader(reply.frame, 'Token');
  if (token) {
    c.token = token;
    c.lastLife = w.clock.now;
  }
  return reply.frame;
}

async function seats(w: World): Promise<PoolSeats> {
  return (await w.store.loadSeats('p')) ?? { pool: 'p', rev: 0, holders: [], queue: [], holdsEnded: 0, heldMsTotal: 0 };
}

function check(w: World, record: PoolSeats): void {
  const { holders, queue } = record;
  if (holders.length > w.pool.seats) throw new Error(`${holders.length} holders of ${w.pool.seats} seats`);
  const all = [...holders, ...queue].map((e) => e.session);
  if (new Set(all).size !== all.length) throw new Error('a session twice');
  if (w.pool.perUser > 0) for (const u of USERS) if (holders.filter((h) => h.user === u).length > w.pool.perUser) throw new Error(`${u} over the cap`);
  for (const c of w.clients) if (c.ended && all.includes(c.session)) throw new Error(`logged-out ${c.session} still in the pool`);
}

type Cmd = fc.AsyncCommand<object, World>;

/** How often a history reached the case the store's session records decide: a holder alive by its other exchanges, silent by the pool's record. */
const probes = { livedElsewhere: 0 };

class Take implements Cmd {
  constructor(readonly client: number, readonly node: number) {}
  check = () => true;
  async run(_m: object, w: World): Promise<void> {
    const c = w.clients[this.client];
    if (c.ended) return;
    const before = await seats(w);
    // What the world knew before this ask: the ask itself is a sign of life only from now on.
    const lastLives = new Map(w.clients.map((x) => [x.session, x.lastLife]));
    const lastTakes = new Map(w.clients.map((x) => [x.session, x.lastTake]));
    const frame = await send(w, this.node, c, 'POST', '/rotor/seats/p');
    if (getHeader(frame, 'Token')) c.lastTake = w.clock.now;
    const after = await seats(w);
    check(w, after);
    const seat = getHeader(frame, 'Seat');
    const error = getHeader(frame, 'Error');
    if (error === 'ROTOR_E_CONFLICT') return; // nothing changed; the client asks again
    // Everyone silent past the heartbeat is gone once the pool was asked (a waiter: not asking again within it).
    for (const e of after.holders) {
      const owner = w.clients.find((x) => x.session === e.session)!;
      if (w.clock.now - owner.lastLife > HEARTBEAT_MS) throw new Error(`${e.session} silent for ${w.clock.now - owner.lastLife} ms but still holding`);
    }
    for (const e of after.queue) {
      const owner = w.clients.find((x) => x.session === e.session)!;
      if (w.clock.now - owner.lastTake > HEARTBEAT_MS) throw new Error(`${e.session} has not asked for ${w.clock.now - owner.lastTake} ms but is still in line`);
    }
    // …and everyone who did show life in time keeps what it had.
    const living = (s: string, waiting = false) => {
      const owner = w.clients.find((x) => x.session === s)!;
      return !owner.ended && w.clock.now - (waiting ? lastTakes : lastLives).get(s)! <= HEARTBEAT_MS;
    };
    for (const h of before.holders) {
      if (living(h.session) && w.clock.now - h.seenAt > HEARTBEAT_MS) probes.livedElsewhere++;
      if (living(h.session) && !after.holders.some((a) => a.session === h.session)) throw new Error(`${h.session} alive but lost its seat`);
    }
    for (const q of before.queue) {
      if (q.session !== c.session && living(q.session, true) && !after.queue.some((a) => a.session === q.session)) throw new Error(`${q.session} alive but lost its place`);
    }
    if (seat === 'granted' && !after.holders.some((h) => h.session === c.session)) throw new Error('granted but not holding');
    if (seat === 'queued' && Number(getHeader(frame, 'Seat-Position')) !== after.queue.findIndex((q) => q.session === c.session) + 1) throw new Error('wrong position');
    if (seat === 'granted' && !before.holders.some((h) => h.session === c.session)) {
      // A new grant: no eligible waiter (alive, under its cap) ahead of it went without a seat.
      const alive = (s: string) => living(s, before.queue.some((q) => q.session === s));
      const holdersBefore = before.holders.filter((h) => alive(h.session));
      const underCap = (u: string) => w.pool.perUser === 0 || holdersBefore.filter((h) => h.user === u).length < w.pool.perUser;
      const mine = before.queue.findIndex((q) => q.session === c.session);
      const ahead = before.queue.filter((q, i) => (mine === -1 || i < mine) && alive(q.session) && underCap(q.user)).length;
      if (ahead >= w.pool.seats - holdersBefore.length) throw new Error(`granted past ${ahead} eligible waiters with ${w.pool.seats - holdersBefore.length} free`);
    }
  }
  toString = () => `take(c${this.client}@n${this.node})`;
}

class Give implements Cmd {
  constructor(readonly client: number, readonly node: number) {}
  check = () => true;
  async run(_m: object, w: World): Promise<void> {
    const c = w.clients[this.client];
    if (c.ended) return;
    const frame = await send(w, this.node, c, 'DELETE', '/rotor/seats/p');
    const after = await seats(w);
    check(w, after);
    if (getHeader(frame, 'Error') === 'ROTOR_E_CONFLICT') return;
    if ([...after.holders, ...after.queue].some((e) => e.session === c.session)) throw new Error('given back but still there');
  }
  toString = () => `give(c${this.client}@n${this.node})`;
}

class Use implements Cmd {
  constructor(readonly client: number, readonly node: number) {}
  check = () => true;
  async run(_m: object, w: World): Promise<void> {
    const c = w.clients[this.client];
    if (!c.ended) await send(w, this.node, c, 'GET', '/hello');
  }
  toString = () => `use(c${this.client}@n${this.node})`;
}

class Logout implements Cmd {
  constructor(readonly client: number, readonly node: number) {}
  check = () => true;
  async run(_m: object, w: World): Promise<void> {
    const c = w.clients[this.client];
    if (c.ended) return;
    await send(w, this.node, c, 'POST', '/rotor/logout');
    c.ended = true;
    check(w, await seats(w));
  }
  toString = () => `logout(c${this.client}@n${this.node})`;
}

class Advance implements Cmd {
  constructor(readonly seconds: number) {}
  check = () => true;
  async run(_m: object, w: World): Promise<void> {
    w.clock.now += this.seconds * 1000;
  }
  toString = () => `advance(${this.seconds}s)`;
}

const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const node = fc.integer({ min: 0, max: 1 });
// Exchanges other than seat requests are weighted up: they are what keeps a holder alive that
// the pool's own record counts as silent, the case only the session records can decide.
const commands = fc.commands(
  [
    fc.tuple(client, node).map(([c, n]) => new Take(c, n)),
    fc.tuple(client, node).map(([c, n]) => new Take(c, n)),
    fc.tuple(client, node).map(([c, n]) => new Give(c, n)),
    fc.tuple(client, node).map(([c, n]) => new Use(c, n)),
    fc.tuple(client, node).map(([c, n]) => new Use(c, n)),
    fc.tuple(client, node).map(([c, n]) => new Use(c, n)),
    fc.tuple(client, node).map(([c, n]) => new Logout(c, n)),
    fc.integer({ min: 1, max: 6 }).map((s) => new Advance(s)),
    fc.integer({ min: 1, max: 6 }).map((s) => new Advance(s)),
  ],
  // Long histories: the interesting cases (a holder alive only by its other exchanges) need many steps.
  { maxCommands: 50, size: 'max' },
);
const pools = fc.record({ seats: fc.integer({ min: 1, max: 3 }), perUser: fc.integer({ min: 0, max: 2 }) });

async function world(nodeCount: number, shape: { seats: number; perUser: number }): Promise<World> {
  const store = new MemoryStore();
  for (const name of USERS) await store.putUser({ name, passwordHash, createdAt: 0 });
  const pool: PoolRecord = { name: 'p', seats: shape.seats, perUser: shape.perUser, heartbeatMs: HEARTBEAT_MS, maxHoldMs: null, queueLimit: 100, perUserQueueLimit: 100, createdAt: 0 };
  await store.putPool(pool);
  // Whole seconds: the server knows a session's last exchange to the second (its token's issue time).
  const clock = { now: Date.UTC(2026, 11, 2, 12, 0, 0) };
  const keys = KeyRing.generate(seededRandom(2));
  const nodes = Array.from({ length: nodeCount }, (_, i) => new Rotor({ config, store, app: exampleApp(), keys, log: silentLogger(), now: () => clock.now, random: seededRandom(10 + i) }));
  const clients: Client[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const user = USERS[i % USERS.length];
    const reply = await nodes[0].dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['User', user], ['Password', 'pw']], body: undefined });
    const token = getHeader(reply.frame, 'Token')!;
    const session = [...(await listIds(store))].find((id) => !clients.some((c) => c.session === id))!;
    clients.push({ user, token, session, lastLife: clock.now, lastTake: -Infinity, ended: false });
  }
  return { nodes, store, pool, clock, clients };
}

async function listIds(store: MemoryStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const s of store.listSessions()) ids.push(s.id);
  return ids;
}

for (const nodeCount of [1, 2]) {
  t.test(`seats over the dispatcher follow the model, ${nodeCount} node${nodeCount > 1 ? 's' : ''} on one store`, async (t) => {
    await fc.assert(
      fc.asyncProperty(pools, commands, async (shape, cmds) => {
        const w = await world(nodeCount, shape);
        await fc.asyncModelRun(() => ({ model: {}, real: w }), cmds);
      }),
      { numRuns: 100 },
    );
    t.pass('100 histories held');
    t.ok(probes.livedElsewhere > 0, `histories reached holders alive only by their other exchanges (${probes.livedElsewhere} times)`);
  });
}
